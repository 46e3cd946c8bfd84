//! `build_message` yields exactly what the parser makes of the built
//! bytes, without running the parser (unless something odd was built).

use bytes::Bytes;

use super::super::PARSES;
use super::*;

fn parses() -> u64 {
    PARSES.with(|p| p.get())
}

/// `build_message` ran no parse, and made what the parser reads in the
/// bytes `build` makes, field by field (the Debug form shows every field,
/// the buffer included).
fn assert_built_without_a_parse(
    build_message: impl FnOnce() -> Result<Message, ParseError>,
    bytes: Bytes,
) {
    let before = parses();
    let msg = build_message().expect("built");
    assert_eq!(parses() - before, 0, "built with a parse:\n{msg:?}");
    assert_eq!(msg.as_bytes(), &bytes);
    let reparsed = Message::parse(bytes).expect("built bytes parse");
    assert_eq!(format!("{msg:?}"), format!("{reparsed:?}"));
}

fn request(lines: &[&str]) -> Message {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    Message::parse(Bytes::from(s)).expect("test request parses")
}

fn invite() -> Message {
    request(&[
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK0",
        "v:SIP/2.0/TCP 192.0.2.8;branch=z9hG4bKx",
        "Record-Route: <sip:p1.example.com;lr>",
        "Max-Forwards: 70",
        "f: \"Alice\" <sip:alice@example.com>;tag=a1",
        "To  :  <sip:bob@example.com>",
        "i: call-1@192.0.2.1",
        "CSeq: 7 INVITE",
        "Contact: <sip:alice@192.0.2.1>",
        "Content-Length: 0",
    ])
}

#[test]
fn built_responses_are_what_the_parser_reads_without_a_parse() {
    let req = invite();
    let cases: Vec<Box<dyn Fn() -> ResponseBuilder>> = vec![
        Box::new(|| ResponseBuilder::new(&req, 100, "Trying")),
        Box::new(|| ResponseBuilder::with_to_tag(&req, 180, "Ringing", Some("b7"))),
        Box::new(|| {
            ResponseBuilder::with_to_tag(&req, 200, "OK", Some("b7"))
                .header("Contact", "<sip:tandem@192.0.2.5>")
                .header("Supported", "timer")
                .body(
                    "application/sdp",
                    Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\n"),
                )
        }),
        Box::new(|| ResponseBuilder::new(&req, 487, "")),
        Box::new(|| {
            ResponseBuilder::new(&req, 503, "Service Unavailable").header("Retry-After", "1")
        }),
    ];
    for make in &cases {
        assert_built_without_a_parse(|| make().build_message(), make().build());
    }
}

#[test]
fn built_requests_are_what_the_parser_reads_without_a_parse() {
    let base = || {
        RequestBuilder::new(&Method::Invite, "sip:bob@192.0.2.7:5070;transport=udp")
            .header("Via", "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKb1;rport")
            .header("From", "<sip:alice@example.com>;tag=t1")
            .header("To", "<sip:bob@example.com>")
            .header("Call-ID", "b-1@tandem")
            .header("CSeq", "1 INVITE")
            .header("Contact", "<sip:tandem@192.0.2.5>")
    };
    let cases: Vec<Box<dyn Fn() -> RequestBuilder>> = vec![
        Box::new(base),
        Box::new(|| base().header("Max-Forwards", "12").header("X-Empty", "")),
        Box::new(|| {
            base()
                .headers("Route", ["<sip:p1;lr>", "<sip:p2;lr>"])
                .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
        }),
        Box::new(|| {
            RequestBuilder::new(&Method::Bye, "sip:bob@192.0.2.7")
                .header("v", "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKb2")
                .header("f", "<sip:alice@example.com>;tag=t1")
                .header("t", "<sip:bob@example.com>;tag=t2")
                .header("i", "b-1@tandem")
                .header("CSeq", "2 BYE")
        }),
    ];
    for make in &cases {
        assert_built_without_a_parse(|| make().build_message(), make().build());
    }
}

