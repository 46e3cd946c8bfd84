//! The live progress line on stderr: rewritten in place with `\r` on a
//! terminal, one line per update otherwise (logs, CI).

use std::io::{IsTerminal, Write};

#[derive(Debug)]
pub struct Progress {
    quiet: bool,
    tty: bool,
    width: usize,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            width: 0,
        }
    }

    pub fn update(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let pad = self.width.saturating_sub(line.len());
            let _ = write!(err, "\r{line}{:pad$}", "");
            let _ = err.flush();
            self.width = line.len();
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Ends the line on a terminal, so that what follows starts clean.
    pub fn finish(&mut self) {
        if !self.quiet && self.tty && self.width > 0 {
            eprintln!();
            self.width = 0;
        }
    }
}
