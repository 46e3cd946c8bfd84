use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::*;
use crate::config::SessionOptions;
use crate::rtp::build_rtp;
use crate::session::{LocalPorts, Port, SideState};

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
}

fn session() -> SessionState {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    SessionState::new(
        SessionId(1),
        SessionOptions::default(),
        SideState::new(LocalPorts::new(ip, 20000), Some(addr(10, 5000)), false),
        SideState::new(LocalPorts::new(ip, 20002), Some(addr(20, 6000)), false),
    )
}

fn receive(s: &mut SessionState, side: Side, seq: u16, ssrc: u32, src: SocketAddr) {
    let mut p = build_rtp(0, seq, u32::from(seq) * 160, ssrc, &[0; 160]);
    s.on_packet(side, Port::Rtp, &mut p, src, Instant::now(), 1_000_000);
}

#[test]
fn records_have_the_c_layout() {
    // Sizes of struct flow_key, route and stream_counters in
    // bpf/fastpath.bpf.c (no implicit padding on either side).
    assert_eq!(std::mem::size_of::<FlowKey>(), 12);
    assert_eq!(std::mem::size_of::<Route>(), 36);
    assert_eq!(std::mem::size_of::<StreamCounters>(), 40);
}

#[test]
fn no_entry_before_latching() {
    let s = session();
    assert_eq!(desired(&s, Side::A), None);
    assert_eq!(desired(&s, Side::B), None);
}

#[test]
fn a_latched_side_gets_an_entry_toward_the_other_sides_destination() {
    let mut s = session();
    receive(&mut s, Side::A, 1, 7, addr(10, 5000));
    let (key, route) = desired(&s, Side::A).expect("A latched, B has an SDP address");
    assert_eq!(key.local_ip, u32::from_ne_bytes([127, 0, 0, 1]));
    assert_eq!(key.peer_ip, u32::from_ne_bytes([127, 0, 0, 10]));
    assert_eq!(u16::from_be(key.local_port), 20000);
    assert_eq!(u16::from_be(key.peer_port), 5000);
    assert_eq!(u16::from_be(route.out_src_port), 20002);
    assert_eq!(route.out_dst_ip, u32::from_ne_bytes([127, 0, 0, 20]));
    assert_eq!(u16::from_be(route.out_dst_port), 6000);
    assert_eq!(route.flags, 0, "no mapping before a switch");
    assert_eq!(desired(&s, Side::B), None, "B has not latched");
}

#[test]
fn a_switch_hands_the_new_upstream_to_user_space_until_its_mapping_is_known() {
    let mut s = session();
    receive(&mut s, Side::A, 1, 7, addr(10, 5000));
    receive(&mut s, Side::B, 100, 9, addr(20, 6000));
    assert!(desired(&s, Side::B).is_some());
    s.switch_upstream(addr(30, 7000), None);
    // Trunk audio goes to the new server at once; its answer waits for
    // user space (remap pending, not latched).
    let (_, route) = desired(&s, Side::A).unwrap();
    assert_eq!(route.out_dst_ip, u32::from_ne_bytes([127, 0, 0, 30]));
    assert_eq!(desired(&s, Side::B), None);
    receive(&mut s, Side::B, 5000, 11, addr(30, 7000));
    let (key, route) = desired(&s, Side::B).expect("latched with a mapping");
    assert_eq!(key.peer_ip, u32::from_ne_bytes([127, 0, 0, 30]));
    assert_eq!(route.flags, sys::ROUTE_REWRITE);
    let rw = s.continuity[Side::A.index()].rewrite.unwrap();
    assert_eq!((route.in_ssrc, route.out_ssrc), (11, 9));
    assert_eq!(
        (route.seq_delta, route.ts_delta),
        (rw.seq_delta, rw.ts_delta)
    );
}

#[test]
fn removed_sessions_and_ipv6_have_no_entries() {
    let mut s = session();
    receive(&mut s, Side::A, 1, 7, addr(10, 5000));
    s.removed = true;
    assert_eq!(desired(&s, Side::A), None);
    let ip6: IpAddr = "::1".parse().unwrap();
    let mut s = SessionState::new(
        SessionId(2),
        SessionOptions::default(),
        SideState::new(LocalPorts::new(ip6, 20000), None, false),
        SideState::new(
            LocalPorts::new(ip6, 20002),
            Some("[::1]:6000".parse().unwrap()),
            false,
        ),
    );
    receive(&mut s, Side::A, 1, 7, "[::1]:5000".parse().unwrap());
    assert_eq!(desired(&s, Side::A), None);
}