/// What the parser would read differently from how it was written, or
/// reject, is left to the parser: same message, same error.
#[test]
fn odd_builds_get_the_parsers_answer() {
    let req = invite();
    let same = |msg: Result<Message, ParseError>, bytes: Bytes| match (msg, Message::parse(bytes)) {
        (Ok(m), Ok(p)) => assert_eq!(format!("{m:?}"), format!("{p:?}")),
        (Err(e), Err(p)) => assert_eq!(e.to_string(), p.to_string()),
        (m, p) => panic!("built {m:?}, parsed {p:?}"),
    };
    let responses: Vec<Box<dyn Fn() -> ResponseBuilder>> = vec![
        // A line break in a value starts another header line.
        Box::new(|| ResponseBuilder::new(&req, 200, "OK").header("X-A", "1\r\nCSeq: 1 BYE")),
        Box::new(|| ResponseBuilder::new(&req, 200, "OK").header("X-A", " padded ")),
        Box::new(|| ResponseBuilder::new(&req, 200, "OK").header("Bad Name", "1")),
        Box::new(|| ResponseBuilder::new(&req, 200, "OK").header("Content-Length", "5")),
        Box::new(|| ResponseBuilder::new(&req, 99, "Low")),
        Box::new(|| ResponseBuilder::new(&req, 200, "OK\r\nX: y")),
        Box::new(|| ResponseBuilder::with_to_tag(&req, 200, "OK", Some(""))),
        Box::new(|| ResponseBuilder::new(&req, 200, "OK").header("Call-ID", "again")),
    ];
    for make in &responses {
        same(make().build_message(), make().build());
    }
    // An OPTIONS with these Via, Call-ID and CSeq values.
    let options = |via: &str, call_id: &str, cseq: &str| {
        RequestBuilder::new(&Method::Options, "sip:a@example.com")
            .header("Via", via)
            .header("From", "<sip:a@example.com>;tag=1")
            .header("To", "<sip:a@example.com>")
            .header("Call-ID", call_id)
            .header("CSeq", cseq)
    };
    let via = "SIP/2.0/UDP h;branch=z9hG4bK1";
    let requests: Vec<Box<dyn Fn() -> RequestBuilder>> = vec![
        // Missing mandatory headers.
        Box::new(|| RequestBuilder::new(&Method::Options, "sip:a@example.com")),
        Box::new(|| RequestBuilder::new(&Method::Options, "sip:a@example.com x")),
        Box::new(|| options(via, "c", "1 INVITE")),
        Box::new(|| options("", "c", "1 OPTIONS")),
        Box::new(|| options(via, "c d", "1 OPTIONS")),
        Box::new(|| options(via, "c", "1 OPTIONS").header("Max-Forwards", "300")),
        Box::new(|| options(via, "c", "1 OPTIONS").header("CSeq", "1 OPTIONS")),
        // Values the parser rejects, e.g. made of a stranger's non-SIP URI
        // user (`mailto:alice@example.com` as leg A's From).
        Box::new(|| {
            RequestBuilder::new(&Method::Options, "sip:a@example.com")
                .header("Via", via)
                .header("From", "<sip:alice@example.com@10.0.0.1>;tag=1")
                .header("To", "<sip:a@example.com>")
                .header("Call-ID", "c")
                .header("CSeq", "1 OPTIONS")
        }),
        Box::new(|| options("SIP/2.0/UDP", "c", "1 OPTIONS")),
        Box::new(|| options(via, "c", "1 OPTIONS").header("Contact", "<sip:a@b@c>")),
        Box::new(|| options(via, "c", "1 OPTIONS").header("Route", "<sip:p>, <sip:a@b@c;lr>")),
    ];
    for make in &requests {
        same(make().build_message(), make().build());
    }
}

