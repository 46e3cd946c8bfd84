//! Small helpers shared by the media tools of the side-by-side benchmark:
//! `--key value` options and CPU time from /proc.

use std::collections::HashMap;
use std::fmt::Debug;
use std::str::FromStr;

/// `--key value` pairs from the command line.
pub struct Opts {
    map: HashMap<String, String>,
}

impl Opts {
    /// Parses `--key value` pairs; anything else is an error that names it.
    pub fn parse(known: &[&str]) -> Opts {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut map = HashMap::new();
        let mut it = argv.into_iter();
        while let Some(k) = it.next() {
            if !known.contains(&k.as_str()) {
                die(&format!("unknown option {k} (known: {})", known.join(" ")));
            }
            let Some(v) = it.next() else {
                die(&format!("{k} needs a value"));
            };
            map.insert(k, v);
        }
        Opts { map }
    }

    /// An optional value.
    pub fn opt<T: FromStr>(&self, key: &str) -> Option<T>
    where
        T::Err: Debug,
    {
        self.map.get(key).map(|v| {
            v.parse()
                .unwrap_or_else(|e| die(&format!("bad value {v:?} for {key}: {e:?}")))
        })
    }

    /// A value with a default.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> T
    where
        T::Err: Debug,
    {
        self.opt(key).unwrap_or(default)
    }

    /// A value that must be given.
    pub fn req<T: FromStr>(&self, key: &str) -> T
    where
        T::Err: Debug,
    {
        self.opt(key)
            .unwrap_or_else(|| die(&format!("{key} is required")))
    }
}

/// Prints the message and exits with status 2.
pub fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

/// Clock ticks per second of the /proc CPU counters.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// utime + stime (ticks) from a /proc stat file: all threads of a process
/// for /proc/<pid>/stat, one thread for /proc/thread-self/stat.
pub fn stat_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the ")" that ends the command name: utime is the 12th,
    // stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds used so far by every thread of process `pid`.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    stat_cpu_ticks(&format!("/proc/{pid}/stat")).map(|t| t as f64 / clk_tck())
}

/// Seconds core `core` has spent in interrupts and softirqs so far (the
/// `irq` and `softirq` columns of its /proc/stat line): where the kernel's
/// receive path, and a tc BPF program on it, runs when RPS steers `lo`'s
/// packets to that core. Tick-sampled without IRQ time accounting.
pub fn core_irq_secs(core: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq ...
    Some((f.get(5)? + f.get(6)?) as f64 / clk_tck())
}

/// CPU seconds used so far by the calling thread.
pub fn thread_cpu_secs() -> f64 {
    stat_cpu_ticks("/proc/thread-self/stat").unwrap_or(0) as f64 / clk_tck()
}

/// Seconds the calling thread has spent runnable but waiting for a CPU
/// (second field of /proc/thread-self/schedstat).
pub fn thread_run_delay_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}