#[test]
fn the_kernels_newest_packet_becomes_the_continuity_point() {
    let mut c = ContinuityState {
        last_sent: Some(SentPoint {
            ssrc: 9,
            seq: 10,
            timestamp: 1600,
            at_unix_us: 1_000_000,
        }),
        ..ContinuityState::default()
    };
    // Sent by the kernel 20 ms before "now" (monotonic 5 s, unix 2 s).
    let k = KernelStream {
        packets: 50,
        bytes: 8600,
        last: Some((9, 60, 9600, 4_980_000_000)),
    };
    fold_last_sent(&mut c, &k, 5_000_000_000, 2_000_000);
    assert_eq!(
        c.last_sent,
        Some(SentPoint {
            ssrc: 9,
            seq: 60,
            timestamp: 9600,
            at_unix_us: 1_980_000,
        })
    );
    // An older kernel packet does not move it back.
    let old = KernelStream {
        last: Some((9, 5, 800, 3_000_000_000)),
        ..k
    };
    fold_last_sent(&mut c, &old, 5_000_000_000, 2_000_000);
    assert_eq!(c.last_sent.unwrap().seq, 60);
    // Nothing forwarded: nothing changes.
    fold_last_sent(&mut c, &KernelStream::default(), 5_000_000_000, 2_000_000);
    assert_eq!(c.last_sent.unwrap().seq, 60);
}

#[test]
fn per_cpu_counters_add_up_and_the_newest_packet_wins() {
    let cpu = |packets, last_ns, seq| StreamCounters {
        packets,
        bytes: packets * 172,
        last_ns,
        last_ssrc: 9,
        last_ts: u32::from(seq) * 160,
        last_seq: seq,
        ..StreamCounters::default()
    };
    let k = KernelStream::from_cpus(&[cpu(3, 500, 40), cpu(0, 0, 0), cpu(4, 900, 41)]);
    assert_eq!((k.packets, k.bytes), (7, 7 * 172));
    assert_eq!(k.last, Some((9, 41, 41 * 160, 900)));
}

#[test]
fn a_destination_on_this_host_is_fast_only_for_packets_from_this_host() {
    // Both on this host (they arrive on loopback): up the stack.
    assert_eq!(out_interface(0, 0), Some(0));
    // From a real interface to this host: the stack would drop it as a
    // martian (this host's address as source), so user space relays it.
    assert_eq!(out_interface(0, 2), None);
    // A remote destination leaves by its interface, from anywhere.
    assert_eq!(out_interface(3, 2), Some(3));
    assert_eq!(out_interface(3, 0), Some(3));
}

#[test]
fn a_sync_that_wants_nothing_makes_no_session_entry() {
    let fp = match FastPath::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 64) {
        Ok(fp) => fp,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    // Not latched (or removed while a worker still syncs): no entry to
    // install, so none to forget when the session is gone.
    let mut s = session();
    fp.sync(&mut s, 1_000_000);
    s.removed = true;
    fp.sync(&mut s, 1_000_000);
    assert!(lock(&fp.inner).sessions.is_empty());
}

#[test]
fn a_full_map_is_worth_a_retry_and_a_refusal_is_not() {
    #[derive(Debug, thiserror::Error)]
    #[error("`bpf_map_update_elem` failed")]
    struct Syscall(#[source] std::io::Error);
    let full = map_error(
        "routes",
        "insert",
        &Syscall(std::io::Error::from_raw_os_error(libc::E2BIG)),
    );
    assert!(full.retry_helps(), "{full}");
    let refused = map_error(
        "routes",
        "insert",
        &Syscall(std::io::Error::from_raw_os_error(libc::EPERM)),
    );
    assert!(!refused.retry_helps(), "{refused}");
    // The message still says which map, what and why.
    let text = refused.to_string();
    assert!(text.starts_with("BPF map `routes`: insert: `bpf_map_update_elem` failed: "));
    assert!(!load_error("no program").retry_helps());
}

/// Sessions 1..=n, each with side A latched (so one entry each, toward
/// B's destination), installed in `fp`.
fn latched_sessions(fp: &FastPath, n: u16) -> Vec<SessionState> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    (1..=n)
        .map(|i| {
            let mut s = SessionState::new(
                SessionId(u64::from(i)),
                SessionOptions::default(),
                SideState::new(
                    LocalPorts::new(ip, 20000 + 4 * i),
                    Some(addr(10, 5000 + i)),
                    false,
                ),
                SideState::new(
                    LocalPorts::new(ip, 20002 + 4 * i),
                    Some(addr(20, 6000)),
                    false,
                ),
            );
            receive(&mut s, Side::A, 1, 7, addr(10, 5000 + i));
            fp.sync(&mut s, 1_000_000);
            s
        })
        .collect()
}

