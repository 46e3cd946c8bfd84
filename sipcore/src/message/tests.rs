//! Unit tests of the message module: typed access, compact and case
//! insensitive names, edits (exact bytes) and builders. RFC 4475 torture
//! messages, property tests and the fuzz target live outside the crate
//! (`tests/torture.rs`, `tests/roundtrip.rs`, `fuzz/`).

use bytes::Bytes;

use super::*;
use crate::ParseError;

/// Joins lines with CRLF and ends the header block (and a body, if any).
fn join(lines: &[&str], body: &str) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s.push_str(body);
    s
}

fn parse(s: &str) -> Message {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
        Ok(m) => m,
        Err(e) => panic!("{e}\n---\n{s}"),
    }
}

fn reject(s: &str) -> ParseError {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
        Ok(_) => panic!("accepted:\n{s}"),
        Err(e) => e,
    }
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

const INVITE: &[&str] = &[
    "INVITE sip:bob@biloxi.example.com:5062;transport=tcp;lr SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;rport, SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bK2;received=198.51.100.9",
    "Via: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK3;rport=6000",
    "Max-Forwards: 70",
    "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    "Route: <sip:p3.example.com>",
    "Record-Route: <sip:rr1.example.com;lr>",
    "Record-Route: <sip:rr2.example.com;lr>, <sip:rr3.example.com>",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: \"Alice, A.\" <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: \"Alice, mobile\" <sip:alice@pc33.atlanta.example.com;transport=tcp>;q=0.7, <sip:alice@192.0.2.7>;expires=60",
    "Require: 100rel",
    "Supported: timer, replaces",
    "Expires: 120",
    "Content-Type: application/sdp",
    "X-Custom-Header: some value",
    "Content-Length: 4",
];

#[test]
fn request_uri_and_start_line() {
    let m = parse(&join(INVITE, "v=0\n"));
    assert!(m.is_request() && !m.is_response());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.status(), None);
    assert_eq!(m.version(), "SIP/2.0");
    assert_eq!(
        m.request_uri_str(),
        Some("sip:bob@biloxi.example.com:5062;transport=tcp;lr")
    );
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.scheme, "sip");
    assert_eq!(uri.user, Some("bob"));
    assert_eq!(uri.password, None);
    assert_eq!(uri.host, "biloxi.example.com");
    assert_eq!(uri.port, Some(5062));
    assert_eq!(uri.params, ";transport=tcp;lr");
    assert_eq!(uri.transport(), Some("tcp"));
    assert!(uri.has_lr());
    assert!(uri.is_sip());
    assert_eq!(uri.headers, "");
}

#[test]
fn every_via_value_in_order() {
    let m = parse(&join(INVITE, "v=0\n"));
    let vias: Vec<Via<'_>> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[0].host, "pc33.atlanta.example.com");
    assert_eq!(vias[0].port, None);
    assert_eq!(vias[0].sent_by_port(), 5060);
    assert_eq!(vias[0].branch(), Some("z9hG4bKnashds8"));
    assert_eq!(vias[0].rport(), Some(None));
    assert!(vias[0].has_rfc3261_branch());
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, "192.0.2.4");
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(vias[1].received(), Some("198.51.100.9"));
    assert_eq!(vias[1].rport(), None);
    assert_eq!(vias[2].transport, "TLS");
    assert_eq!(vias[2].host, "[2001:db8::1]");
    assert_eq!(vias[2].port, Some(5061));
    assert_eq!(vias[2].rport(), Some(Some(6000)));
    assert_eq!(m.top_via(), vias[0]);
    assert_eq!(
        vias[1].raw,
        "SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bK2;received=198.51.100.9"
    );
    assert_eq!(vias[1].params, ";branch=z9hG4bK2;received=198.51.100.9");
}

#[test]
fn via_on_one_line_equals_via_on_separate_lines() {
    let a = "SIP/2.0/UDP a.example.com;branch=z9hG4bKa";
    let b = "SIP/2.0/TCP b.example.com:5070;branch=z9hG4bKb";
    let c = "SIP/2.0/SCTP c.example.com;branch=z9hG4bKc";
    let rest = [
        "To: <sip:b@example.com>",
        "From: <sip:a@example.com>;tag=1",
        "Call-ID: x",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 70",
    ];
    let build = |vias: &[String]| {
        let mut lines = vec!["OPTIONS sip:b@example.com SIP/2.0".to_string()];
        lines.extend(vias.iter().cloned());
        lines.extend(rest.iter().map(|s| s.to_string()));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        join(&lines, "")
    };
    let variants = [
        build(&[format!("Via: {a}, {b}, {c}")]),
        build(&[
            format!("Via: {a}"),
            format!("Via: {b}"),
            format!("Via: {c}"),
        ]),
        build(&[format!("Via: {a},{b}"), format!("v: {c}")]),
        build(&[format!("v: {a}"), format!("VIA:{b} ,  {c}")]),
    ];
    for v in &variants {
        let m = parse(v);
        let raws: Vec<&str> = m.vias().map(|v| v.raw).collect();
        assert_eq!(raws, [a, b, c], "{v}");
        assert_eq!(m.header_values("Via").collect::<Vec<_>>(), [a, b, c]);
    }
}

#[test]
fn from_to_call_id_cseq() {
    let m = parse(&join(INVITE, "v=0\n"));
    let from = m.from_header();
    assert_eq!(from.display, Some("\"Alice, A.\""));
    assert_eq!(from.uri, "sip:alice@atlanta.example.com");
    assert_eq!(from.uri().user, Some("alice"));
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(m.from_tag(), Some("1928301774"));
    let to = m.to_header();
    assert_eq!(to.display, Some("Bob"));
    assert_eq!(to.uri().host, "biloxi.example.com");
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.call_id(), "a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(
        m.cseq(),
        &CSeq {
            seq: 314159,
            method: Method::Invite
        }
    );
}

