//! Builds the BPF program that steers SIP datagrams to their shard
//! (proxy/bpf/steer.c) with clang, for `include_bytes!` in
//! src/shard/steer.rs. Without clang the binary is built without it
//! (`sip.shards > 1` then refuses to start, naming why).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/steer.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("steer.o");
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let built = Command::new("clang")
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            &arch_include,
            "-c",
            source,
            "-o",
        ])
        .arg(&out)
        .status();
    match built {
        Ok(status) if status.success() => {}
        outcome => {
            println!("cargo:warning=proxy/bpf/steer.c not built ({outcome:?}): sip.shards > 1 will refuse to start");
            std::fs::write(&out, b"").expect("writing an empty steer.o");
        }
    }
}
