//! Helpers shared by the message integration tests: an owned snapshot of
//! every typed field, and the round-trip check.
#![allow(dead_code)]

use bytes::Bytes;
use sipcore::message::{HeaderName, Message, NameAddr, Uri};

/// `name-addr` parts, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub display: Option<String>,
    pub uri: String,
    pub params: String,
    pub tag: Option<String>,
}

impl Addr {
    pub fn of(a: &NameAddr<'_>) -> Addr {
        Addr {
            display: a.display.map(str::to_owned),
            uri: a.uri.to_owned(),
            params: a.params.to_owned(),
            tag: a.tag().map(str::to_owned),
        }
    }
}

/// URI parts, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriParts {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: String,
    pub headers: String,
}

impl UriParts {
    pub fn of(u: &Uri<'_>) -> UriParts {
        UriParts {
            scheme: u.scheme.to_owned(),
            user: u.user.map(str::to_owned),
            password: u.password.map(str::to_owned),
            host: u.host.to_owned(),
            port: u.port,
            params: u.params.to_owned(),
            headers: u.headers.to_owned(),
        }
    }
}

/// One Via value, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaParts {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub params: String,
}

/// Every typed field of a message, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub method: Option<String>,
    pub request_uri: Option<String>,
    pub request_uri_parts: Option<UriParts>,
    pub version: String,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub vias: Vec<ViaParts>,
    pub from: Addr,
    pub to: Addr,
    pub call_id: String,
    pub cseq: (u32, String),
    pub contacts: Vec<Addr>,
    pub routes: Vec<Addr>,
    pub record_routes: Vec<Addr>,
    pub max_forwards: Option<u32>,
    pub content_type: Option<String>,
    pub expires: Option<u32>,
    pub require: Vec<String>,
    pub supported: Vec<String>,
    /// Every header but Content-Length (which printing rewrites), as
    /// (name as received, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Snapshot {
    pub fn of(m: &Message) -> Snapshot {
        let addrs = |it: &mut dyn Iterator<Item = Result<NameAddr<'_>, sipcore::ParseError>>| {
            it.map(|a| Addr::of(&a.expect("address of a parsed message")))
                .collect::<Vec<_>>()
        };
        Snapshot {
            method: m.method().map(|x| x.to_string()),
            request_uri: m.request_uri_str().map(str::to_owned),
            request_uri_parts: m.request_uri().map(|u| UriParts::of(&u)),
            version: m.version().to_owned(),
            status: m.status(),
            reason: m.reason_phrase().map(str::to_owned),
            vias: m
                .vias()
                .map(|v| ViaParts {
                    transport: v.transport.to_owned(),
                    host: v.host.to_owned(),
                    port: v.port,
                    branch: v.branch().map(str::to_owned),
                    params: v.params.to_owned(),
                })
                .collect(),
            from: Addr::of(&m.from_header()),
            to: Addr::of(&m.to_header()),
            call_id: m.call_id().to_owned(),
            cseq: (m.cseq().seq, m.cseq().method.to_string()),
            contacts: addrs(&mut m.contacts()),
            routes: addrs(&mut m.routes()),
            record_routes: m
                .record_routes()
                .filter_map(Result::ok)
                .map(|a| Addr::of(&a))
                .collect(),
            max_forwards: m.max_forwards(),
            content_type: m.content_type().map(str::to_owned),
            expires: m.expires(),
            require: m.require().map(str::to_owned).collect(),
            supported: m.supported().map(str::to_owned).collect(),
            headers: m
                .iter_headers()
                .filter(|(n, _)| HeaderName::classify(n) != HeaderName::ContentLength)
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            body: m.body().to_vec(),
        }
    }
}

/// Prints `m` through the editor without edits, parses the result and
/// checks that every typed field is unchanged, and that printing again
/// gives the same bytes.
pub fn assert_round_trip(m: &Message) -> Message {
    let printed = m.edit().build();
    let again = Message::parse(printed.clone()).unwrap_or_else(|e| {
        panic!(
            "re-parse failed: {e}\n---\n{}",
            String::from_utf8_lossy(&printed)
        )
    });
    assert_eq!(Snapshot::of(&again), Snapshot::of(m));
    assert_eq!(again.content_length(), Some(m.body().len() as u32));
    assert_eq!(again.edit().build(), printed, "printing is a fixed point");
    again
}

/// A message from text written with `\n` line ends: every `\n` becomes
/// CRLF, `$CL` becomes the body length, and the empty line and the body
/// are appended.
pub fn message(head: &str, body: &[u8]) -> Bytes {
    let mut out = head
        .trim_end_matches('\n')
        .replace('\n', "\r\n")
        .replace("$CL", &body.len().to_string())
        .into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// An SDP body with CRLF line ends.
pub fn sdp(body: &str) -> Vec<u8> {
    body.replace('\n', "\r\n").into_bytes()
}
