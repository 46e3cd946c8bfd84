//! Dialogs (RFC 3261 §12): the state a UA keeps between two peers after
//! a dialog-creating request, and the rules for in-dialog requests.
//!
//! A [`Dialog`] is plain data (serialisable): a B2BUA keeps one per leg,
//! and the hot standby receives a copy of each.

use serde::{Deserialize, Serialize};

use crate::message::{params_without_tag, Message, Method, NameAddr, RequestBuilder};

/// Call-ID + local tag + remote tag (§12).
///
/// A dialog's strings are `Box<str>` (and its route set a boxed slice):
/// set once, read often, never grown, and a B2BUA keeps two dialogs for
/// each held call's whole life, where a `String`'s capacity word cost 8
/// bytes each (64 a dialog). Serde writes them as it wrote `String`s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialogId {
    pub call_id: Box<str>,
    pub local_tag: Box<str>,
    pub remote_tag: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialogState {
    /// Created by a 1xx with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    Terminated,
}

/// Why an in-dialog request was refused (§12.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// CSeq lower than or equal to the last one seen: answer 500.
    #[error("CSeq {got} is not above the last remote CSeq {last}")]
    CSeqOutOfOrder { got: u32, last: u32 },
    /// The message is not part of this dialog: answer 481.
    #[error("message does not belong to the dialog")]
    NotThisDialog,
    /// The dialog-creating message lacks what a dialog needs.
    #[error("cannot create a dialog: {0}")]
    Incomplete(&'static str),
}

/// One side's view of a dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Last CSeq number this side sent (0: none yet).
    pub local_seq: u32,
    /// Last CSeq number received from the peer, if any.
    pub remote_seq: Option<u32>,
    /// Our address as `name-addr` without tag (From of our requests).
    pub local_uri: Box<str>,
    /// The peer's address as `name-addr` without tag.
    pub remote_uri: Box<str>,
    /// The peer's Contact URI: where in-dialog requests go (§12.1).
    pub remote_target: Box<str>,
    /// Route set, in the order Route headers are to be written.
    pub route_set: Box<[String]>,
    /// Our Contact, sent in target refresh requests.
    pub local_contact: Box<str>,
    /// sips Request-URI or top Record-Route (§12.1.1).
    pub secure: bool,
}

