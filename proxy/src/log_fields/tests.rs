//! The lean field formatter writes what `DefaultFields` writes without
//! colours, and escapes every value.

use std::io;
use std::sync::{Arc, Mutex};

use super::LeanFields;

/// A log line's writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[derive(Debug)]
struct Outer(Inner);
#[derive(Debug)]
struct Inner;
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer failed")
    }
}
impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inner cause")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
impl std::error::Error for Inner {}

/// The lines `log` makes, with the lean formatter or the default one.
fn lines(lean: bool, log: impl Fn()) -> String {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_writer(out.clone());
    if lean {
        tracing::subscriber::with_default(builder.fmt_fields(LeanFields).finish(), log);
    } else {
        tracing::subscriber::with_default(builder.finish(), log);
    }
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text
}

/// Every kind of field Tandem logs: a CDR-like line, a warning with an
/// error chain, Debug and Display values, strings, numbers, raw names.
fn every_kind() {
    let caller = "sip:alice@192.0.2.1";
    let end = 3u64;
    tracing::info!(
        target: "cdr",
        call = 42u64,
        caller = %caller,
        callee = ?"sip:100@example.com",
        jitter_ms = 1.5f64,
        answered = true,
        missing = ?None::<u32>,
        r#type = "udp",
        literal = "quoted \"text\"",
        "call ended after {end} s"
    );
    let err = Outer(Inner);
    tracing::warn!(
        error = &err as &(dyn std::error::Error + 'static),
        "probe failed"
    );
    tracing::error!("no fields at all");
}

#[test]
fn writes_what_the_default_formatter_writes_without_colours() {
    let lean = lines(true, every_kind);
    assert_eq!(lean, lines(false, every_kind));
    assert!(lean.contains(
        "call=42 caller=sip:alice@192.0.2.1 callee=\"sip:100@example.com\" jitter_ms=1.5"
    ));
    assert!(lean.contains("error=outer failed error.sources=[inner cause]"));
}

/// A stranger's URI with terminal control characters in a field: written
/// escaped (the default formatter escapes the message only).
#[test]
fn escapes_control_characters_in_every_value() {
    let hostile = "sip:\u{1b}[2J\u{7}evil\u{9b}31m@192.0.2.1";
    let lean = lines(
        true,
        || tracing::info!(caller = %hostile, "call {}", hostile),
    );
    assert_eq!(lean.lines().count(), 1, "one line: {lean:?}");
    assert!(!lean.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{lean:?}");
    assert!(
        lean.contains("caller=sip:\\x1b[2J\\x07evil\\u{9b}31m@192.0.2.1"),
        "{lean:?}"
    );
    assert!(lean.contains("call sip:\\x1b[2J\\x07evil\\u{9b}31m@192.0.2.1"));
    // Non-ASCII that is no control character passes as it is.
    let accented = lines(
        true,
        || tracing::info!(caller = %"sip:zoë@example.com", "x"),
    );
    assert!(
        accented.contains("caller=sip:zoë@example.com"),
        "{accented:?}"
    );
}