#[test]
fn contacts_routes_record_routes() {
    let m = parse(&join(INVITE, "v=0\n"));
    let contacts: Vec<NameAddr<'_>> = m.contacts().map(Result::unwrap).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].display, Some("\"Alice, mobile\""));
    assert_eq!(contacts[0].uri().transport(), Some("tcp"));
    assert_eq!(contacts[0].param("q"), Some("0.7"));
    assert_eq!(contacts[1].uri, "sip:alice@192.0.2.7");
    assert_eq!(contacts[1].param("expires"), Some("60"));
    let routes: Vec<&str> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        routes,
        [
            "sip:p1.example.com;lr",
            "sip:p2.example.com;lr",
            "sip:p3.example.com"
        ]
    );
    let rr: Vec<NameAddr<'_>> = m.record_routes().map(Result::unwrap).collect();
    assert_eq!(rr.len(), 3);
    assert!(rr[0].uri().has_lr() && rr[1].uri().has_lr() && !rr[2].uri().has_lr());
    assert_eq!(rr[2].uri().host, "rr3.example.com");
}

#[test]
fn contact_star() {
    let m = parse(&join(
        &[
            "REGISTER sip:example.com SIP/2.0",
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "Max-Forwards: 70",
            "To: <sip:u@example.com>",
            "From: <sip:u@example.com>;tag=1",
            "Call-ID: reg1",
            "CSeq: 2 REGISTER",
            "Contact: *",
            "Expires: 0",
            "Content-Length: 0",
        ],
        "",
    ));
    let c: Vec<NameAddr<'_>> = m.contacts().map(Result::unwrap).collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].uri, "*");
    assert_eq!(m.expires(), Some(0));
    // `*` is only a whole Contact value.
    let bad = join(
        &[
            "REGISTER sip:example.com SIP/2.0",
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "Max-Forwards: 70",
            "To: *",
            "From: <sip:u@example.com>;tag=1",
            "Call-ID: reg1",
            "CSeq: 2 REGISTER",
        ],
        "",
    );
    assert_eq!(reject(&bad).header, Some("To"));
}

#[test]
fn scalar_and_list_headers() {
    let m = parse(&join(INVITE, "v=0\n"));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.expires(), Some(120));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(&m.body_bytes()[..], b"v=0\n");
    assert_eq!(m.require().collect::<Vec<_>>(), ["100rel"]);
    assert_eq!(m.supported().collect::<Vec<_>>(), ["timer", "replaces"]);
    assert!(m.supports("TIMER") && m.supports("100rel") && !m.supports("path"));
}

#[test]
fn any_header_by_name() {
    let m = parse(&join(INVITE, "v=0\n"));
    assert_eq!(m.header("X-Custom-Header"), Some("some value"));
    assert_eq!(m.header("x-custom-header"), Some("some value"));
    assert_eq!(m.header("X-Absent"), None);
    assert_eq!(m.header(""), None);
    assert_eq!(
        m.header("Route"),
        Some("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    );
    assert_eq!(m.headers("route").count(), 2);
    assert_eq!(m.header_values("Route").count(), 3);
    assert_eq!(
        m.header_values("Supported").collect::<Vec<_>>(),
        ["timer", "replaces"]
    );
    let names: Vec<&str> = m.iter_headers().map(|(n, _)| n).collect();
    assert_eq!(names.first(), Some(&"Via"));
    assert_eq!(names.last(), Some(&"Content-Length"));
    assert_eq!(names.len(), INVITE.len() - 1);
    // A cheap clone shares the buffer.
    let c = m.clone();
    assert_eq!(c.as_bytes().as_ptr(), m.as_bytes().as_ptr());
    assert_eq!(&m.slice_of(m.call_id())[..], m.call_id().as_bytes());
}

/// The same request with long names and with every compact form of RFC
/// 3261 §7.3.3 and its extensions.
fn long_and_compact() -> (Message, Message) {
    let long = [
        "SUBSCRIBE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK77",
        "Max-Forwards: 70",
        "From: <sip:a@example.com>;tag=88",
        "To: <sip:bob@example.com>",
        "Call-ID: compact-1@h",
        "CSeq: 7 SUBSCRIBE",
        "Contact: <sip:a@h.example.com>",
        "Content-Type: text/plain",
        "Supported: eventlist",
        "Subject: hello",
        "Content-Encoding: gzip",
        "Event: presence",
        "Allow-Events: presence, dialog",
        "Content-Length: 2",
    ];
    let compact: Vec<String> = long
        .iter()
        .map(|l| {
            let (name, value) = l.split_once(": ").unwrap_or((l, ""));
            let short = match name {
                "Via" => "v",
                "From" => "f",
                "To" => "t",
                "Call-ID" => "i",
                "Contact" => "m",
                "Content-Type" => "c",
                "Supported" => "k",
                "Subject" => "s",
                "Content-Encoding" => "e",
                "Event" => "o",
                "Allow-Events" => "u",
                "Content-Length" => "l",
                _ => return l.to_string(),
            };
            format!("{short}: {value}")
        })
        .collect();
    let compact: Vec<&str> = compact.iter().map(String::as_str).collect();
    (parse(&join(&long, "hi")), parse(&join(&compact, "hi")))
}

#[test]
fn compact_forms_equal_long_ones() {
    let (l, c) = long_and_compact();
    assert_eq!(c.header("i"), Some("compact-1@h"));
    for name in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "Contact",
        "Content-Type",
        "Supported",
        "Subject",
        "Content-Encoding",
        "Event",
        "Allow-Events",
        "Content-Length",
    ] {
        assert!(l.header(name).is_some(), "{name}");
        assert_eq!(l.header(name), c.header(name), "{name}");
    }
    for (long, short) in [
        ("Call-ID", "i"),
        ("Via", "v"),
        ("From", "f"),
        ("To", "t"),
        ("Contact", "m"),
        ("Content-Length", "l"),
        ("Content-Type", "c"),
        ("Supported", "k"),
        ("Subject", "s"),
        ("Content-Encoding", "e"),
        ("Event", "o"),
        ("Allow-Events", "u"),
    ] {
        assert_eq!(
            HeaderName::classify(long),
            HeaderName::classify(short),
            "{short}"
        );
        assert_eq!(
            HeaderName::classify(&short.to_uppercase()),
            HeaderName::classify(long)
        );
        assert_eq!(c.header(short), l.header(long), "{short}");
    }
    assert_eq!(c.vias().collect::<Vec<_>>(), l.vias().collect::<Vec<_>>());
    assert_eq!(c.from_header(), l.from_header());
    assert_eq!(c.to_header(), l.to_header());
    assert_eq!(c.call_id(), l.call_id());
    assert_eq!(c.cseq(), l.cseq());
    assert_eq!(c.content_type(), l.content_type());
    assert_eq!(c.content_length(), l.content_length());
    assert_eq!(c.supported().collect::<Vec<_>>(), ["eventlist"]);
    assert_eq!(
        c.contacts().map(Result::unwrap).collect::<Vec<_>>(),
        l.contacts().map(Result::unwrap).collect::<Vec<_>>()
    );
    assert_eq!(
        c.header_values("Allow-Events").collect::<Vec<_>>(),
        ["presence", "dialog"]
    );
    assert_eq!(c.body(), b"hi");
}

#[test]
fn header_names_are_case_insensitive() {
    let m = parse(&join(
        &[
            "OPTIONS sip:a@example.com SIP/2.0",
            "VIA: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "max-FORWARDS: 10",
            "fRoM: <sip:b@example.com>;TAG=xyz",
            "tO: <sip:a@example.com>",
            "cAlL-iD: ci",
            "cseq: 3 OPTIONS",
            "CONTENT-LENGTH: 0",
            "x-LoWeR: v",
        ],
        "",
    ));
    assert_eq!(m.max_forwards(), Some(10));
    assert_eq!(m.from_tag(), Some("xyz"), "parameter names too");
    assert_eq!(m.call_id(), "ci");
    assert_eq!(m.header("Call-Id"), Some("ci"));
    assert_eq!(m.header("X-LOWER"), Some("v"));
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.vias().count(), 1);
    // Method names are case-sensitive (§7.1).
    assert_eq!(
        Method::from_token("invite"),
        Method::Extension(Box::new("invite".into()))
    );
}

