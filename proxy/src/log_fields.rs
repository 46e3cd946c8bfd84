//! How the fields of a log line are written: `name=value`, space
//! separated, the message bare — what tracing-subscriber's `DefaultFields`
//! writes without colours, at a fraction of its cost, and with every value
//! escaped, not only the message.
//!
//! Why not `DefaultFields`: it wraps each field name in two `nu_ansi_term`
//! styles, printed through `fmt` even when colours are off, and escapes
//! the message one character at a time through the formatter. The CDR
//! line of every call has 23 fields: it cost ~28,000 instructions a call,
//! 5 % of Tandem's signalling (issue 15). Here a value is formatted once
//! into a reused buffer, scanned for control characters in one pass, and
//! copied; only a value that has some is escaped.
//!
//! Why every value is escaped: the CDR line carries the caller's and
//! callee's URIs, which a stranger chose. `DefaultFields` escapes only the
//! message, so an ESC in a field would reach an operator's terminal.

use std::cell::RefCell;
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The field formatter (`tracing_subscriber::fmt().fmt_fields(LeanFields)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeanFields;

impl<'w> MakeVisitor<Writer<'w>> for LeanFields {
    type Visitor = LeanVisitor<'w>;

    fn make_visitor(&self, writer: Writer<'w>) -> LeanVisitor<'w> {
        LeanVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

pub struct LeanVisitor<'w> {
    writer: Writer<'w>,
    is_empty: bool,
    result: fmt::Result,
}

thread_local! {
    /// Where a value is formatted before it is checked and copied.
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(256));
}

impl LeanVisitor<'_> {
    /// `name=` (the message has no name), after a space unless first.
    fn start(&mut self, name: &str) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        if name != "message" {
            self.writer
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    /// Formats `value` with `{:?}` and writes it escaped.
    fn value(&mut self, value: &dyn fmt::Debug) -> fmt::Result {
        let writer = &mut self.writer;
        let scratched = SCRATCH.try_with(|cell| {
            // A value whose Debug logs (re-entry) gets a buffer of its own.
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return None;
            };
            buf.clear();
            Some(write!(buf, "{value:?}").and_then(|()| write_escaped(writer, &buf)))
        });
        match scratched.ok().flatten() {
            Some(result) => result,
            None => write_escaped(writer, &format!("{value:?}")),
        }
    }
}

/// Writes `s`, with the control characters a terminal acts on (ESC, BEL,
/// BS, FF, DEL, C1) written as escapes, as `DefaultFields` writes them in
/// the message.
fn write_escaped(out: &mut dyn Write, s: &str) -> fmt::Result {
    // The common case: nothing to escape (0xc2 leads every C1 character
    // in UTF-8), one copy.
    if !s
        .bytes()
        .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2))
    {
        return out.write_str(s);
    }
    for c in s.chars() {
        match c {
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => write!(out, "\\x{:02x}", c as u32)?,
            '\u{80}'..='\u{9f}' => write!(out, "\\u{{{:x}}}", c as u32)?,
            _ => out.write_char(c)?,
        }
    }
    Ok(())
}

impl Visit for LeanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // `name=error name.sources=[its source, the source's, …]` when it
        // has a source, as `DefaultFields` writes it.
        let Some(source) = value.source() else {
            return self.record_debug(field, &format_args!("{value}"));
        };
        let mut sources = Vec::new();
        let mut next = Some(source);
        while let Some(e) = next {
            sources.push(e.to_string());
            next = e.source();
        }
        let name = field.name();
        let sources = sources.join(", ");
        self.record_debug(field, &format_args!("{value} {name}.sources=[{sources}]"))
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // Metadata of events from the `log` crate, written already.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.start(name).and_then(|()| self.value(value));
    }
}

impl VisitOutput<fmt::Result> for LeanVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for LeanVisitor<'_> {
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }
}

#[cfg(test)]
#[path = "log_fields/tests.rs"]
mod tests;
