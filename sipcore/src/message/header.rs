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
        if b.is_empty() {
            return HeaderName::Other;
        }
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
        // Dispatch on length and first letter, then one comparison. `| 0x20`
        // lower-cases letters; for other bytes a wrong guess is caught by
        // the comparison.
        let kind = match (b.len(), b[0] | 0x20) {
            (2, b't') => HeaderName::To,
            (3, b'v') => HeaderName::Via,
            (4, b'f') => HeaderName::From,
            (4, b'c') => HeaderName::CSeq,
            (4, b'r') if b[1] | 0x20 == b's' => HeaderName::RSeq,
            (4, b'r') => HeaderName::RAck,
            (5, b'r') => HeaderName::Route,
            (5, b'a') => HeaderName::Allow,
            (5, b'e') => HeaderName::Event,
            (6, b'r') => HeaderName::Reason,
            (6, b'm') => HeaderName::MinSe,
            (7, b'c') if b[1] | 0x20 == b'a' => HeaderName::CallId,
            (7, b'c') => HeaderName::Contact,
            (7, b'e') => HeaderName::Expires,
            (7, b'r') => HeaderName::Require,
            (7, b's') => HeaderName::Subject,
            (7, b'w') => HeaderName::Warning,
            (8, b'r') => HeaderName::ReferTo,
            (9, b's') => HeaderName::Supported,
            (11, b'u') => HeaderName::Unsupported,
            (11, b'r') => HeaderName::ReferredBy,
            (12, b'm') => HeaderName::MaxForwards,
            (12, b'r') => HeaderName::RecordRoute,
            (12, b'c') => HeaderName::ContentType,
            (12, b'a') => HeaderName::AllowEvents,
            (13, b'p') => HeaderName::ProxyRequire,
            (14, b'c') => HeaderName::ContentLength,
            (15, b's') => HeaderName::SessionExpires,
            (16, b'c') => HeaderName::ContentEncoding,
            _ => return HeaderName::Other,
        };
        match kind.canonical() {
            Some(long) if eq_ignore_case(b, long.as_bytes()) => kind,
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

/// `a.eq_ignore_ascii_case(b)` for `b` of letters and `-`, in fewer
/// instructions: this runs for every header line.
#[inline]
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (y.is_ascii_alphabetic() && x ^ 0x20 == y))
}