#[test]
fn integers_with_leading_zeros() {
    let m = parse(&join(
        &[
            "INVITE sip:a@example.com SIP/2.0",
            "Via: SIP/2.0/UDP h.example.com:05060;branch=z9hG4bK1",
            "Max-Forwards: 0068",
            "From: <sip:b@example.com>;tag=1",
            "To: <sip:a@example.com>",
            "Call-ID: z",
            "CSeq: 0009 INVITE",
            "Expires: 000360",
            "Content-Length: 0002",
        ],
        "ab",
    ));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.expires(), Some(360));
    assert_eq!(m.content_length(), Some(2));
    assert_eq!(m.top_via().port, Some(5060));
    assert_eq!(m.body(), b"ab");
}

#[test]
fn folded_lines_are_unfolded_in_place() {
    let raw = join(
        &[
            "OPTIONS sip:a@example.com SIP/2.0",
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1,",
            "  SIP/2.0/TCP g.example.com;branch=z9hG4bK2",
            "Max-Forwards: 70",
            "From: <sip:b@example.com>",
            "\t;tag=folded",
            "To: <sip:a@example.com>",
            "Call-ID: fold",
            "CSeq: 1",
            " OPTIONS",
            "Subject: one",
            " two",
            "Content-Length: 0",
        ],
        "",
    );
    let m = parse(&raw);
    assert_eq!(m.as_bytes().len(), raw.len(), "unfolding keeps offsets");
    assert_eq!(m.vias().count(), 2);
    assert_eq!(m.from_tag(), Some("folded"));
    assert_eq!(m.cseq().method, Method::Options);
    assert_eq!(m.header("Subject"), Some("one   two"));
}

#[test]
fn leading_crlf_bare_lf_and_body_rules() {
    let m = parse("\r\n\r\nOPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nMax-Forwards: 70\nFrom: <sip:b@example.com>;tag=1\nTo: <sip:a@example.com>\nCall-ID: lf\nCSeq: 1 OPTIONS\n\nbody without length");
    assert_eq!(
        m.body(),
        b"body without length",
        "no Content-Length: the rest"
    );
    assert_eq!(m.content_length(), None);
    let mut lines = INVITE.to_vec();
    lines.pop();
    lines.push("Content-Length: 3");
    let m = parse(&join(&lines, "abcdef"));
    assert_eq!(m.body(), b"abc", "bytes beyond Content-Length are ignored");
}

#[test]
fn responses() {
    let m = parse(&join(
        &[
            "SIP/2.0 180 Ringing here",
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "From: <sip:b@example.com>;tag=1",
            "To: <sip:a@example.com>;tag=2",
            "Call-ID: r",
            "CSeq: 5 INVITE",
            "Content-Length: 0",
        ],
        "",
    ));
    assert!(m.is_response());
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.reason_phrase(), Some("Ringing here"));
    assert_eq!(m.method(), None);
    assert_eq!(m.request_uri(), None);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.max_forwards(), None, "not required in responses");
    assert_eq!(m.to_tag(), Some("2"));
    let m = parse(&join(
        &[
            "SIP/2.0 100",
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "From: <sip:b@example.com>;tag=1",
            "To: <sip:a@example.com>",
            "Call-ID: r",
            "CSeq: 5 INVITE",
        ],
        "",
    ));
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason_phrase(), Some(""));
}

