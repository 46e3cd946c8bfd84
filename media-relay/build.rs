//! Builds the RTP kernel fast path (bpf/fastpath.bpf.c) with clang into
//! `$OUT_DIR/fastpath.bpf.o`, which `src/fastpath.rs` embeds.
//!
//! Without a working clang (or `TANDEM_NO_BPF=1`) an empty object is
//! written instead and a warning printed: the crate still builds, and at
//! run time `media.fast_path = "auto"` falls back to the user-space relay
//! while `"on"` refuses to start, naming this reason.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/fastpath.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=TANDEM_NO_BPF");
    println!("cargo:rerun-if-env-changed=CLANG");
    // A build without clang must be redone once clang is there: installing
    // it usually changes nothing cargo watches, so watch PATH and (below)
    // the clang binary found on it.
    println!("cargo:rerun-if-env-changed=PATH");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("fastpath.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    match on_path(&clang) {
        Some(found) => println!("cargo:rerun-if-changed={}", found.display()),
        // Not there yet: installing it adds a file to one of these.
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter(|d| d.is_dir())
            .for_each(|d| println!("cargo:rerun-if-changed={}", d.display())),
    }
    let skip = std::env::var_os("TANDEM_NO_BPF").is_some_and(|v| v == "1");
    let built = !skip
        && Command::new(&clang)
            // Debian keeps <asm/types.h> under the multiarch directory.
            // No -Werror: a warning a newer clang adds must not turn into
            // an empty object (a silent user-space fallback); clang prints
            // it and cargo shows it when the build script is rerun.
            .args(["-O2", "-g", "-Wall", "-target", "bpf"])
            .arg(format!("-I/usr/include/{}-linux-gnu", arch()))
            .args(["-c", src, "-o"])
            .arg(&out)
            .status()
            .map_err(|e| println!("cargo:warning=RTP fast path not built: cannot run {clang}: {e}"))
            .is_ok_and(|s| {
                if !s.success() {
                    println!("cargo:warning=RTP fast path not built: {clang} failed ({s})");
                }
                s.success()
            });
    if !built {
        std::fs::write(&out, b"").expect("write an empty BPF object");
    }
}

/// Where `program` is: itself when it names a path, else the first
/// match on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The multiarch triplet's first part for the target being built.
fn arch() -> String {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86") => "i386".into(),
        Ok(a) => a.into(),
        Err(_) => "x86_64".into(),
    }
}
