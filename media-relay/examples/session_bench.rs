//! Control-path benchmark: CPU per session lifecycle
//! (`create_session` + `remove_session`), sessions never receiving packets.
//!
//! Measures the whole process's CPU time (`getrusage(RUSAGE_SELF)`: the
//! calling thread plus the relay's worker threads) and context switches
//! around `--cycles` lifecycles, after `--warmup` unmeasured ones (which
//! also fill the port pool's parked sockets, as in a long-running relay),
//! and splits it into the calling thread (`RUSAGE_THREAD`) and the workers
//! (`/proc/self/task/*/schedstat`). `--live K` keeps K sessions open while
//! cycling (create one, remove the oldest), like calls that overlap;
//! `--live 0` removes each session right after creating it. `--cps R`
//! paces the cycles at R per second (default: as fast as possible); the
//! calling thread's figure then includes its own sleeps and wake-ups.
//!
//! ```text
//! cargo run --release -p media-relay --example session_bench -- \
//!     [--cycles 20000] [--warmup 5000] [--workers 2] [--live 100] [--runs 3] \
//!     [--cps 0]
//! ```
//!
//! Uses 127.0.51.1, ports 40000-49999 (5000 pairs).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use media_relay::sys::raise_fd_limit;
use media_relay::{MediaRelay, RelayConfig, SessionId, SessionParams};

struct Args {
    cycles: u64,
    warmup: u64,
    workers: usize,
    live: usize,
    runs: usize,
    cps: f64,
}

fn args() -> Args {
    let mut a = Args {
        cycles: 20_000,
        warmup: 5_000,
        workers: 2,
        live: 100,
        runs: 3,
        cps: 0.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--cycles" => a.cycles = v.parse().expect("--cycles"),
            "--warmup" => a.warmup = v.parse().expect("--warmup"),
            "--workers" => a.workers = v.parse().expect("--workers"),
            "--live" => a.live = v.parse().expect("--live"),
            "--runs" => a.runs = v.parse().expect("--runs"),
            "--cps" => a.cps = v.parse().expect("--cps"),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// CPU time (user + system) of the whole process (`RUSAGE_SELF`) or the
/// calling thread (`RUSAGE_THREAD`), and its context switches (voluntary +
/// involuntary).
fn usage(who: libc::c_int) -> (Duration, u64) {
    // SAFETY: getrusage writes one rusage struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        tv(ru.ru_utime) + tv(ru.ru_stime),
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    )
}

/// CPU time of the relay's worker threads, from /proc/self/task/*/schedstat.
fn workers_cpu() -> Duration {
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("media-relay-") {
            let s = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

async fn cycle(
    relay: &MediaRelay,
    live: &mut VecDeque<SessionId>,
    keep: usize,
    next: &mut u64,
    n: u64,
    cps: f64,
) {
    let start = Instant::now();
    for i in 0..n {
        if cps > 0.0 {
            // Paced: sleep whenever a millisecond or more ahead.
            let due = start + Duration::from_secs_f64(i as f64 / cps);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                std::thread::sleep(due - now);
            }
        }
        let id = SessionId(*next);
        *next += 1;
        relay
            .create_session(id, SessionParams::default())
            .expect("create_session");
        live.push_back(id);
        while live.len() > keep {
            let old = live.pop_front().expect("not empty");
            relay.remove_session(old).await.expect("remove_session");
        }
    }
}

fn main() {
    let a = args();
    let _ = raise_fd_limit();
    let relay = MediaRelay::new(RelayConfig {
        local_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 51, 1)),
        port_min: 40000,
        port_max: 49999,
        workers: a.workers,
        ..RelayConfig::default()
    })
    .expect("relay starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "session lifecycle (create_session + remove_session): {} workers, {} live, {} cycles x {} runs",
        a.workers, a.live, a.cycles, a.runs
    );
    let mut live = VecDeque::new();
    let mut next = 0u64;
    rt.block_on(async {
        cycle(&relay, &mut live, a.live, &mut next, a.warmup, 0.0).await;
        for run in 1..=a.runs {
            let (cpu0, cs0) = usage(libc::RUSAGE_SELF);
            let (caller0, _) = usage(libc::RUSAGE_THREAD);
            let workers0 = workers_cpu();
            let t0 = Instant::now();
            cycle(&relay, &mut live, a.live, &mut next, a.cycles, a.cps).await;
            let wall = t0.elapsed();
            let (cpu1, cs1) = usage(libc::RUSAGE_SELF);
            let (caller1, _) = usage(libc::RUSAGE_THREAD);
            let workers1 = workers_cpu();
            let n = a.cycles as f64;
            let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
            println!(
                "run {run}: {:6.2} us CPU per lifecycle (caller {:5.2}, workers {:5.2}), {:6.2} us wall, {:5.2} context switches",
                us(cpu1 - cpu0),
                us(caller1 - caller0),
                us(workers1 - workers0),
                us(wall),
                (cs1 - cs0) as f64 / n,
            );
        }
        while let Some(id) = live.pop_front() {
            relay.remove_session(id).await.expect("remove_session");
        }
    });
}