#[test]
fn rejections_name_the_fault() {
    let ok: Vec<String> = INVITE.iter().map(|s| s.to_string()).collect();
    let with = |f: &dyn Fn(&mut Vec<String>)| {
        let mut l = ok.clone();
        f(&mut l);
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        join(&l, "v=0\n")
    };
    let drop = |name: &'static str| {
        with(&move |l: &mut Vec<String>| l.retain(|h| !h.starts_with(&format!("{name}:"))))
    };
    for name in ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"] {
        let e = reject(&drop(name));
        assert_eq!(e.reason, "missing mandatory header", "{name}");
        assert_eq!(e.header, Some(name));
    }
    let e = reject(&with(&|l| {
        l[0] = "OPTIONS sip:bob@biloxi.example.com SIP/2.0".into()
    }));
    assert_eq!(
        (e.reason, e.header),
        ("CSeq method does not match the request", Some("CSeq"))
    );
    let e = reject(&with(&|l| {
        *l.last_mut().unwrap() = "Content-Length: 5".into()
    }));
    assert_eq!(
        (e.reason, e.header),
        (
            "Content-Length larger than the body",
            Some("Content-Length")
        )
    );
    let e = reject(&with(&|l| l.push("l: 3".into())));
    assert_eq!(e.reason, "conflicting Content-Length values");
    let e = reject(&with(&|l| l.push("f: <sip:x@example.com>".into())));
    assert_eq!((e.reason, e.header), ("header appears twice", Some("From")));
    let e = reject(&with(&|l| l.push("Max-Forwards: 70".into())));
    assert_eq!(
        (e.reason, e.header),
        ("header appears twice", Some("Max-Forwards"))
    );
    let e = reject(&with(&|l| l[3] = "Max-Forwards: 256".into()));
    assert_eq!(e.header, Some("Max-Forwards"));
    let e = reject(&with(&|l| l[3] = "Max-Forwards: -1".into()));
    assert_eq!(e.header, Some("Max-Forwards"));
    let e = reject(&with(&|l| l[11] = "CSeq: 2147483648 INVITE".into()));
    assert_eq!((e.reason, e.header), ("malformed CSeq", Some("CSeq")));
    let e = reject(&with(&|l| l[11] = "CSeq: INVITE".into()));
    assert_eq!(e.header, Some("CSeq"));
    let e = reject(&with(&|l| l[10] = "Call-ID: a b".into()));
    assert_eq!(e.header, Some("Call-ID"));
    let e = reject(&with(&|l| l.push("No colon here".into())));
    assert_eq!(e.reason, "header line without colon");
    let e = reject(&with(&|l| l.push("Bad Name: x".into())));
    assert_eq!(e.reason, "malformed header name");
    let e = reject(&with(&|l| l.push(": x".into())));
    assert_eq!(e.reason, "malformed header name");
    let e = reject(&with(&|l| l.push("Via: SIP/2.0/UDP".into())));
    assert_eq!((e.reason, e.header), ("malformed Via", Some("Via")));
    let e = reject(&with(&|l| l.push("Via: ,".into())));
    assert_eq!(e.header, Some("Via"));
    for line in [
        "INVITE sip:bob@biloxi.example.com SIP/2.0 ",
        "INVITE  sip:bob@biloxi.example.com SIP/2.0",
        "INVITE sip:bob@biloxi.example.com  SIP/2.0",
        "INVITE sip:bob@biloxi.example.com;x SIP/2.0 SIP/2.0",
    ] {
        let e = reject(&with(&|l| l[0] = line.into()));
        assert_eq!(e.reason, "malformed request line", "{line:?}");
    }
    let e = reject(&with(&|l| {
        l[0] = "INVITE sip:bob@biloxi.example.com".into()
    }));
    assert_eq!(e.reason, "malformed request line");
    let e = reject(&with(&|l| {
        l[0] = "INVITE sip:bob@biloxi.example.com HTTP/1.1".into()
    }));
    assert_eq!(e.reason, "malformed SIP version");
    let e = reject(&with(&|l| {
        l[0] = "INV@TE sip:bob@biloxi.example.com SIP/2.0".into()
    }));
    assert_eq!(e.reason, "malformed method");
    let e = reject(&with(&|l| l[0] = "INVITE bob SIP/2.0".into()));
    assert_eq!(e.reason, "malformed Request-URI");
    let e = reject(&with(&|l| l[0] = "SIP/2.0 20 OK".into()));
    assert_eq!(e.reason, "malformed status code");
    let e = reject(&with(&|l| l[0] = "SIP/2.0 099 Low".into()));
    assert_eq!(e.reason, "malformed status code");
    let e = reject(&with(&|l| l[0] = "SIP/2.0 2000 OK".into()));
    assert_eq!(e.reason, "malformed status code");
    let e = reject(&with(&|l| l[0] = "SIP/2.0x 200 OK".into()));
    assert_eq!(e.reason, "malformed SIP version");

    let e = reject("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n");
    assert_eq!(e.reason, "no empty line after the headers");
    let e = reject("");
    assert_eq!(e.reason, "no empty line after the headers");
    let mut latin1 = join(INVITE, "").into_bytes();
    let at = latin1.windows(5).position(|w| w == b"Bob <").unwrap();
    latin1[at + 1] = 0xF6; // 'ö' in Latin-1: not UTF-8
    let e = Message::parse(Bytes::from(latin1)).unwrap_err();
    assert_eq!(e.reason, "header section is not valid UTF-8");
    let big = join(INVITE, &"x".repeat(MAX_MESSAGE_SIZE));
    assert_eq!(reject(&big).reason, "message larger than 64 KiB");
    // The error prints as text naming the header.
    let e = reject(&drop("CSeq"));
    assert_eq!(e.to_string(), "missing mandatory header (header CSeq)");
}

