use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limit(rate_per_s: u32, burst: u32, ban_s: u64, table_size: usize) -> RateLimit {
    RateLimit {
        rate_per_s,
        burst,
        ban: Duration::from_secs(ban_s),
        table_size,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_burst_passes_then_the_source_is_banned_for_the_ban_time() {
    let mut l = SourceLimiter::new(limit(10, 5, 60, 16));
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for i in 0..5 {
        assert_eq!(l.check(a, t0), Ok(()), "message {i} of the burst");
    }
    assert_eq!(l.check(a, t0), Err(DropReason::Rate));
    assert!(l.is_banned(a, t0));
    // Banned: nothing passes, however long it waited within the ban
    // (the bucket would have refilled long ago).
    assert_eq!(
        l.check(a, t0 + Duration::from_secs(30)),
        Err(DropReason::Banned)
    );
    assert_eq!(
        l.check(a, t0 + Duration::from_secs(60) - ms(1)),
        Err(DropReason::Banned)
    );
    // Over: a full bucket again.
    let after = t0 + Duration::from_secs(60);
    assert!(!l.is_banned(a, after));
    for _ in 0..5 {
        assert_eq!(l.check(a, after), Ok(()));
    }
    assert_eq!(l.check(a, after), Err(DropReason::Rate));
}

#[test]
fn a_source_within_its_rate_is_never_banned() {
    let mut l = SourceLimiter::new(limit(10, 2, 60, 16));
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    // 10/s for 100 s, one every 100 ms.
    for i in 0..1000u64 {
        assert_eq!(l.check(a, t0 + ms(100 * i)), Ok(()), "message {i}");
    }
    // Twice the rate: the burst is spent, then a ban.
    let t1 = t0 + Duration::from_secs(200);
    let verdicts: Vec<_> = (0..10u64).map(|i| l.check(a, t1 + ms(50 * i))).collect();
    assert!(verdicts.contains(&Err(DropReason::Rate)), "{verdicts:?}");
}

#[test]
fn sources_are_limited_each_on_its_own() {
    let mut l = SourceLimiter::new(limit(1, 1, 60, 16));
    let t0 = Instant::now();
    assert_eq!(l.check(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(l.check(ip("192.0.2.1"), t0), Err(DropReason::Rate));
    assert_eq!(l.check(ip("192.0.2.2"), t0), Ok(()));
}

#[test]
fn an_ipv6_subscriber_is_one_source_per_64() {
    let mut l = SourceLimiter::new(limit(1, 1, 60, 16));
    let t0 = Instant::now();
    assert_eq!(l.check(ip("2001:db8:1:2::1"), t0), Ok(()));
    // Another address of the same /64: the same bucket.
    assert_eq!(
        l.check(ip("2001:db8:1:2:ffff::9"), t0),
        Err(DropReason::Rate)
    );
    assert_eq!(l.check(ip("2001:db8:1:3::1"), t0), Ok(()));
}

#[test]
fn rate_zero_limits_nobody() {
    let mut l = SourceLimiter::new(limit(0, 1, 60, 16));
    let t0 = Instant::now();
    for _ in 0..10_000 {
        assert_eq!(l.check(ip("192.0.2.1"), t0), Ok(()));
    }
    assert_eq!(l.tracked(), 0);
}

#[test]
fn the_table_stays_at_its_size_and_forgets_the_least_recently_seen() {
    let mut l = SourceLimiter::new(limit(1, 1, 60, 100));
    let t0 = Instant::now();
    let banned = ip("198.51.100.1");
    assert_eq!(l.check(banned, t0), Ok(()));
    assert_eq!(l.check(banned, t0), Err(DropReason::Rate));
    // 10,000 other sources, the banned one still sending every so often:
    // it stays recently seen, so it stays banned.
    for i in 0..10_000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        let _ = l.check(IpAddr::from([10, 1, a, b]), t0);
        if i % 50 == 0 {
            assert_eq!(l.check(banned, t0), Err(DropReason::Banned), "at {i}");
        }
        assert!(l.tracked() <= 100);
    }
    assert_eq!(l.tracked(), 100);
    // The first of the 10,000 was forgotten long ago: a fresh bucket.
    assert_eq!(l.check(IpAddr::from([10, 1, 0, 0]), t0), Ok(()));
    // A banned source that falls silent is forgotten when 100 others
    // come after it (it then starts afresh: the table, not the ban, is
    // what is bounded).
    for i in 0..100u32 {
        let [_, _, a, b] = i.to_be_bytes();
        let _ = l.check(IpAddr::from([10, 2, a, b]), t0);
    }
    assert!(!l.is_banned(banned, t0));
}

#[test]
fn trusted_sources_match_networks_and_hosts() {
    let t = TrustedSources::new(
        [
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        [ip("192.0.2.7")],
    );
    assert!(t.contains(ip("203.0.113.200")));
    assert!(t.contains(ip("2001:db8:5::1")));
    assert!(t.contains(ip("192.0.2.7")));
    assert!(!t.contains(ip("192.0.2.8")));
    assert!(!t.contains(ip("203.0.114.1")));
    // A network written with host bits is the network.
    let t = TrustedSources::new(["10.1.2.3/8".parse().unwrap()], []);
    assert!(t.contains(ip("10.200.0.1")));
    assert!(TrustedSources::everyone().contains(ip("198.51.100.1")));
    assert!(!TrustedSources::new([], []).contains(ip("127.0.0.1")));
}

#[test]
fn the_gate_never_limits_a_trusted_source() {
    let trusted = TrustedSources::new(["127.0.0.1/32".parse().unwrap()], []);
    let mut g = Gate::new(Arc::new(trusted), limit(1, 1, 60, 16), Arc::default());
    let t0 = Instant::now();
    for _ in 0..10_000 {
        assert_eq!(g.check(ip("127.0.0.1"), t0), Verdict::Trusted);
    }
    assert_eq!(g.check(ip("127.0.0.2"), t0), Verdict::Stranger);
    assert_eq!(
        g.check(ip("127.0.0.2"), t0),
        Verdict::Drop(DropReason::Rate)
    );
    assert_eq!(
        g.check(ip("127.0.0.2"), t0),
        Verdict::Drop(DropReason::Banned)
    );
    // Trusted from now on (a reload made it a trunk): the ban no longer
    // applies.
    g.set_trusted(Arc::new(TrustedSources::new(
        [],
        [ip("127.0.0.1"), ip("127.0.0.2")],
    )));
    assert_eq!(g.check(ip("127.0.0.2"), t0), Verdict::Trusted);
}

#[test]
fn refusals_are_logged_once_per_interval_with_their_counts() {
    let mut tally = RefusalTally::new(Duration::from_secs(10));
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    // The first refusal is logged at once.
    let first = tally.note(DropReason::Rate, a, t0).unwrap();
    assert_eq!((first.banned, first.rate, first.backlog), (0, 1, 0));
    // 100,000 more within the interval: no line.
    for i in 0..100_000u64 {
        let reason = if i % 10 == 0 {
            DropReason::Backlog
        } else {
            DropReason::Banned
        };
        assert_eq!(tally.note(reason, a, t0 + ms(i / 20)), None);
    }
    // The next one after the interval carries them all.
    let line = tally
        .note(
            DropReason::Banned,
            ip("192.0.2.2"),
            t0 + Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        line,
        RefusalSummary {
            banned: 90_001,
            rate: 0,
            backlog: 10_000,
            last_source: Some(ip("192.0.2.2")),
        }
    );
}

#[test]
fn a_ban_reaches_the_shared_list_the_transports_drop_by() {
    let bans = Arc::new(Bans::default());
    let trusted = TrustedSources::new(["127.0.0.1/32".parse().unwrap()], []);
    let mut g = Gate::new(Arc::new(trusted), limit(1, 1, 60, 2), bans.clone());
    let t0 = Instant::now();
    assert!(!bans.drops(ip("127.0.0.2")), "no ban yet");
    assert_eq!(g.check(ip("127.0.0.2"), t0), Verdict::Stranger);
    assert_eq!(
        g.check(ip("127.0.0.2"), t0),
        Verdict::Drop(DropReason::Rate)
    );
    assert!(bans.drops(ip("127.0.0.2")));
    assert!(!bans.drops(ip("127.0.0.3")));
    assert!(!bans.drops(ip("127.0.0.1")));
    assert_eq!(bans.dropped(), 1);
    // The list holds at most the table's size of bans.
    for last in 3..20u8 {
        let s = IpAddr::from([127, 0, 0, last]);
        let _ = g.check(s, t0);
        let _ = g.check(s, t0);
        assert!(bans.len() <= 2);
    }
}

#[test]
fn a_ban_that_is_over_drops_nothing() {
    let bans = Arc::new(Bans::default());
    let mut g = Gate::new(
        Arc::new(TrustedSources::new([], [])),
        limit(1, 1, 0, 16),
        bans.clone(),
    );
    let t0 = Instant::now();
    let _ = g.check(ip("192.0.2.1"), t0);
    assert_eq!(
        g.check(ip("192.0.2.1"), t0),
        Verdict::Drop(DropReason::Rate)
    );
    assert!(!bans.drops(ip("192.0.2.1")));
}
