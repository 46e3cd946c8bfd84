//! Property tests of the message parser.
//!
//! * Random valid requests and responses (known and extension methods,
//!   SIP/SIPS URIs with IPv4, IPv6 and host names, 1–5 Via values split at
//!   random over lines and commas, long or compact header names in random
//!   case, unknown headers, random header order, bodies with
//!   Content-Length) are printed, parsed, and the typed fields must be the
//!   generated ones; then the message must survive a print/parse round
//!   trip through the editor.
//! * Random byte mutations of such messages never make parse panic; when a
//!   mutant parses, its typed views, edits and round trip work too.

mod common;

use bytes::Bytes;
use common::{assert_round_trip, Snapshot};
use proptest::prelude::*;
use proptest::sample::select;
use sipcore::message::{Message, Method, MAX_MESSAGE_SIZE};

// ---- generators of the parts ----

const TOKEN_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~";

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(select(TOKEN_CHARS), 1..=max)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        select(vec![
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "UPDATE",
            "INFO",
            "SUBSCRIBE",
            "NOTIFY",
            "REFER",
            "MESSAGE",
            "PUBLISH",
        ])
        .prop_map(Method::from_token),
        token(12).prop_map(|t| Method::from_token(&t)),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            proptest::string::string_regex("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?").unwrap(),
            1..4
        )
        .prop_map(|labels| labels.join(".")),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<u128>().prop_map(|v| format!("[{}]", std::net::Ipv6Addr::from(v))),
    ]
}

/// A SIP or SIPS URI and its expected parts.
#[derive(Debug, Clone)]
struct GenUri {
    text: String,
    scheme: &'static str,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    params: String,
}

fn uri() -> impl Strategy<Value = GenUri> {
    let user = proptest::string::string_regex("([a-zA-Z0-9_.!~*'()&=+$,;?/-]|%[0-9A-F]{2}){1,12}")
        .unwrap();
    let param = (token(8), proptest::option::of(token(8))).prop_map(|(k, v)| match v {
        Some(v) => format!(";{k}={v}"),
        None => format!(";{k}"),
    });
    (
        select(vec!["sip", "sips"]),
        proptest::option::of(user),
        host(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(param, 0..3),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let params = params.concat();
            let mut text = format!("{scheme}:");
            if let Some(u) = &user {
                text.push_str(u);
                text.push('@');
            }
            text.push_str(&host);
            if let Some(p) = port {
                text.push_str(&format!(":{p}"));
            }
            text.push_str(&params);
            GenUri {
                text,
                scheme,
                user,
                host,
                port,
                params,
            }
        })
}

#[derive(Debug, Clone)]
struct GenVia {
    text: String,
    transport: String,
    host: String,
    port: Option<u16>,
    branch: String,
}

fn via() -> impl Strategy<Value = GenVia> {
    (
        prop_oneof![
            select(vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]).prop_map(str::to_owned),
            token(6)
        ],
        host(),
        proptest::option::of(any::<u16>()),
        token(16),
        any::<bool>(),
    )
        .prop_map(|(transport, host, port, branch, rport)| {
            let branch = format!("z9hG4bK{branch}");
            let mut text = format!("SIP/2.0/{transport} {host}");
            if let Some(p) = port {
                text.push_str(&format!(":{p}"));
            }
            text.push_str(&format!(";branch={branch}"));
            if rport {
                text.push_str(";rport");
            }
            GenVia {
                text,
                transport,
                host,
                port,
                branch,
            }
        })
}

/// A name-addr with optional display name (quoted with escapes, or tokens).
#[derive(Debug, Clone)]
struct GenAddr {
    text: String,
    display: Option<String>,
    uri: String,
    tag: Option<String>,
}