#[test]
fn equal_content_length_values_are_accepted() {
    let mut lines = INVITE.to_vec();
    lines.push("l: 0004");
    let m = parse(&join(&lines, "v=0\n"));
    assert_eq!(m.content_length(), Some(4));
}

#[test]
fn addresses_are_validated() {
    let base = |from: &str| {
        join(
            &[
                "OPTIONS sip:a@example.com SIP/2.0",
                "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
                "Max-Forwards: 70",
                &format!("From: {from}"),
                "To: <sip:a@example.com>",
                "Call-ID: v",
                "CSeq: 1 OPTIONS",
            ],
            "",
        )
    };
    for good in [
        "<sip:b@example.com>;tag=1",
        "sip:b@example.com;tag=1",
        "Bob <sip:b@example.com>",
        "\"Bob \\\"the\\\" B.\" <sip:b@example.com>",
        "Jörg <sip:j@example.com>",
        "\"\" <sip:b@example.com>",
        "<tel:+12125551212>",
        "  <sip:b@[2001:db8::5]:5090>  ;  tag = x ",
    ] {
        let m = parse(&base(good));
        assert!(!m.from_header().uri.is_empty(), "{good}");
    }
    for bad in [
        "\"Bob <sip:b@example.com>",
        "Bob, Jr. <sip:b@example.com>",
        "< sip:b@example.com>",
        "<sip:b@example.com >",
        "<sip:b@example.com",
        "<sip:b@example.com> x",
        "sip:b@example.com?Subject=hi",
        "\"Bob\" B <sip:b@example.com>",
        "b@example.com",
        "<sip:b@exa mple.com>",
        "<sip:@example.com>",
        "<sip:b@example.com:99999>",
        "<sip:b@exa$mple.com>",
        "",
    ] {
        let e = reject(&base(bad));
        assert_eq!(
            (e.reason, e.header),
            ("malformed address", Some("From")),
            "{bad}"
        );
    }
}

// ---- edits: exact output bytes ----

const SMALL: &[&str] = &[
    "INVITE sip:bob@example.com SIP/2.0",
    "v: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb",
    "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bKc",
    "Max-Forwards: 70",
    "Record-Route: <sip:rr.example.com;lr>",
    "To: <sip:bob@example.com>",
    "f: <sip:alice@example.com>;tag=1",
    "Call-ID: e1",
    "CSeq: 1 INVITE",
    "X-A: 1",
    "X-A: 2",
    "c: text/plain",
    "l: 2",
];

fn small() -> Message {
    parse(&join(SMALL, "hi"))
}