/// Makes the kernel's counters of `s`'s side A entry say `packets` were
/// forwarded, the newest at `last_ns`.
fn set_counters(fp: &FastPath, s: &SessionState, packets: u64, last_ns: u64) {
    let inner = lock(&fp.inner);
    let key = inner.sessions[&s.id].dir[Side::A.index()]
        .expect("side A has an entry")
        .key;
    let mut cpus = vec![StreamCounters::default(); inner.cpus];
    cpus[0] = StreamCounters {
        packets,
        bytes: packets * 172,
        last_ns,
        last_ssrc: 7,
        ..StreamCounters::default()
    };
    let mut inner = inner;
    let values = PerCpuValues::try_from(cpus).unwrap();
    inner.counters.insert(key, values, 0).unwrap();
}

fn start_or_skip() -> Option<FastPath> {
    match FastPath::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 1024) {
        Ok(fp) => Some(fp),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

#[test]
fn the_silence_checks_of_many_calls_share_one_batched_read() {
    let Some(fp) = start_or_skip() else { return };
    let sessions = latched_sessions(&fp, 300);
    let now = sys::monotonic_ns();
    for (i, s) in sessions.iter().enumerate() {
        // Session i last forwarded (i + 1) * 10 ms ago.
        set_counters(&fp, s, 50, now - (i as u64 + 1) * 10_000_000);
    }
    {
        let mut inner = lock(&fp.inner);
        inner.lookups.set(0);
        inner.sweep.at_ns = 0;
    }
    // What a silence check asks: both sides of every call.
    for (i, s) in sessions.iter().enumerate() {
        let idle = fp.idle_time(s.id, Side::A).expect("forwarded");
        let want = Duration::from_millis((i as u64 + 1) * 10);
        assert!(
            idle >= want && idle < want + Duration::from_secs(5),
            "session {i}: idle {idle:?}, want {want:?}"
        );
        assert_eq!(fp.idle_time(s.id, Side::B), None, "B has no entry");
    }
    assert_eq!(fp.totals(), (300 * 50, 300 * 50 * 172));
    let lookups = lock(&fp.inner).lookups.get();
    assert!(
        lookups <= 2,
        "{lookups} map lookups for 600 idle times and a total of 300 streams"
    );
}

#[test]
fn a_packet_forwarded_after_a_sweep_is_seen_by_the_next() {
    let Some(fp) = start_or_skip() else { return };
    let sessions = latched_sessions(&fp, 2);
    let long_ago = sys::monotonic_ns() - 60_000_000_000;
    set_counters(&fp, &sessions[0], 10, long_ago);
    set_counters(&fp, &sessions[1], 10, long_ago);
    assert!(fp.idle_time(sessions[0].id, Side::A).unwrap() >= Duration::from_secs(60));
    // The kernel forwards a packet of session 0 now: within the sweep's
    // age the silence is over.
    set_counters(&fp, &sessions[0], 11, sys::monotonic_ns());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let idle = fp.idle_time(sessions[0].id, Side::A).unwrap();
        if idle < Duration::from_secs(1) {
            break;
        }
        assert!(Instant::now() < deadline, "still idle {idle:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // An entry replaced under the same key starts from its own counters,
    // not the sweep's figures of the one before (those are the session's
    // retired counts now: counted once).
    let mut s = sessions.into_iter().nth(1).unwrap();
    s.removed = true;
    fp.sync(&mut s, 1_000_000);
    s.removed = false;
    fp.sync(&mut s, 1_000_000);
    lock(&fp.inner).sweep.at_ns = u64::MAX; // no new sweep
    assert_eq!(fp.totals().0, 11 + 10);
}

#[test]
fn a_peer_that_latches_anew_has_its_egress_looked_up_afresh() {
    let Some(fp) = start_or_skip() else { return };
    let mut s = latched_sessions(&fp, 1).remove(0);
    let moved = Ipv4Addr::new(127, 0, 0, 11);
    // The cache says (as it could have, seconds ago) that 127.0.0.11 is
    // reached by an interface it is not reached by now.
    let bogus_ifindex = 999;
    lock(&fp.inner)
        .egress
        .insert(moved, (bogus_ifindex, sys::monotonic_ns()));
    // The trunk's media now comes from there (a restarted host, a NAT
    // rebinding): side A latches to it.
    s.sides[Side::A.index()].latched_rtp = addr(11, 5001).into();
    fp.sync(&mut s, 1_000_000);
    let inner = lock(&fp.inner);
    let entry = inner.sessions[&s.id].dir[Side::A.index()]
        .expect("the new stream is in the kernel (the stale interface would keep it out)");
    assert_eq!(entry.key.peer_ip, sys::ip_be(moved));
    assert_eq!(inner.egress[&moved].0, 0, "127.0.0.11 is on this host");
}