fn display_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Quoted: any printable ASCII and some UTF-8, `"` and `\` escaped.
        proptest::string::string_regex("[ -~äöü€大]{0,16}")
            .unwrap()
            .prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        proptest::collection::vec(token(8), 1..3).prop_map(|w| w.join(" ")),
    ]
}

fn addr() -> impl Strategy<Value = GenAddr> {
    (
        proptest::option::of(display_name()),
        uri(),
        proptest::option::of(token(10)),
        any::<bool>(),
    )
        .prop_map(|(display, uri, tag, angle)| {
            // Without a display name and URI parameters, the addr-spec form
            // (no brackets) is allowed too.
            let bracket = angle
                || display.is_some()
                || !uri.params.is_empty()
                || uri.text.contains(['?', ',', ';']);
            let mut text = String::new();
            if let Some(d) = &display {
                text.push_str(d);
                text.push(' ');
            }
            if bracket {
                text.push_str(&format!("<{}>", uri.text));
            } else {
                text.push_str(&uri.text);
            }
            if let Some(t) = &tag {
                text.push_str(&format!(";tag={t}"));
            }
            GenAddr {
                text,
                display,
                uri: uri.text,
                tag,
            }
        })
}

/// How a header name is printed: long or compact, in random case.
fn spell(long: &str, compact: Option<&str>, use_compact: bool, case: &[bool]) -> String {
    let name = match compact {
        Some(c) if use_compact => c,
        _ => long,
    };
    name.chars()
        .zip(case.iter().cycle())
        .map(|(c, &up)| {
            if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct GenMessage {
    /// `Some` for requests.
    request: Option<(Method, GenUri)>,
    status: u16,
    reason: String,
    vias: Vec<GenVia>,
    /// How many Via values go on each Via line.
    via_lines: Vec<usize>,
    via_sep: &'static str,
    from: GenAddr,
    to: GenAddr,
    call_id: String,
    cseq: (u32, Method),
    max_forwards: u8,
    contacts: Vec<GenAddr>,
    unknown: Vec<(String, String)>,
    body: Vec<u8>,
    compact: Vec<bool>,
    case: Vec<bool>,
    /// Permutation keys for the header lines.
    order: Vec<u16>,
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
    let vias = proptest::collection::vec(via(), 1..=5).prop_flat_map(|vias| {
        let n = vias.len();
        (
            Just(vias),
            // A random composition of n: the size of each Via line.
            proptest::collection::vec(any::<bool>(), n - 1).prop_map(move |cuts| {
                let mut sizes = vec![1usize];
                for cut in cuts {
                    if cut {
                        sizes.push(1);
                    } else {
                        *sizes.last_mut().unwrap() += 1;
                    }
                }
                sizes
            }),
            select(vec![", ", ",", " , ", ",\t"]),
        )
    });
    let unknown = proptest::collection::vec(
        (
            token(10).prop_map(|t| format!("X-{t}")),
            proptest::string::string_regex("[!-~]([ -~]{0,30}[!-~])?").unwrap(),
        ),
        0..4,
    );
    (
        proptest::option::of((method(), uri())),
        100u16..700,
        proptest::string::string_regex("[ -~é]{0,20}").unwrap(),
        vias,
        (addr(), addr()),
        proptest::string::string_regex(
            "[a-zA-Z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,24}(@[a-z0-9.]{1,12})?",
        )
        .unwrap(),
        (0u32..(1 << 31), method()),
        any::<u8>(),
        proptest::collection::vec(addr(), 0..3),
        unknown,
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            proptest::collection::vec(any::<bool>(), 12),
            proptest::collection::vec(any::<bool>(), 1..8),
            proptest::collection::vec(any::<u16>(), 32),
        ),
    )
        .prop_map(
            |(
                request,
                status,
                reason,
                (vias, via_lines, via_sep),
                (from, to),
                call_id,
                cseq,
                max_forwards,
                contacts,
                unknown,
                body,
                (compact, case, order),
            )| {
                // A request's CSeq names its own method.
                let cseq = match &request {
                    Some((m, _)) => (cseq.0, m.clone()),
                    None => cseq,
                };
                GenMessage {
                    request,
                    status,
                    reason: reason.trim_end().to_string(),
                    vias,
                    via_lines,
                    via_sep,
                    from,
                    to,
                    call_id,
                    cseq,
                    max_forwards,
                    contacts,
                    unknown,
                    body,
                    compact,
                    case,
                    order,
                }
            },
        )
}

impl GenMessage {
    fn print(&self) -> Vec<u8> {
        let name = |i: usize, long: &str, compact: Option<&str>| {
            spell(
                long,
                compact,
                self.compact[i % self.compact.len()],
                &self.case,
            )
        };
        let mut lines: Vec<String> = Vec::new();
        // Via lines keep their relative order; everything else is shuffled
        // around them.
        let mut via_lines = Vec::new();
        let mut next = 0;
        for (i, &n) in self.via_lines.iter().enumerate() {
            let values: Vec<&str> = self.vias[next..next + n]
                .iter()
                .map(|v| v.text.as_str())
                .collect();
            next += n;
            via_lines.push(format!(
                "{}: {}",
                name(i, "Via", Some("v")),
                values.join(self.via_sep)
            ));
        }
        lines.push(format!(
            "{}: {}",
            name(1, "From", Some("f")),
            self.from.text
        ));
        lines.push(format!("{}: {}", name(2, "To", Some("t")), self.to.text));
        lines.push(format!(
            "{}: {}",
            name(3, "Call-ID", Some("i")),
            self.call_id
        ));
        lines.push(format!(
            "{}: {} {}",
            name(4, "CSeq", None),
            self.cseq.0,
            self.cseq.1
        ));
        if self.request.is_some() {
            lines.push(format!(
                "{}: {}",
                name(5, "Max-Forwards", None),
                self.max_forwards
            ));
        }
        for (n, v) in &self.unknown {
            lines.push(format!("{n}: {v}"));
        }
        if !self.body.is_empty() {
            lines.push(format!(
                "{}: application/octet-stream",
                name(9, "Content-Type", Some("c"))
            ));
        }
        lines.push(format!(
            "{}: {}",
            name(10, "Content-Length", Some("l")),
            self.body.len()
        ));
        let contacts: Vec<String> = self
            .contacts
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{}: {}", name(6 + k, "Contact", Some("m")), c.text))
            .collect();
        // Shuffle by the generated keys; Contact lines get their keys in
        // ascending order so that they keep their relative order.
        let key = |i: usize| self.order[i % self.order.len()];
        let mut keyed: Vec<(u16, String)> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| (key(i), l))
            .collect();
        let mut contact_keys: Vec<u16> = (0..contacts.len()).map(|k| key(20 + k)).collect();
        contact_keys.sort_unstable();
        keyed.extend(contact_keys.into_iter().zip(contacts));
        keyed.sort_by_key(|(k, _)| *k);
        let mut lines: Vec<String> = keyed.into_iter().map(|(_, l)| l).collect();
        let mut after = 0;
        for (i, v) in via_lines.into_iter().enumerate() {
            let at = (self.order[(i + 7) % self.order.len()] as usize) % (lines.len() + 1);
            let at = at.max(after);
            lines.insert(at, v);
            after = at + 1;
        }
        let start = match &self.request {
            Some((m, u)) => format!("{m} {} SIP/2.0", u.text),
            None if self.reason.is_empty() => format!("SIP/2.0 {}", self.status),
            None => format!("SIP/2.0 {} {}", self.status, self.reason),
        };
        let mut out = start.into_bytes();
        for l in lines {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(l.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    fn check(&self, m: &Message) {
        match &self.request {
            Some((method, u)) => {
                assert_eq!(m.method(), Some(method));
                assert_eq!(m.request_uri_str(), Some(u.text.as_str()));
                let p = m.request_uri().unwrap();
                assert_eq!(p.scheme, u.scheme);
                assert_eq!(p.user, u.user.as_deref());
                assert_eq!(p.host, u.host);
                assert_eq!(p.port, u.port);
                assert_eq!(p.params, u.params);
                assert_eq!(m.max_forwards(), Some(u32::from(self.max_forwards)));
            }
            None => {
                assert_eq!(m.status(), Some(self.status));
                assert_eq!(m.reason_phrase(), Some(self.reason.as_str()));
            }
        }
        assert_eq!(m.version(), "SIP/2.0");
        let vias: Vec<_> = m
            .vias()
            .map(|v| {
                (
                    v.transport.to_string(),
                    v.host.to_string(),
                    v.port,
                    v.branch().map(str::to_owned),
                )
            })
            .collect();
        let want: Vec<_> = self
            .vias
            .iter()
            .map(|v| {
                (
                    v.transport.clone(),
                    v.host.clone(),
                    v.port,
                    Some(v.branch.clone()),
                )
            })
            .collect();
        assert_eq!(vias, want);
        for (got, want) in [(m.from_header(), &self.from), (m.to_header(), &self.to)] {
            assert_eq!(got.display, want.display.as_deref());
            assert_eq!(got.uri, want.uri);
            assert_eq!(got.tag(), want.tag.as_deref());
        }
        assert_eq!(m.call_id(), self.call_id);
        assert_eq!(
            (m.cseq().seq, &m.cseq().method),
            (self.cseq.0, &self.cseq.1)
        );
        let contacts: Vec<String> = m.contacts().map(|c| c.unwrap().uri.to_string()).collect();
        let want: Vec<String> = self.contacts.iter().map(|c| c.uri.clone()).collect();
        assert_eq!(contacts, want);
        for (n, v) in &self.unknown {
            assert!(m.headers(n).any(|got| got == v), "{n}: {v}");
        }
        assert_eq!(m.content_length(), Some(self.body.len() as u32));
        assert_eq!(m.body(), &self.body[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_messages_parse_to_their_fields(g in gen_message()) {
        let bytes = g.print();
        let m = Message::parse(Bytes::from(bytes.clone())).unwrap_or_else(|e| {
            panic!("{e}\n---\n{}", String::from_utf8_lossy(&bytes))
        });
        g.check(&m);
        let again = assert_round_trip(&m);
        g.check(&again);
    }
}

/// One edit of a message's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => select(b"\r\n \t:;,\"<>@?=/\\%[]0123456789aZ".to_vec()),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>();
    prop_oneof![
        4 => (at.clone(), interesting_byte()).prop_map(|(i, b)| Mutation::Set(i.index(1 << 16), b)),
        4 => (at.clone(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i.index(1 << 16), b)),
        2 => (at.clone(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i.index(1 << 16), n)),
        2 => (at.clone(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i.index(1 << 16), n)),
        1 => at.prop_map(|i| Mutation::Truncate(i.index(1 << 16))),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len().max(1);
    match *m {
        Mutation::Set(i, b) => {
            if !buf.is_empty() {
                buf[i % len] = b;
            }
        }
        Mutation::Insert(i, b) => buf.insert(i % (buf.len() + 1), b),
        Mutation::Delete(i, n) => {
            let i = i % len;
            let end = (i + n).min(buf.len());
            buf.drain(i.min(end)..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = i % len;
            let end = (i + n).min(buf.len());
            let part = buf[i.min(end)..end].to_vec();
            let at = end;
            buf.splice(at..at, part);
        }
        Mutation::Truncate(i) => buf.truncate(i % len),
    }
}

/// Everything a caller may do with a parsed message; none of it may panic.
fn exercise(m: &Message) {
    let _ = Snapshot::of(m);
    sipcore::fuzzing::exercise_views(m);
    let edited = m
        .edit()
        .push_via("SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKmut")
        .pop_via()
        .add_record_route("<sip:203.0.113.1;lr>")
        .set_header("Max-Forwards", "69")
        .add_header("X-Mutant", "1")
        .remove_header("Contact")
        .build();
    if edited.len() <= MAX_MESSAGE_SIZE {
        let again = Message::parse(edited).expect("an edited valid message parses");
        assert_eq!(again.call_id(), m.call_id());
        assert_eq!(again.cseq(), m.cseq());
        assert_eq!(again.top_via().branch(), Some("z9hG4bKmut"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_panic(
        g in gen_message(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut buf = g.print();
        for m in &mutations {
            apply(&mut buf, m);
        }
        if let Ok(m) = Message::parse(Bytes::from(buf)) {
            exercise(&m);
            assert_round_trip(&m);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Message::parse(Bytes::from(buf)) {
            exercise(&m);
        }
    }
}
