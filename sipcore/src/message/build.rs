//! Building new requests and responses (what a UA or B2BUA originates, as
//! opposed to [`super::Editor`], which re-prints a received message).

use bytes::{BufMut, Bytes, BytesMut};

use super::edit::{put_content_length, put_header};
use super::{HeaderName, Message, Method};

/// A new request. Headers are printed in the order given; Max-Forwards 70
/// is added unless set, Content-Length is always added last.
pub struct RequestBuilder {
    out: BytesMut,
    has_max_forwards: bool,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    pub fn new(method: &Method, request_uri: &str) -> Self {
        let mut out = BytesMut::with_capacity(1024);
        out.put_slice(method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(request_uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        RequestBuilder {
            out,
            has_max_forwards: false,
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        if HeaderName::classify(name) == HeaderName::MaxForwards {
            self.has_max_forwards = true;
        }
        put_header(&mut self.out, name, value);
        self
    }

    /// Adds `name: value` for each value, one line each.
    pub fn headers<'v>(mut self, name: &str, values: impl IntoIterator<Item = &'v str>) -> Self {
        for v in values {
            self = self.header(name, v);
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    pub fn build(mut self) -> Bytes {
        if !self.has_max_forwards {
            put_header(&mut self.out, "Max-Forwards", "70");
        }
        finish(self.out, self.body)
    }
}

/// A response to a received request (RFC 3261 §8.2.6): Via lines, From,
/// To, Call-ID and CSeq copied from the request; a To tag added when
/// given and the request had none; Record-Route copied for responses that
/// can create a dialog (§12.1.1).
pub struct ResponseBuilder {
    out: BytesMut,
    body: Option<(String, Bytes)>,
}

impl ResponseBuilder {
    pub fn new(request: &Message, status: u16, reason: &str) -> Self {
        Self::with_to_tag(request, status, reason, None)
    }

    pub fn with_to_tag(request: &Message, status: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut out = BytesMut::with_capacity(512 + request.headers.len() * 48);
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(status.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\r\n");
        let dialog_creating = (101..300).contains(&status)
            && matches!(
                request.method(),
                Some(Method::Invite | Method::Subscribe | Method::Refer)
            );
        for h in &request.headers {
            let copy = match h.kind {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                HeaderName::RecordRoute => dialog_creating,
                HeaderName::To => {
                    let value = request.text(h.value);
                    match to_tag {
                        Some(tag) if request.to_tag().is_none() && status != 100 => {
                            out.put_slice(b"To: ");
                            out.put_slice(value.as_bytes());
                            out.put_slice(b";tag=");
                            out.put_slice(tag.as_bytes());
                            out.put_slice(b"\r\n");
                            false
                        }
                        _ => true,
                    }
                }
                _ => false,
            };
            if copy {
                out.put_slice(&request.buf[h.name.start as usize..h.value.end as usize]);
                out.put_slice(b"\r\n");
            }
        }
        ResponseBuilder { out, body: None }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        put_header(&mut self.out, name, value);
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    pub fn build(self) -> Bytes {
        finish(self.out, self.body)
    }
}

fn finish(mut out: BytesMut, body: Option<(String, Bytes)>) -> Bytes {
    match body {
        Some((ct, b)) if !b.is_empty() => {
            put_header(&mut out, "Content-Type", &ct);
            put_content_length(&mut out, b.len());
            out.put_slice(&b);
        }
        _ => put_content_length(&mut out, 0),
    }
    out.freeze()
}