/// `without_body` keeps the start line and every header line but
/// Content-Type and Content-Length, says `Content-Length: 0`, and is what
/// the parser reads in its bytes, made without a parse: also for compact
/// names, a response, and leading CRLFs the parser skipped.
#[test]
fn a_message_without_its_body_is_what_the_parser_reads_without_a_parse() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let with_body = |head: &str| {
        Message::parse(Bytes::from(format!(
            "{head}Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )))
        .expect("test message parses")
    };
    let invite = with_body(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: call-1@192.0.2.1\r\n\
         CSeq: 7 INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Contact: <sip:alice@192.0.2.1>\r\n",
    );
    let compact = with_body(
        "\r\n\r\nINVITE sip:bob@example.com SIP/2.0\r\n\
         v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n\
         Max-Forwards: 70\r\n\
         f: <sip:alice@example.com>;tag=a1\r\n\
         t: <sip:bob@example.com>\r\n\
         i: call-2\r\n\
         CSeq: 1 INVITE\r\n\
         c: application/sdp\r\n",
    );
    let answer = with_body(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b1\r\n\
         Call-ID: call-3\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n",
    );
    for msg in [invite, compact, answer] {
        let expected = String::from_utf8(msg.as_bytes()[..msg.headers_end as usize].to_vec())
            .unwrap()
            .trim_start_matches("\r\n")
            .lines()
            .filter(|l| {
                let name = l.split(':').next().unwrap().trim().to_ascii_lowercase();
                !["content-type", "c", "content-length", "l"].contains(&name.as_str())
            })
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + "Content-Length: 0\r\n\r\n";
        assert_built_without_a_parse(|| Ok(msg.without_body()), Bytes::from(expected));
        assert!(msg.without_body().body().is_empty());
        assert_eq!(msg.without_body().content_type(), None);
    }
}

/// `with_headers_only` keeps the start line and the header lines of the
/// kinds asked for, in order, with `Content-Length: 0`, without a parse;
/// asked to drop a mandatory header it keeps them all (without the body).
#[test]
fn a_message_with_some_headers_only_is_what_the_parser_reads_without_a_parse() {
    let invite = Message::parse(Bytes::from(
        "INVITE sip:bob@192.0.2.7 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKb1;rport\r\n\
         Max-Forwards: 69\r\n\
         Route: <sip:edge.example.com;lr>\r\n\
         From: <sip:alice@example.com>;tag=t1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: b-1@tandem\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:tandem@192.0.2.5>\r\n\
         Supported: timer\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 4\r\n\r\nv=0\n",
    ))
    .unwrap();
    use HeaderName as H;
    let mandatory = |k: HeaderName| {
        matches!(
            k,
            H::Via | H::MaxForwards | H::From | H::To | H::CallId | H::CSeq
        )
    };
    assert_built_without_a_parse(
        || Ok(invite.with_headers_only(mandatory)),
        Bytes::from(
            "INVITE sip:bob@192.0.2.7 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKb1;rport\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:alice@example.com>;tag=t1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: b-1@tandem\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n",
        ),
    );
    let without_call_id = invite.with_headers_only(|k| mandatory(k) && k != H::CallId);
    assert_eq!(
        format!("{without_call_id:?}"),
        format!("{:?}", invite.without_body())
    );
}

/// A To tag appended to a parsed To value (not checked again) gives what
/// the parser reads, also for odd To values the parser takes.
#[test]
fn a_to_tag_added_to_an_odd_to_value_is_what_the_parser_reads() {
    for to in [
        "<sip:bob@example.com>;",
        "sip:bob@example.com;",
        "<sip:bob@example.com>;x",
        "<sip:bob@example.com>;x=\"a;b\"",
        "sip:bob@example.com;x=",
        "Bob <sip:b@e>  ",
    ] {
        let req = request(&[
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "Max-Forwards: 70",
            "From: <sip:a@e>;tag=1",
            &format!("To: {to}"),
            "Call-ID: c",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        ]);
        let make = || ResponseBuilder::with_to_tag(&req, 200, "OK", Some("t1"));
        assert_built_without_a_parse(|| make().build_message(), make().build());
    }
}
