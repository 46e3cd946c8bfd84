//! Micro-benchmark of the replication frames: encode + decode of one
//! call-sized Delta (600 bytes of state), as the stream does it.
//! `cargo run --release -p state-sync --example frame-bench`
//!
//! Measured 2026-12-04 on the shared 2-core build machine (load ~10),
//! three runs each, alternated: HMAC-SHA256 cleartext frames (format 1)
//! 5.6–6.0 µs per frame; ChaCha20-Poly1305 sealed, numbered frames
//! (format 2, ring) 6.0–8.4 µs; RustCrypto's `chacha20poly1305` 0.10 was
//! 18.8–22.2 µs (its AVX2 intrinsics not inlined), hence ring.
use std::time::Instant;

use bytes::Bytes;
use state_sync::frame::{self, Frame, FrameKey, Seal};
use state_sync::replay::StreamCounter;
use state_sync::{Change, Record};

fn main() {
    let key = FrameKey::new(b"benchmark key of the pair, 32 b.");
    let mut counter = StreamCounter::default();
    let n = 200_000u64;
    let rec = |i: u64| Frame::Delta {
        seq: i,
        change: Change::Upsert(Record {
            kind: "call".into(),
            key: format!("call-{i}"),
            version: i,
            data: Bytes::from(vec![7u8; 600]),
        }),
    };
    let start = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let seal = Seal {
            session: 0,
            counter: i + 1,
        };
        let b = frame::encode(&key, seal, 1, &rec(i));
        let (seal, env, used) = frame::decode(&key, &b).expect("decodes");
        counter.accept(seal.counter).expect("in order");
        bytes += used;
        assert!(matches!(env.frame, Frame::Delta { .. }));
    }
    let el = start.elapsed();
    println!(
        "{n} frames ({} bytes each): {:.2} µs per frame (seal + open + counter check), {:.0} frames/s",
        bytes as u64 / n,
        el.as_secs_f64() * 1e6 / n as f64,
        n as f64 / el.as_secs_f64()
    );
}
