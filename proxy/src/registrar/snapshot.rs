//! Bindings survive a restart of a lone node: the whole set is written to
//! a snapshot file (atomically: a temporary file renamed over the old one)
//! when it changed, at most every few seconds, and read at start.
//!
//! The file holds one JSON object per line, `{"aor":…,"bindings":[…]}`
//! (the bindings as in a replication record): written and read a line at
//! a time, never as one document in memory, and readable with `jq`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bindings::{Binding, Bindings};
use crate::b2bua::UnixMillis;

#[derive(Serialize)]
struct LineOut<'a> {
    aor: &'a str,
    bindings: &'a [Binding],
}

#[derive(Deserialize)]
struct LineIn {
    aor: String,
    bindings: Vec<Binding>,
}

/// Writes every binding to `path` atomically: a temporary file in the same
/// directory (a rename is atomic only within one file system), written,
/// flushed to disk and renamed over `path`; then the directory is synced
/// so that the rename itself survives a power cut. A crash at any point
/// leaves either the old file or the new one, never half of one.
pub fn save(bindings: &Bindings, path: &Path) -> io::Result<()> {
    let tmp = temporary_path(path);
    let written = write_lines(bindings, &tmp).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
        .and_then(|()| {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()
        })
        .map_err(|e| named(path, None, e))
}

/// `DIR/.NAME.tmp` next to `DIR/NAME`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bindings".into());
    path.with_file_name(format!(".{name}.tmp"))
}

fn write_lines(bindings: &Bindings, tmp: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(tmp)?);
    for (aor, list) in bindings.unordered() {
        serde_json::to_writer(
            &mut out,
            &LineOut {
                aor,
                bindings: list,
            },
        )?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Loads the bindings in `path` into `bindings`, skipping those expired at
/// `wall`; how many were loaded. A missing file is 0, not an error; a
/// corrupt one is an error naming the file and line, and then nothing is
/// loaded. Loaded bindings are not noted as changes.
pub fn load(bindings: &mut Bindings, path: &Path, wall: UnixMillis) -> io::Result<usize> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(named(path, None, e)),
    };
    // Read everything first: a bad line at the end must not leave half
    // the file loaded.
    let mut aors = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| named(path, Some(i + 1), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LineIn = serde_json::from_str(&line).map_err(|e| {
            named(
                path,
                Some(i + 1),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        aors.push(parsed);
    }
    let mut loaded = 0;
    for LineIn {
        aor,
        bindings: mut list,
    } in aors
    {
        list.retain(|b| b.expires_at > wall);
        loaded += list.len();
        bindings.replace_aor(&aor, list);
    }
    Ok(loaded)
}

/// The error with the file (and line) in its message.
fn named(path: &Path, line: Option<usize>, e: io::Error) -> io::Error {
    let place = match line {
        Some(n) => format!("{}: line {n}", path.display()),
        None => path.display().to_string(),
    };
    io::Error::new(e.kind(), format!("{place}: {e}"))
}

#[cfg(test)]
mod tests;
