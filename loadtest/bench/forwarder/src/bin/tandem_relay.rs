//! Hosts Tandem's media relay (the `media-relay` crate, configured the way
//! the `tandem` binary configures it) with N sessions whose remote
//! addresses are the generator's two sockets, writes the destinations file
//! for `rtpgen` (`A_DEST B_DEST` per session: the side-A and side-B RTP
//! sockets), prints `ready` and forwards until killed.
//!
//! Pin it with `taskset`; its CPU time is read from /proc by the generator.
//!
//! ```text
//! tandem-relay --ip 127.0.61.1 --ga 127.0.61.2:40000 --gb 127.0.61.3:40002
//!              --sessions 1500 --dests-out FILE [--port-min 20000]
//!              [--port-max 39999] [--workers 1] [--batch 32]
//!              [--recv-buffer 0] [--connect-latched true] [--busy-poll-us 0]
//! ```

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use media_relay::sys::raise_fd_limit;
use media_relay::{FastPathMode, MediaRelay, RelayConfig, SessionId, SessionParams};
use tandem_bench_media::{die, Opts};

fn main() {
    let o = Opts::parse(&[
        "--ip",
        "--ga",
        "--gb",
        "--sessions",
        "--dests-out",
        "--port-min",
        "--port-max",
        "--workers",
        "--batch",
        "--recv-buffer",
        "--connect-latched",
        "--busy-poll-us",
        "--fast-path",
    ]);
    let ip: IpAddr = o.req("--ip");
    let ga: SocketAddr = o.req("--ga");
    let gb: SocketAddr = o.req("--gb");
    let sessions: usize = o.req("--sessions");
    let out: String = o.req("--dests-out");
    let defaults = RelayConfig::default();
    let config = RelayConfig {
        local_ip: ip,
        port_min: o.get("--port-min", 20000),
        port_max: o.get("--port-max", 39999),
        workers: o.get("--workers", 1),
        batch_size: o.get("--batch", defaults.batch_size),
        recv_buffer_bytes: o.get("--recv-buffer", defaults.recv_buffer_bytes),
        connect_latched: o.get("--connect-latched", defaults.connect_latched),
        busy_poll_us: o.get("--busy-poll-us", defaults.busy_poll_us),
        // `on`: latched streams forwarded by the BPF program (system
        // tandem-bpf of loadtest/bench/run media).
        fast_path: match o.get::<String>("--fast-path", "off".into()).as_str() {
            "on" => FastPathMode::On,
            "auto" => FastPathMode::Auto,
            "off" => FastPathMode::Off,
            other => die(&format!("--fast-path {other}: not on, auto or off")),
        },
        ..defaults
    };
    let fds = raise_fd_limit().unwrap_or_else(|e| die(&format!("raise open file limit: {e}")));
    if (fds as usize) < sessions * 6 + 64 {
        die(&format!(
            "open file limit {fds} too low for {sessions} sessions"
        ));
    }
    let relay = MediaRelay::new(config).unwrap_or_else(|e| die(&format!("relay: {e}")));
    let mut text = String::new();
    for i in 0..sessions {
        let info = relay
            .create_session(
                SessionId(i as u64),
                SessionParams {
                    remote_a: Some(ga),
                    remote_b: Some(gb),
                    options: None,
                    rtcp_mux: false,
                },
            )
            .unwrap_or_else(|e| die(&format!("session {i}: {e}")));
        text.push_str(&format!(
            "{} {}\n",
            info.side_a.rtp_addr(),
            info.side_b.rtp_addr()
        ));
    }
    std::fs::write(&out, text).unwrap_or_else(|e| die(&format!("{out}: {e}")));
    println!("ready {sessions} sessions");
    std::io::stdout().flush().ok();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