impl Dialog {
    /// The UAS side, on a dialog-creating request we answer with
    /// `local_tag` in the To header (§12.1.1).
    pub fn from_uas_request(
        request: &Message,
        local_tag: &str,
        local_contact: &str,
        state: DialogState,
    ) -> Result<Dialog, DialogError> {
        let remote_tag = request
            .from_tag()
            .ok_or(DialogError::Incomplete("request has no From tag"))?;
        let remote_target = first_contact(request)?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().into(),
                local_tag: local_tag.into(),
                remote_tag: remote_tag.into(),
            },
            state,
            local_seq: 0,
            remote_seq: Some(request.cseq().seq),
            local_uri: without_tag(&request.to_header()),
            remote_uri: without_tag(&request.from_header()),
            remote_target,
            route_set: request
                .record_routes()
                .filter_map(Result::ok)
                .map(|r| r.raw.to_owned())
                .collect(),
            local_contact: local_contact.into(),
            secure: request
                .request_uri()
                .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sips")),
        })
    }

    /// The UAC side, on a 1xx (with To tag) or 2xx to our request (§12.1.2).
    /// The route set is the response's Record-Route in reverse order.
    pub fn from_uac_response(
        request: &Message,
        response: &Message,
        local_contact: &str,
    ) -> Result<Dialog, DialogError> {
        let status = response.status().unwrap_or(0);
        let remote_tag = response
            .to_tag()
            .ok_or(DialogError::Incomplete("response has no To tag"))?;
        let local_tag = request
            .from_tag()
            .ok_or(DialogError::Incomplete("request has no From tag"))?;
        let remote_target = first_contact(response)?;
        let mut route_set: Vec<String> = response
            .record_routes()
            .filter_map(Result::ok)
            .map(|r| r.raw.to_owned())
            .collect();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().into(),
                local_tag: local_tag.into(),
                remote_tag: remote_tag.into(),
            },
            state: if (200..300).contains(&status) {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: request.cseq().seq,
            remote_seq: None,
            local_uri: without_tag(&request.from_header()),
            remote_uri: without_tag(&request.to_header()),
            remote_target,
            route_set: route_set.into(),
            local_contact: local_contact.into(),
            secure: request
                .request_uri()
                .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sips")),
        })
    }

    /// Whether an incoming request belongs to this dialog: its To tag is
    /// our tag, its From tag the peer's.
    pub fn matches_request(&self, request: &Message) -> bool {
        request.call_id() == &*self.id.call_id
            && request.to_tag() == Some(&*self.id.local_tag)
            && request.from_tag() == Some(&*self.id.remote_tag)
    }

    /// Whether a response to one of our requests belongs to this dialog.
    pub fn matches_response(&self, response: &Message) -> bool {
        response.call_id() == &*self.id.call_id
            && response.from_tag() == Some(&*self.id.local_tag)
            && response.to_tag() == Some(&*self.id.remote_tag)
    }

    /// Accepts an in-dialog request from the peer (§12.2.2): checks that it
    /// belongs here and that its CSeq moves forward (ACK and CANCEL reuse
    /// the CSeq of the request they belong to, so they are not checked),
    /// and takes a new remote target from a target refresh request.
    pub fn on_remote_request(&mut self, request: &Message) -> Result<(), DialogError> {
        if !self.matches_request(request) {
            return Err(DialogError::NotThisDialog);
        }
        let method = request.method().cloned().unwrap_or(Method::Ack);
        if !matches!(method, Method::Ack | Method::Cancel) {
            let got = request.cseq().seq;
            if let Some(last) = self.remote_seq {
                if got <= last {
                    return Err(DialogError::CSeqOutOfOrder { got, last });
                }
            }
            self.remote_seq = Some(got);
        }
        if is_target_refresh(&method) {
            if let Ok(target) = first_contact(request) {
                self.remote_target = target;
            }
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// Updates the dialog from a response to our in-dialog request: a 2xx
    /// to a target refresh carries the new remote target (§12.2.1.2), a
    /// 2xx to the initial INVITE confirms an early dialog.
    pub fn on_response(&mut self, response: &Message) {
        let status = response.status().unwrap_or(0);
        if !(200..300).contains(&status) {
            return;
        }
        if is_target_refresh(&response.cseq().method) {
            if let Ok(target) = first_contact(response) {
                self.remote_target = target;
            }
            if self.state == DialogState::Early {
                self.state = DialogState::Confirmed;
            }
        }
    }

    /// Raises the local CSeq so that the next request is numbered above
    /// `floor`. A standby taking over uses this to stay above anything the
    /// failed node could have sent.
    pub fn raise_local_seq(&mut self, floor: u32) {
        self.local_seq = self.local_seq.max(floor);
    }

    /// Where an in-dialog request is sent first: the first route if there
    /// is a route set, else the remote target (§12.2.1.1, §8.1.2).
    pub fn next_hop(&self) -> &str {
        match self.route_set.first() {
            Some(route) => uri_of(route),
            None => &self.remote_target,
        }
    }

    /// Builds a new in-dialog request (BYE, re-INVITE, UPDATE, INFO,
    /// OPTIONS, …) with the next local CSeq. `via` is the caller's top Via
    /// value (the transport layer knows its address and the branch).
    pub fn request(&mut self, method: &Method, via: &str) -> RequestBuilder {
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        let seq = self.local_seq;
        self.build(method, seq, via)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4):
    /// a new transaction in the dialog, same CSeq number.
    pub fn ack(&self, invite_seq: u32, via: &str) -> RequestBuilder {
        self.build(&Method::Ack, invite_seq, via)
    }

    fn build(&self, method: &Method, seq: u32, via: &str) -> RequestBuilder {
        // Loose routing when the route set is empty or starts with ;lr;
        // otherwise the strict-routing form of §12.2.1.1.
        let strict = self.route_set.first().is_some_and(|r| !is_loose(r));
        let (ruri, routes): (&str, Vec<String>) = if strict {
            let mut routes: Vec<String> = self.route_set[1..].to_vec();
            routes.push(format!("<{}>", self.remote_target));
            (uri_of(&self.route_set[0]), routes)
        } else {
            (&*self.remote_target, self.route_set.to_vec())
        };
        let mut b = RequestBuilder::new(method, ruri)
            .header("Via", via)
            .header(
                "From",
                &format!("{};tag={}", self.local_uri, self.id.local_tag),
            )
            .header(
                "To",
                &format!("{};tag={}", self.remote_uri, self.id.remote_tag),
            )
            .header("Call-ID", &self.id.call_id)
            .header("CSeq", &format!("{seq} {method}"));
        for r in &routes {
            b = b.header("Route", r);
        }
        if is_target_refresh(method) {
            b = b.header("Contact", &self.local_contact);
        }
        b
    }
}

/// Methods whose requests may change the remote target (RFC 3261 §12.2,
/// RFC 3311 for UPDATE).
fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

fn first_contact(msg: &Message) -> Result<Box<str>, DialogError> {
    msg.contacts()
        .next()
        .and_then(Result::ok)
        .filter(|c| c.uri != "*")
        .map(|c| c.uri.into())
        .ok_or(DialogError::Incomplete("no usable Contact"))
}

/// A name-addr in `<uri>` form, with every parameter but the tag kept.
/// Sized exactly: a dialog keeps the string for its whole life, where
/// `format!` could leave up to half of it spare.
fn without_tag(addr: &NameAddr<'_>) -> Box<str> {
    let params = params_without_tag(addr.params);
    let display = addr.display.map_or(0, |d| d.len() + 1);
    let mut out = String::with_capacity(display + addr.uri.len() + 2 + params.len());
    if let Some(d) = addr.display {
        out.push_str(d);
        out.push(' ');
    }
    out.push('<');
    out.push_str(addr.uri);
    out.push('>');
    out.push_str(&params);
    out.into_boxed_str()
}

fn uri_of(route: &str) -> &str {
    let route = route.trim();
    match (route.find('<'), route.find('>')) {
        (Some(a), Some(b)) if a < b => &route[a + 1..b],
        _ => route,
    }
}

fn is_loose(route: &str) -> bool {
    crate::message::Uri::parse(uri_of(route)).is_ok_and(|u| u.has_lr())
}

#[cfg(test)]
mod tests;
