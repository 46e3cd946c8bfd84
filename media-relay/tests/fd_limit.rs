//! Parked sockets are a cache: when the process runs out of file
//! descriptors, a new session closes parked pairs instead of failing.
//! Its own test binary, because it lowers the process's open-file limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::rtp::{self, build_rtp};
use media_relay::{MediaRelay, RelayConfig, SessionId, SessionParams};

const DEADLINE: Duration = Duration::from_secs(10);

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Puts the old limit back even when the test fails.
struct Restore(libc::rlimit);
impl Drop for Restore {
    fn drop(&mut self) {
        set_nofile(self.0);
    }
}

fn params(trunk: SocketAddr, server: SocketAddr) -> SessionParams {
    SessionParams {
        remote_a: Some(trunk),
        remote_b: Some(server),
        options: None,
        rtcp_mux: false,
    }
}

#[tokio::test]
async fn running_out_of_descriptors_closes_parked_pairs_instead_of_failing() {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 120, 1));
    let r = MediaRelay::new(RelayConfig {
        local_ip: ip,
        port_min: 23000,
        port_max: 23399,
        workers: 1,
        max_parked_pairs: Some(1000),
        ..RelayConfig::default()
    })
    .unwrap();
    let trunk = UdpSocket::bind((Ipv4Addr::new(127, 0, 120, 2), 0)).unwrap();
    let server = UdpSocket::bind((Ipv4Addr::new(127, 0, 120, 3), 0)).unwrap();
    server.set_read_timeout(Some(DEADLINE)).unwrap();

    // Room for 15 sessions (4 sockets each) above what is open now.
    let old = nofile();
    let _restore = Restore(old);
    set_nofile(libc::rlimit {
        rlim_cur: open_fds() + 60,
        rlim_max: old.rlim_max,
    });

    // 12 sessions come and go: their 24 pairs stay parked (48 fds).
    for n in 0..12 {
        r.create_session(
            SessionId(n),
            params(trunk.local_addr().unwrap(), server.local_addr().unwrap()),
        )
        .unwrap();
    }
    for n in 0..12 {
        r.remove_session(SessionId(n)).await.unwrap();
    }
    let end = Instant::now() + DEADLINE;
    while r.counters().port_pairs_parked < 24 {
        assert!(Instant::now() < end, "pairs not parked: {:?}", r.counters());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 12 new sessions get fresh pairs (the never-used ones are older in
    // the queue); 24 more open pairs would exceed the limit, so some
    // parked ones must be closed on the way.
    let mut last = None;
    for n in 100..112 {
        let info = r
            .create_session(
                SessionId(n),
                params(trunk.local_addr().unwrap(), server.local_addr().unwrap()),
            )
            .unwrap_or_else(|e| panic!("session {n}: {e} ({:?})", r.counters()));
        last = Some(info);
    }
    assert!(
        r.counters().port_pairs_parked < 24,
        "no parked pair was closed: {:?}",
        r.counters()
    );
    // The last session relays.
    let info = last.unwrap();
    trunk
        .send_to(&build_rtp(0, 7, 0, 1, &[0xd5; 160]), info.side_a.rtp_addr())
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = server.recv_from(&mut buf).expect("relayed within deadline");
    assert_eq!(rtp::seq(&buf[..n]), 7);
}