/// SMALL with line `i` replaced (`Some`) or removed (`None`), extra lines
/// appended, and a given body (Content-Length printed last).
fn expect(changes: &[(usize, Option<&str>)], extra: &[&str], body: &str) -> String {
    let mut out = String::new();
    for (i, line) in SMALL.iter().enumerate() {
        if line.starts_with("l:") {
            continue;
        }
        match changes.iter().find(|(j, _)| *j == i) {
            Some((_, Some(new))) => {
                out.push_str(new);
                out.push_str("\r\n");
            }
            Some((_, None)) => {}
            None => {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

#[test]
fn edit_without_changes_only_normalises_content_length() {
    let m = small();
    let out = m.edit().build();
    assert_eq!(text(&out), expect(&[], &[], "hi"));
    let again = Message::parse(out).unwrap();
    assert_eq!(again.vias().count(), 3);
}

#[test]
fn edit_push_via_stays_first() {
    let m = small();
    let out = m
        .edit()
        .push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
        .build();
    let mut want = String::from(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n",
    );
    want.push_str(&expect(&[], &[], "hi")["INVITE sip:bob@example.com SIP/2.0\r\n".len()..]);
    assert_eq!(text(&out), want);
    let m2 = Message::parse(out).unwrap();
    let hosts: Vec<&str> = m2.vias().map(|v| v.host).collect();
    assert_eq!(
        hosts,
        [
            "proxy.example.com",
            "a.example.com",
            "b.example.com",
            "c.example.com"
        ]
    );
    assert_eq!(m2.top_via().branch(), Some("z9hG4bKp"));
}

#[test]
fn edit_pop_via_of_a_shared_line() {
    let m = small();
    let out = m.edit().pop_via().build();
    assert_eq!(
        text(&out),
        expect(
            &[(1, Some("v: SIP/2.0/UDP b.example.com;branch=z9hG4bKb"))],
            &[],
            "hi"
        )
    );
    let m2 = Message::parse(out).unwrap();
    let out2 = m2.edit().pop_via().build();
    assert_eq!(text(&out2), expect(&[(1, None)], &[], "hi"));
    let m3 = Message::parse(out2).unwrap();
    assert_eq!(m3.top_via().host, "c.example.com");
    // Push and pop together: the new one on top, the received top gone.
    let out = m
        .edit()
        .push_via("SIP/2.0/TCP p.example.com;branch=z9hG4bKp")
        .pop_via()
        .build_message()
        .unwrap();
    let hosts: Vec<&str> = out.vias().map(|v| v.host).collect();
    assert_eq!(hosts, ["p.example.com", "b.example.com", "c.example.com"]);
}

#[test]
fn edit_record_route_goes_above_existing_ones() {
    let m = small();
    let out = m.edit().add_record_route("<sip:me.example.com;lr>").build();
    assert_eq!(
        text(&out),
        expect(
            &[(
                4,
                Some("Record-Route: <sip:me.example.com;lr>\r\nRecord-Route: <sip:rr.example.com;lr>")
            )],
            &[],
            "hi"
        )
    );
    // Without Record-Route in the message it is appended.
    let m = parse(&join(&[&SMALL[..4], &SMALL[5..]].concat(), "hi"));
    let out = m
        .edit()
        .add_record_route("<sip:me.example.com;lr>")
        .build_message()
        .unwrap();
    let rr: Vec<String> = out
        .record_routes()
        .map(|r| r.unwrap().uri.to_string())
        .collect();
    assert_eq!(rr, ["sip:me.example.com;lr"]);
}

#[test]
fn edit_set_add_remove_headers() {
    let m = small();
    // set: replaces the first line where it was, drops further lines.
    let out = m.edit().set_header("x-a", "3").build();
    assert_eq!(
        text(&out),
        expect(&[(9, Some("x-a: 3")), (10, None)], &[], "hi")
    );
    // set of an absent header appends it.
    let out = m.edit().set_header("Subject", "new").build();
    assert_eq!(text(&out), expect(&[], &["Subject: new"], "hi"));
    // set of a compact-named header, by its long name.
    let out = m
        .edit()
        .set_header("From", "<sip:carol@example.com>;tag=9")
        .build();
    assert_eq!(
        text(&out),
        expect(
            &[(6, Some("From: <sip:carol@example.com>;tag=9"))],
            &[],
            "hi"
        )
    );
    // Max-Forwards decrement, as a proxy does.
    let mf = m.max_forwards().unwrap() - 1;
    let out = m.edit().set_header("Max-Forwards", mf.to_string()).build();
    assert_eq!(
        text(&out),
        expect(&[(3, Some("Max-Forwards: 69"))], &[], "hi")
    );
    // add keeps existing lines.
    let out = m.edit().add_header("X-A", "3").build();
    assert_eq!(text(&out), expect(&[], &["X-A: 3"], "hi"));
    // remove drops every line, long and compact names alike.
    let out = m.edit().remove_header("X-A").remove_header("Via").build();
    assert_eq!(
        text(&out),
        expect(&[(1, None), (2, None), (9, None), (10, None)], &[], "hi")
    );
    let out = m.edit().remove_header("Content-Type").build();
    assert_eq!(text(&out), expect(&[(11, None)], &[], "hi"));
}

#[test]
fn edit_body_fixes_content_length() {
    let m = small();
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
    let out = m
        .edit()
        .set_body(Some("application/sdp"), Bytes::from(sdp))
        .build();
    assert_eq!(
        text(&out),
        expect(&[(11, None)], &["Content-Type: application/sdp"], sdp)
    );
    // Without a type the received Content-Type stays.
    let out = m
        .edit()
        .set_body(None, Bytes::from_static(b"other"))
        .build();
    assert_eq!(text(&out), expect(&[], &[], "other"));
    // An empty body drops Content-Type.
    let out = m.edit().set_body(Some("text/plain"), Bytes::new()).build();
    assert_eq!(text(&out), expect(&[(11, None)], &[], ""));
    let out = m.edit().set_body(None, Bytes::new()).build();
    assert_eq!(text(&out), expect(&[(11, None)], &[], ""));
}

#[test]
fn edit_request_uri() {
    let m = small();
    let out = m.edit().request_uri("sip:bob@192.0.2.9:5070").build();
    assert_eq!(
        text(&out),
        expect(
            &[(0, Some("INVITE sip:bob@192.0.2.9:5070 SIP/2.0"))],
            &[],
            "hi"
        )
    );
}

#[test]
fn edit_keeps_folded_and_odd_spacing_values() {
    let raw = "OPTIONS sip:a@example.com SIP/2.0\r\nVia :  SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:b@example.com>\r\n ;tag=1\r\nTo:<sip:a@example.com>\r\nCall-ID: e\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let m = parse(raw);
    let out = m.edit().build();
    assert_eq!(
        text(&out),
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia :  SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:b@example.com>   ;tag=1\r\nTo:<sip:a@example.com>\r\nCall-ID: e\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
}

// ---- builders ----

fn invite_for_response() -> Message {
    parse(&join(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP p.example.com;branch=z9hG4bKp, SIP/2.0/UDP a.example.com;branch=z9hG4bKa",
            "v: SIP/2.0/UDP c.example.com;branch=z9hG4bKc",
            "Max-Forwards: 69",
            "Record-Route: <sip:p.example.com;lr>",
            "To: Bob <sip:bob@example.com>",
            "From: <sip:alice@example.com>;tag=1",
            "Call-ID: rb1",
            "CSeq: 1 INVITE",
            "Contact: <sip:alice@a.example.com>",
            "Content-Length: 0",
        ],
        "",
    ))
}

const RESPONSE_COPY: &str = "Via: SIP/2.0/UDP p.example.com;branch=z9hG4bKp, SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\nv: SIP/2.0/UDP c.example.com;branch=z9hG4bKc\r\n";

#[test]
fn response_builder_adds_to_tag_and_copies_record_route_for_dialogs() {
    let req = invite_for_response();
    let out = ResponseBuilder::with_to_tag(&req, 180, "Ringing", Some("b7"))
        .header("Contact", "<sip:bob@b.example.com>")
        .build();
    assert_eq!(
        text(&out),
        format!(
            "SIP/2.0 180 Ringing\r\n{RESPONSE_COPY}Record-Route: <sip:p.example.com;lr>\r\nTo: Bob <sip:bob@example.com>;tag=b7\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: rb1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@b.example.com>\r\nContent-Length: 0\r\n\r\n"
        )
    );
    let sdp = Bytes::from_static(b"v=0\r\n");
    let ok = ResponseBuilder::with_to_tag(&req, 200, "OK", Some("b7"))
        .body("application/sdp", sdp.clone())
        .build();
    let ok = Message::parse(ok).unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.to_tag(), Some("b7"));
    assert_eq!(ok.record_routes().count(), 1);
    assert_eq!(ok.vias().count(), 3);
    assert_eq!(ok.body_bytes(), sdp);
    assert_eq!(ok.content_type(), Some("application/sdp"));
    assert_eq!(ok.cseq(), req.cseq());
    assert_eq!(ok.call_id(), "rb1");
    let ringing = Message::parse(
        ResponseBuilder::with_to_tag(&req, 183, "Session Progress", Some("b7")).build(),
    )
    .unwrap();
    assert_eq!(ringing.record_routes().count(), 1);
}

#[test]
fn response_builder_without_dialog() {
    let req = invite_for_response();
    // 100 Trying: no To tag even when given, no Record-Route.
    let out = ResponseBuilder::with_to_tag(&req, 100, "Trying", Some("b7")).build();
    assert_eq!(
        text(&out),
        format!("SIP/2.0 100 Trying\r\n{RESPONSE_COPY}To: Bob <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: rb1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    );
    // A failure: To tag, no Record-Route.
    let busy =
        Message::parse(ResponseBuilder::with_to_tag(&req, 486, "Busy Here", Some("b7")).build())
            .unwrap();
    assert_eq!(busy.to_tag(), Some("b7"));
    assert_eq!(busy.record_routes().count(), 0);
    // 200 to BYE or OPTIONS: no Record-Route.
    for method in ["BYE", "OPTIONS"] {
        let raw = join(
            &[
                &format!("{method} sip:bob@example.com SIP/2.0"),
                "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa",
                "Max-Forwards: 70",
                "Record-Route: <sip:p.example.com;lr>",
                "To: <sip:bob@example.com>;tag=b7",
                "From: <sip:alice@example.com>;tag=1",
                "Call-ID: rb1",
                &format!("CSeq: 2 {method}"),
            ],
            "",
        );
        let req = parse(&raw);
        let ok =
            Message::parse(ResponseBuilder::with_to_tag(&req, 200, "OK", Some("other")).build())
                .unwrap();
        assert_eq!(ok.record_routes().count(), 0, "{method}");
        assert_eq!(ok.to_tag(), Some("b7"), "an existing To tag is kept");
    }
    // ResponseBuilder::new adds no tag.
    let m = Message::parse(ResponseBuilder::new(&req, 404, "Not Found").build()).unwrap();
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.reason_phrase(), Some("Not Found"));
}

#[test]
fn request_builder() {
    let out = RequestBuilder::new(&Method::Options, "sip:a@example.com")
        .header("Via", "SIP/2.0/UDP h.example.com;branch=z9hG4bK1")
        .header("From", "<sip:b@example.com>;tag=1")
        .header("To", "<sip:a@example.com>")
        .header("Call-ID", "rq1")
        .header("CSeq", "1 OPTIONS")
        .headers(
            "Route",
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
        )
        .build();
    assert_eq!(
        text(&out),
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: rq1\r\nCSeq: 1 OPTIONS\r\nRoute: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let m = Message::parse(out).unwrap();
    assert_eq!(m.routes().count(), 2);
    let m = Message::parse(
        RequestBuilder::new(&Method::Message, "sip:a@example.com")
            .header("Via", "SIP/2.0/UDP h.example.com;branch=z9hG4bK1")
            .header("Max-Forwards", "5")
            .header("From", "<sip:b@example.com>;tag=1")
            .header("To", "<sip:a@example.com>")
            .header("Call-ID", "rq2")
            .header("CSeq", "1 MESSAGE")
            .body("text/plain", Bytes::from_static(b"hello"))
            .build(),
    )
    .unwrap();
    assert_eq!(m.max_forwards(), Some(5));
    assert_eq!(m.headers("Max-Forwards").count(), 1);
    assert_eq!(m.body(), b"hello");
    assert_eq!(m.content_type(), Some("text/plain"));
}

// ---- the typed views on their own ----

#[test]
fn uri_views() {
    let u =
        Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=hi&X=1").unwrap();
    assert_eq!(
        (u.scheme, u.user, u.password, u.host, u.port),
        (
            "sips",
            Some("alice"),
            Some("secret"),
            "[2001:db8::1]",
            Some(5061)
        )
    );
    assert_eq!(
        (u.params, u.headers),
        (";transport=tls;lr", "Subject=hi&X=1")
    );
    let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    assert_eq!(
        (u.user, u.host),
        (Some("user;par=u%40example.net"), "example.com")
    );
    let u = Uri::parse("tel:+1-212-555-1212;phone-context=x").unwrap();
    assert_eq!(
        (u.scheme, u.user, u.host),
        ("tel", Some("+1-212-555-1212;phone-context=x"), "")
    );
    assert!(!u.is_sip());
    for bad in [
        "",
        "sip",
        "sip:",
        ":x",
        "1sip:a",
        "sip:a b",
        "sip:<a>",
        "sip:a@",
        "sip:@h",
        "sip:h:",
        "sip:h:x",
        "sip:h:70000",
        "sip:[::1",
        "sip:[zz]",
        "sip:h x",
        "sip:h\"",
        "tel:a b",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Uri::parse_request_uri("sip:a@example.com?Route=x").is_err());
    assert!(
        Uri::parse_request_uri("sip:a?b@example.com").is_ok(),
        "'?' in the user part"
    );
    assert!(Uri::parse_request_uri("urn:x?y").is_ok());
}

#[test]
fn via_views() {
    let v = Via::parse(
        "SIP / 2.0 / UDP  host.example.com : 5070 ; branch = z9hG4bKx ; received=1.2.3.4",
    )
    .unwrap();
    assert_eq!(
        (v.transport, v.host, v.port),
        ("UDP", "host.example.com", Some(5070))
    );
    assert_eq!(v.branch(), Some("z9hG4bKx"));
    assert_eq!(v.received(), Some("1.2.3.4"));
    let v = Via::parse("SIP/2.0/TLS h").unwrap();
    assert_eq!((v.sent_by_port(), v.params), (5061, ""));
    let v = Via::parse("SIP/7.0/UDP h;branch=1").unwrap();
    assert_eq!(v.transport, "UDP", "unknown versions parse (505, not 400)");
    for bad in [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 h",
        "SIP//UDP h",
        "SIP/2.0/UDPh",
        "SIP/2.0/UDP h x",
        "SIP/2.0/UDP h:",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP h,x",
    ] {
        assert!(Via::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn list_and_param_helpers() {
    let items: Vec<&str> = split_list(" a , \"b, c\" <sip:x,y> ;p=\"1,2\", ,<d>, ").collect();
    assert_eq!(items, ["a", "\"b, c\" <sip:x,y> ;p=\"1,2\"", "<d>"]);
    let items: Vec<&str> = split_list("\"esc \\\" ,\" <sip:a>, b").collect();
    assert_eq!(items, ["\"esc \\\" ,\" <sip:a>", "b"]);
    assert_eq!(split_list("\"unterminated, x").count(), 1);
    assert_eq!(split_list("<unterminated, x").count(), 1);
    let p = ";tag=1; lr ;q = 0.5;x=\"a;b\";empty=;TAG2=z";
    assert_eq!(find_param(p, "tag"), Some("1"));
    assert_eq!(find_param(p, "LR"), Some(""));
    assert_eq!(find_param(p, "q"), Some("0.5"));
    assert_eq!(find_param(p, "x"), Some("\"a;b\""));
    assert_eq!(find_param(p, "empty"), Some(""));
    assert_eq!(find_param(p, "tag2"), Some("z"));
    assert_eq!(find_param(p, "b\""), None);
    assert_eq!(find_param("", "tag"), None);
    assert_eq!(params_without_tag(";tag=1;lr;x=y"), ";lr;x=y");
}

#[test]
fn integer_helper() {
    use super::values::parse_u32;
    assert_eq!(parse_u32("0"), Some(0));
    assert_eq!(parse_u32(" 007 "), Some(7));
    assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
    assert_eq!(parse_u32("00000000004294967295"), Some(u32::MAX));
    assert_eq!(parse_u32("4294967296"), None);
    assert_eq!(parse_u32("36893488147419103232"), None);
    for bad in ["", " ", "-1", "+1", "1a", "0x10", "1 2"] {
        assert_eq!(parse_u32(bad), None, "{bad:?}");
    }
}

#[test]
fn a_compact_copy_owns_exactly_its_bytes() {
    let text = join(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
            "From: <sip:alice@example.com>;tag=1",
            "To: <sip:bob@example.com>",
            "Call-ID: c1",
            "CSeq: 1 INVITE",
            "Max-Forwards: 70",
        ],
        "",
    );
    // A message that is a slice of a larger buffer keeps all of it alive.
    let mut big = BytesMut::with_capacity(64 * 1024);
    big.extend_from_slice(text.as_bytes());
    big.extend_from_slice(&[0u8; 1000]);
    let shared = big.freeze().slice(0..text.len());
    let msg = Message::parse(shared).unwrap();
    let kept = msg.compact();
    assert_eq!(kept.as_bytes(), msg.as_bytes());
    assert_eq!(kept.call_id(), "c1");
    assert_eq!(kept.cseq().seq, 1);
    assert_eq!(kept.iter_headers().count(), msg.iter_headers().count());
    assert!(kept.headers.capacity() < 24, "the header index was shrunk");
    assert_ne!(
        kept.as_bytes().as_ptr(),
        msg.as_bytes().as_ptr(),
        "its own buffer, not the shared one"
    );
}

/// The header index is kept with every stored message (a held call keeps
/// two INVITEs for its life, issue 15: 4 KiB a held call in all): `u16`
/// offsets make an entry 10 bytes, where `u32` spans took 20.
#[test]
fn a_header_index_entry_takes_ten_bytes() {
    assert_eq!(std::mem::size_of::<HeaderEntry>(), 10);
}

/// A method is 16 bytes (its extension text behind a thin pointer; 24 as
/// a `Box<str>`), so a message, which holds two, is 144 (was 160).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_method_takes_16_bytes_and_a_message_144() {
    assert_eq!(std::mem::size_of::<Method>(), 16);
    let size = std::mem::size_of::<Message>();
    assert!(size <= 144, "a Message is {size} bytes");
}

/// A header that ends near the 64 KiB limit is read whole: its offsets are
/// the largest a `u16` index holds.
#[test]
fn a_header_at_the_end_of_a_64_kib_message_is_read_whole() {
    let head = join(INVITE, "");
    // INVITE's last line is Content-Length: 4; the header goes before it.
    let room = MAX_MESSAGE_SIZE - head.len() - "X-Pad: \r\n".len() - "X-Last: end\r\n".len();
    let mut lines = INVITE[..INVITE.len() - 1].to_vec();
    let pad = format!("X-Pad: {}", "p".repeat(room - 4));
    lines.push(&pad);
    lines.push("X-Last: end");
    lines.push("Content-Length: 4");
    let text = join(&lines, "v=0\n");
    assert!(text.len() <= MAX_MESSAGE_SIZE && text.len() > MAX_MESSAGE_SIZE - 16);
    let m = parse(&text);
    assert_eq!(m.header("X-Last"), Some("end"));
    assert_eq!(m.header("X-Pad").map(str::len), Some(room - 4));
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.body(), b"v=0\n");
}
