//! SIP request methods (RFC 3261 §7.1 and the extension RFCs).

use std::fmt;

/// A request method. Extension methods keep their text: a proxy must
/// forward methods it does not know (RFC 3261 §16.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Boxed twice: a thin pointer makes a method 16 bytes where a
    /// `Box<str>` made it 24, and every message holds two (start line and
    /// CSeq), kept INVITEs for a held call's life. Serde writes it as the
    /// text, as before.
    Extension(Box<Box<str>>),
}

impl Method {
    /// Method names are case-sensitive (RFC 3261 §7.1): `invite` is an
    /// extension method, not INVITE.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(Box::new(other.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(s) => s,
            m => m.standard_name().unwrap_or_default(),
        }
    }

    /// The name of a method of the RFCs (not an extension method): a
    /// fixed string, fit for a metric label where a name chosen by the
    /// sender is not.
    pub fn standard_name(&self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(_) => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
