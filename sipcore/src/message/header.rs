//! Header names, with the compact forms of RFC 3261 §7.3.3 and the
//! extension RFCs mapped onto their long forms.

/// Headers the stack looks at by name. Everything else is `Other` and is
/// found by a case-insensitive comparison of the raw name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Route,
    RecordRoute,
    ContentType,
    ContentLength,
    ContentEncoding,
    Expires,
    Require,
    Supported,
    ProxyRequire,
    Unsupported,
    Allow,
    Subject,
    ReferTo,
    ReferredBy,
    Event,
    AllowEvents,
    SessionExpires,
    MinSe,
    RSeq,
    RAck,
    Reason,
    Warning,
    Other,
}

impl HeaderName {
    /// Classifies a raw header name. Compact forms are equal to long ones.
    pub fn classify(name: &str) -> HeaderName {
        let b = name.as_bytes();
        if b.len() == 1 {
            return match b[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'e' => HeaderName::ContentEncoding,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                b'o' => HeaderName::Event,
                b'u' => HeaderName::AllowEvents,
                b'x' => HeaderName::SessionExpires,
                _ => HeaderName::Other,
            };
        }
        // Dispatch on length first: one comparison per candidate at most.
        let eq = |s: &str| name.eq_ignore_ascii_case(s);
        match b.len() {
            2 if eq("To") => HeaderName::To,
            3 if eq("Via") => HeaderName::Via,
            4 if eq("From") => HeaderName::From,
            4 if eq("CSeq") => HeaderName::CSeq,
            4 if eq("RSeq") => HeaderName::RSeq,
            4 if eq("RAck") => HeaderName::RAck,
            5 if eq("Route") => HeaderName::Route,
            5 if eq("Allow") => HeaderName::Allow,
            5 if eq("Event") => HeaderName::Event,
            6 if eq("Reason") => HeaderName::Reason,
            6 if eq("MIN-SE") => HeaderName::MinSe,
            7 if eq("Call-ID") => HeaderName::CallId,
            7 if eq("Contact") => HeaderName::Contact,
            7 if eq("Expires") => HeaderName::Expires,
            7 if eq("Require") => HeaderName::Require,
            7 if eq("Subject") => HeaderName::Subject,
            7 if eq("Warning") => HeaderName::Warning,
            8 if eq("Refer-To") => HeaderName::ReferTo,
            9 if eq("Supported") => HeaderName::Supported,
            11 if eq("Unsupported") => HeaderName::Unsupported,
            11 if eq("Referred-By") => HeaderName::ReferredBy,
            12 if eq("Max-Forwards") => HeaderName::MaxForwards,
            12 if eq("Record-Route") => HeaderName::RecordRoute,
            12 if eq("Content-Type") => HeaderName::ContentType,
            12 if eq("Allow-Events") => HeaderName::AllowEvents,
            13 if eq("Proxy-Require") => HeaderName::ProxyRequire,
            14 if eq("Content-Length") => HeaderName::ContentLength,
            15 if eq("Session-Expires") => HeaderName::SessionExpires,
            16 if eq("Content-Encoding") => HeaderName::ContentEncoding,
            _ => HeaderName::Other,
        }
    }

    /// The long form used when Tandem prints a header itself.
    pub fn canonical(self) -> Option<&'static str> {
        Some(match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Expires => "Expires",
            HeaderName::Require => "Require",
            HeaderName::Supported => "Supported",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::Subject => "Subject",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Event => "Event",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::RSeq => "RSeq",
            HeaderName::RAck => "RAck",
            HeaderName::Reason => "Reason",
            HeaderName::Warning => "Warning",
            HeaderName::Other => return None,
        })
    }

    /// Headers whose values are comma-separated lists (RFC 3261 §7.3.1),
    /// so that `Via: a, b` is two values. Contact is a list too, but
    /// `Contact: *` and quoted display names are handled by the splitter.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::Supported
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::AllowEvents
        )
    }
}
