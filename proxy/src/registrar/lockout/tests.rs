use super::*;

const WINDOW: Duration = Duration::from_secs(60);
const BAN: Duration = Duration::from_secs(300);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

#[test]
fn bans_after_max_failures_in_the_window_and_lifts_after_the_ban() {
    let mut failures = AuthFailures::new(3, WINDOW, BAN, 100);
    let t0 = Instant::now();
    assert!(!failures.failed(ip(1), "alice", t0));
    assert!(!failures.failed(ip(1), "alice", t0 + Duration::from_secs(10)));
    assert!(!failures.banned(ip(1), "alice", t0 + Duration::from_secs(10)));
    let third = t0 + Duration::from_secs(20);
    assert!(
        failures.failed(ip(1), "alice", third),
        "the third starts a ban"
    );
    assert!(failures.banned(ip(1), "alice", third));
    assert!(failures.banned(ip(1), "alice", third + BAN - Duration::from_secs(1)));
    // More failures while banned neither start nor lengthen a ban.
    assert!(!failures.failed(ip(1), "alice", third + Duration::from_secs(1)));
    assert!(!failures.banned(ip(1), "alice", third + BAN));
    // After the ban the count starts again from zero.
    assert!(!failures.failed(ip(1), "alice", third + BAN));
    assert!(!failures.banned(ip(1), "alice", third + BAN));
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let mut failures = AuthFailures::new(2, WINDOW, BAN, 100);
    let t0 = Instant::now();
    assert!(!failures.failed(ip(1), "alice", t0));
    // Just past the window: a new window, one failure in it.
    let later = t0 + WINDOW + Duration::from_millis(1);
    assert!(!failures.failed(ip(1), "alice", later));
    assert!(!failures.banned(ip(1), "alice", later));
    assert!(failures.failed(ip(1), "alice", later + Duration::from_secs(1)));
}

#[test]
fn a_ban_is_per_source_and_user() {
    let mut failures = AuthFailures::new(2, WINDOW, BAN, 100);
    let t0 = Instant::now();
    failures.failed(ip(1), "alice", t0);
    assert!(failures.failed(ip(1), "alice", t0));
    assert!(failures.banned(ip(1), "alice", t0));
    // Another user behind the same NAT address, and alice elsewhere.
    assert!(!failures.banned(ip(1), "bob", t0));
    assert!(!failures.banned(ip(2), "alice", t0));
}

#[test]
fn success_clears_failures() {
    let mut failures = AuthFailures::new(2, WINDOW, BAN, 100);
    let t0 = Instant::now();
    assert!(!failures.failed(ip(1), "alice", t0));
    failures.succeeded(ip(1), "alice");
    assert!(
        !failures.failed(ip(1), "alice", t0),
        "counting starts again"
    );
    assert_eq!(failures.len(), 1);
}

#[test]
fn the_table_is_bounded_by_its_capacity() {
    let mut failures = AuthFailures::new(2, WINDOW, BAN, 50);
    let t0 = Instant::now();
    // A scanner cycling user names, with huge names.
    for i in 0..10_000 {
        failures.failed(ip(9), &format!("{i}{}", "x".repeat(10_000)), t0);
    }
    assert_eq!(failures.len(), 50);
    // Long names share the key of their first 64 bytes.
    let long_a = format!("{}a", "u".repeat(100));
    let long_b = format!("{}b", "u".repeat(100));
    failures.failed(ip(3), &long_a, t0);
    assert!(failures.failed(ip(3), &long_b, t0));
    // Cutting never splits a character.
    let wide = "é".repeat(100);
    failures.failed(ip(4), &wide, t0);
    assert!(failures.failed(ip(4), &wide, t0));
}

#[test]
fn max_failures_zero_means_one() {
    let mut failures = AuthFailures::new(0, WINDOW, BAN, 10);
    assert!(failures.failed(ip(1), "alice", Instant::now()));
}
