//! Printing a received message back with a proxy's or B2BUA's edits.
//!
//! Every header that is not edited is copied byte for byte (name as
//! received, compact or long, and value); lines are re-terminated with
//! CRLF, and Content-Length is always written last and always correct.

use bytes::{BufMut, Bytes, BytesMut};

use super::values::split_list;
use super::{HeaderEntry, HeaderName, Message, StartLine};

/// Collects edits to a [`Message`]; [`Editor::build`] prints the result.
pub struct Editor<'m> {
    msg: &'m Message,
    request_uri: Option<String>,
    push_via: Vec<String>,
    pop_via: bool,
    record_routes: Vec<String>,
    removed: Vec<String>,
    set: Vec<(String, String)>,
    added: Vec<(String, String)>,
    body: Option<(Option<String>, Bytes)>,
}

impl<'m> Editor<'m> {
    pub(super) fn new(msg: &'m Message) -> Self {
        Editor {
            msg,
            request_uri: None,
            push_via: Vec::new(),
            pop_via: false,
            record_routes: Vec::new(),
            removed: Vec::new(),
            set: Vec::new(),
            added: Vec::new(),
            body: None,
        }
    }

    /// Replaces the Request-URI (requests only; ignored for responses).
    pub fn request_uri(mut self, uri: impl Into<String>) -> Self {
        self.request_uri = Some(uri.into());
        self
    }

    /// Adds a Via value on top (a new first line). Several calls stack in
    /// call order above the existing ones.
    pub fn push_via(mut self, value: impl Into<String>) -> Self {
        self.push_via.push(value.into());
        self
    }

    /// Removes the topmost received Via value, also when it shares its
    /// line with others (`Via: a, b` becomes `Via: b`).
    pub fn pop_via(mut self) -> Self {
        self.pop_via = true;
        self
    }

    /// Adds a Record-Route value above the existing ones.
    pub fn add_record_route(mut self, value: impl Into<String>) -> Self {
        self.record_routes.push(value.into());
        self
    }

    /// Sets a header: replaces its first line, drops further lines, or
    /// appends it if absent.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((name.into(), value.into()));
        self
    }

    /// Appends a header line, keeping existing ones.
    pub fn add_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.added.push((name.into(), value.into()));
        self
    }

    /// Drops every line of a header (long and compact forms alike).
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.removed.push(name.into());
        self
    }

    /// Replaces the body. With `Some(content_type)` the Content-Type is set
    /// too, with `None` the received one is kept (an SDP rewrite); an empty
    /// body drops Content-Type.
    pub fn set_body(mut self, content_type: Option<&str>, body: Bytes) -> Self {
        self.body = Some((content_type.map(str::to_owned), body));
        self
    }

    fn named(&self, h: &HeaderEntry, name: &(HeaderName, &str)) -> bool {
        self.msg.is_named(h, name.0, name.1)
    }

    /// Prints the edited message.
    pub fn build(self) -> Bytes {
        let msg = self.msg;
        let body = match &self.body {
            Some((_, b)) => b.clone(),
            None => msg.body_bytes(),
        };
        let mut out = BytesMut::with_capacity(msg.headers_end as usize + 256 + body.len());
        match (&msg.start, &self.request_uri) {
            (StartLine::Request { method, .. }, Some(uri)) => {
                out.put_slice(method.as_str().as_bytes());
                out.put_u8(b' ');
                out.put_slice(uri.as_bytes());
                out.put_u8(b' ');
                out.put_slice(msg.version().as_bytes());
            }
            _ => out.put_slice(&msg.buf[msg.start_line.range()]),
        }
        out.put_slice(b"\r\n");
        for v in &self.push_via {
            put_header(&mut out, "Via", v);
        }

        let mut via_popped = !self.pop_via;
        let mut rr_written = self.record_routes.is_empty();
        // Names classified once, not once per header line.
        let removed: Vec<(HeaderName, &str)> = self
            .removed
            .iter()
            .map(|n| (HeaderName::classify(n), n.as_str()))
            .collect();
        let set: Vec<(HeaderName, &str)> = self
            .set
            .iter()
            .map(|(n, _)| (HeaderName::classify(n), n.as_str()))
            .collect();
        let mut set_done = vec![false; self.set.len()];
        // Drop the received Content-Type when a new one is given or the
        // new body is empty.
        let drop_content_type = self
            .body
            .as_ref()
            .is_some_and(|(ct, b)| ct.is_some() || b.is_empty());
        for h in &msg.headers {
            if h.kind == HeaderName::ContentLength
                || (drop_content_type && h.kind == HeaderName::ContentType)
                || removed.iter().any(|n| self.named(h, n))
            {
                continue;
            }
            if h.kind == HeaderName::RecordRoute && !rr_written {
                for rr in &self.record_routes {
                    put_header(&mut out, "Record-Route", rr);
                }
                rr_written = true;
            }
            if let Some(i) = set.iter().position(|n| self.named(h, n)) {
                if !set_done[i] {
                    set_done[i] = true;
                    put_header(&mut out, &self.set[i].0, &self.set[i].1);
                }
                continue;
            }
            if h.kind == HeaderName::Via && !via_popped {
                via_popped = true;
                let value = msg.text(h.value);
                let mut rest = split_list(value).skip(1).peekable();
                if rest.peek().is_some() {
                    out.put_slice(msg.text(h.name).as_bytes());
                    out.put_slice(b": ");
                    for (i, v) in rest.enumerate() {
                        if i > 0 {
                            out.put_slice(b", ");
                        }
                        out.put_slice(v.as_bytes());
                    }
                    out.put_slice(b"\r\n");
                }
                continue;
            }
            out.put_slice(&msg.buf[h.name.start as usize..h.value.end as usize]);
            out.put_slice(b"\r\n");
        }
        if !rr_written {
            for rr in &self.record_routes {
                put_header(&mut out, "Record-Route", rr);
            }
        }
        for (i, (n, v)) in self.set.iter().enumerate() {
            if !set_done[i] {
                put_header(&mut out, n, v);
            }
        }
        for (n, v) in &self.added {
            put_header(&mut out, n, v);
        }
        if let Some((Some(ct), b)) = &self.body {
            if !b.is_empty() {
                put_header(&mut out, "Content-Type", ct);
            }
        }
        put_content_length(&mut out, body.len());
        out.put_slice(&body);
        out.freeze()
    }

    /// Prints and parses the result.
    pub fn build_message(self) -> Result<Message, crate::ParseError> {
        Message::parse(self.build())
    }
}

pub(super) fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes `Content-Length: n` and the empty line that ends the headers.
pub(super) fn put_content_length(out: &mut BytesMut, len: usize) {
    use std::fmt::Write;
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "Content-Length: {len}\r\n\r\n");
}
