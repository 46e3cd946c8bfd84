//! Bindings survive a restart of a lone node: the whole set is written to
//! a snapshot file (atomically: a temporary file renamed over the old one)
//! when it changed, at most every few seconds, and read at start. SKELETON.
#![allow(unused_variables)]

use std::path::Path;

use super::bindings::Bindings;
use crate::b2bua::UnixMillis;

/// Writes every binding to `path` atomically.
pub fn save(bindings: &Bindings, path: &Path) -> std::io::Result<()> {
    todo!()
}

/// Loads the bindings in `path` into `bindings`, skipping those expired at
/// `wall`; how many were loaded. A missing file is 0, not an error.
pub fn load(bindings: &mut Bindings, path: &Path, wall: UnixMillis) -> std::io::Result<usize> {
    todo!()
}
