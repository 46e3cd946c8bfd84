//! Small text helpers shared by the typed header views: splitting list
//! headers at top-level commas and looking up `;name=value` parameters.

/// Splits a header value at commas that are not inside a quoted string or
/// `<...>` (RFC 3261 §7.3.1). Empty elements are skipped, elements are
/// trimmed of linear white space.
pub fn split_list(value: &str) -> ListIter<'_> {
    ListIter { rest: value }
}

pub struct ListIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let bytes = self.rest.as_bytes();
            let mut in_quotes = false;
            let mut angle = 0u32;
            let mut i = 0;
            let mut end = bytes.len();
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_quotes => i += 1,
                    b'"' => in_quotes = !in_quotes,
                    b'<' if !in_quotes => angle += 1,
                    b'>' if !in_quotes && angle > 0 => angle -= 1,
                    b',' if !in_quotes && angle == 0 => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let item = trim_lws(&self.rest[..end]);
            self.rest = if end < self.rest.len() {
                &self.rest[end + 1..]
            } else {
                ""
            };
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// Trims spaces, tabs and line ends (unfolded LWS) from both ends.
pub fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

/// Finds parameter `name` in a `;a=b;c;d=e` string (the leading `;` is
/// optional). Returns `Some("")` for a flag parameter without value.
/// Parameter names compare case-insensitively (RFC 3261 §7.3.1).
pub fn find_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params_iter(params)
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or(""))
}

/// Iterates `(name, value)` pairs of a `;a=b;c` parameter string. Quoted
/// values are returned with their quotes.
pub fn params_iter(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    ParamSplit { rest: params }.filter_map(|p| {
        let p = trim_lws(p);
        if p.is_empty() {
            return None;
        }
        Some(match p.find('=') {
            Some(eq) => (trim_lws(&p[..eq]), Some(trim_lws(&p[eq + 1..]))),
            None => (p, None),
        })
    })
}

/// Splits at `;` outside quoted strings.
struct ParamSplit<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut in_quotes = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b';' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(bytes.len());
        let item = &self.rest[..end];
        self.rest = if end < self.rest.len() {
            &self.rest[end + 1..]
        } else {
            ""
        };
        Some(item)
    }
}

/// Parses a decimal integer, accepting leading zeros (RFC 4475 §3.1.1.1)
/// and surrounding LWS, rejecting signs and overflow.
pub fn parse_u32(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 10 {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| u32::try_from(v).ok())
}

/// Splits `host[:port]`, with IPv6 references in brackets.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = trim_lws(s);
    if s.is_empty() {
        return None;
    }
    let (host, rest) = if s.starts_with('[') {
        let close = s.find(']')?;
        (&s[..=close], &s[close + 1..])
    } else {
        match s.find(':') {
            Some(c) => (&s[..c], &s[c..]),
            None => (s, ""),
        }
    };
    let rest = trim_lws(rest);
    if rest.is_empty() {
        return Some((host, None));
    }
    let port = trim_lws(rest.strip_prefix(':')?);
    let port = parse_u32(port).and_then(|p| u16::try_from(p).ok())?;
    if host.is_empty() {
        return None;
    }
    Some((host, Some(port)))
}

/// The parameter string with any `tag` parameter removed, each kept
/// parameter printed as `;name[=value]`.
pub fn params_without_tag(params: &str) -> String {
    let mut out = String::with_capacity(params.len());
    for (k, v) in params_iter(params) {
        if k.eq_ignore_ascii_case("tag") {
            continue;
        }
        out.push(';');
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}
