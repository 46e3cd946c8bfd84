//! Replay of the fuzz corpora (`fuzz/`) as ordinary tests: every file
//! under `fuzz/seeds/TARGET` and `fuzz/corpus/TARGET` goes through the
//! target's entry point, the same function the fuzz target calls.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Largest corpus file replayed; the committed corpora stay far below
/// (see fuzz/README.md), so a bigger one is a mistake worth failing on.
const MAX_INPUT: u64 = 64 * 1024;

/// Runs `entry` on every seed and corpus file of fuzz target `target`.
/// Panics naming each file whose run panicked, and when there are no
/// files at all (a moved directory must not make the test pass vacuously).
/// Returns how many files ran.
pub fn replay_fuzz_corpus(target: &str, entry: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus"] {
        collect(&root.join(dir).join(target), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no seed or corpus files for fuzz target {target} under {}",
        root.display()
    );
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        assert!(
            size <= MAX_INPUT,
            "{}: {size} bytes, over 64 KiB",
            file.display()
        );
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target}: {} of {} inputs panicked: {failed:#?}",
        failed.len(),
        files.len()
    );
    files.len()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            out.push(path);
        }
    }
}
