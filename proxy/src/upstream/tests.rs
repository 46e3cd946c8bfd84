use super::*;
use sipcore::digest::Algorithm;

fn settings(window_s: u64) -> UpstreamSettings {
    UpstreamSettings {
        registrar: "127.0.0.1:5060".parse().unwrap(),
        realm: "central".into(),
        domain: "centre.example".into(),
        expires_s: 600,
        renew_window: Duration::from_secs(window_s),
        wan: Some("dc".into()),
    }
}

fn challenge(nonce: &str) -> Challenge {
    Challenge {
        realm: "central".into(),
        nonce: nonce.into(),
        algorithm: Algorithm::Md5,
        opaque: None,
        stale: false,
        qop_auth: true,
    }
}

fn ok(granted: u32) -> Answer {
    Answer {
        status: 200,
        granted_s: Some(granted),
        ..Answer::default()
    }
}

fn status(status: u16) -> Answer {
    Answer {
        status,
        ..Answer::default()
    }
}

fn challenged(nonce: &str) -> Answer {
    Answer {
        status: 401,
        challenge: Some(challenge(nonce)),
        ..Answer::default()
    }
}

const S: Duration = Duration::from_secs(1);

#[test]
fn a_new_binding_registers_at_once_and_answers_the_challenge_with_the_same_call_id() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("alice@branch", true, t);
    let sent = up.tick(t);
    assert_eq!(sent.len(), 1);
    let first = &sent[0];
    assert_eq!(
        (first.aor.as_str(), first.cseq, first.expires_s),
        ("alice@branch", 1, 600)
    );
    assert!(first.auth.is_none());
    assert_eq!(up.get("alice@branch").unwrap().state, UpState::Registering);

    let (outcome, again) = up.on_answer("alice@branch", &challenged("n1"), t);
    assert_eq!(outcome, Outcome::Challenged);
    let again = again.expect("the challenge is answered at once");
    assert_eq!(again.call_id, first.call_id);
    assert_eq!(again.cseq, 2);
    let auth = again.auth.expect("with credentials");
    assert_eq!((auth.challenge.nonce.as_str(), auth.nc), ("n1", 1));

    let (outcome, none) = up.on_answer("alice@branch", &ok(600), t);
    assert_eq!((outcome, none), (Outcome::Registered, None));
    assert!(matches!(
        up.get("alice@branch").unwrap().state,
        UpState::Registered { until } if until == t + 600 * S
    ));
    assert_eq!(up.counts()[2], 1);
    // Nothing before half the granted time; the refresh by two thirds,
    // answering the cached challenge with the next nonce count.
    assert!(up.tick(t + 299 * S).is_empty());
    let refresh = up.tick(t + 400 * S);
    assert_eq!(refresh.len(), 1);
    assert_eq!(
        (refresh[0].call_id.as_str(), refresh[0].cseq),
        (first.call_id.as_str(), 3)
    );
    assert_eq!(refresh[0].auth.as_ref().map(|a| a.nc), Some(2));
}

#[test]
fn a_second_challenge_with_the_same_nonce_fails_with_backoff() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("a@b", true, t);
    up.tick(t);
    let (_, again) = up.on_answer("a@b", &challenged("n1"), t);
    assert!(again.is_some());
    let (outcome, none) = up.on_answer("a@b", &challenged("n1"), t);
    assert_eq!((outcome, none), (Outcome::Failed, None));
    let UpState::Failed { status, retry_at } = up.get("a@b").unwrap().state else {
        panic!("failed expected");
    };
    assert_eq!(status, 401);
    assert!(retry_at >= t + 22 * S && retry_at <= t + 30 * S);
    assert!(up.tick(t + 20 * S).is_empty());
    assert_eq!(up.tick(t + 30 * S).len(), 1);
    // A stale nonce is answered again, not failed.
    let mut stale = challenge("n2");
    stale.stale = true;
    let answer = Answer {
        status: 401,
        challenge: Some(stale),
        ..Answer::default()
    };
    let (outcome, again) = up.on_answer("a@b", &answer, t + 30 * S);
    assert_eq!(outcome, Outcome::Challenged);
    assert!(again.is_some());
}

#[test]
fn interval_too_brief_retries_with_min_expires_and_errors_back_off() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("a@b", true, t);
    up.tick(t);
    let brief = Answer {
        status: 423,
        min_expires: Some(900),
        ..Answer::default()
    };
    let (_, again) = up.on_answer("a@b", &brief, t);
    assert_eq!(again.map(|r| r.expires_s), Some(900));
    // 503 with Retry-After: tried again then, not before.
    let busy = Answer {
        status: 503,
        retry_after_s: Some(120),
        ..Answer::default()
    };
    assert_eq!(up.on_answer("a@b", &busy, t).0, Outcome::Failed);
    assert!(up.tick(t + 119 * S).is_empty());
    assert_eq!(up.tick(t + 120 * S).len(), 1);
    // Failures in a row double the backoff.
    up.on_answer("a@b", &status(500), t + 120 * S);
    up.tick(t + 200 * S);
    up.on_answer("a@b", &status(500), t + 200 * S);
    let UpState::Failed { retry_at, .. } = up.get("a@b").unwrap().state else {
        panic!("failed expected");
    };
    assert!(retry_at >= t + 200 * S + 90 * S);
    // No answer at all: 408.
    up.tick(retry_at);
    assert_eq!(up.on_failure("a@b", retry_at), Outcome::Failed);
    assert!(matches!(
        up.get("a@b").unwrap().state,
        UpState::Failed { status: 408, .. }
    ));
}

#[test]
fn the_last_binding_gone_removes_it_at_the_centre() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("a@b", true, t);
    up.tick(t);
    up.on_answer("a@b", &ok(600), t);
    up.binding("a@b", false, t + S);
    let sent = up.tick(t + S);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].expires_s, sent[0].cseq), (0, 2));
    assert_eq!(up.get("a@b").unwrap().state, UpState::Removing);
    assert_eq!(up.on_answer("a@b", &ok(0), t + S).0, Outcome::Removed);
    assert!(up.get("a@b").is_none());
    assert_eq!(up.counts(), [0; 5]);
    // A removal the centre keeps refusing is given up after three tries.
    up.binding("d@b", true, t);
    up.tick(t);
    up.on_answer("d@b", &ok(600), t);
    up.binding("d@b", false, t);
    let mut now = t;
    for _ in 0..3 {
        assert_eq!(up.tick(now).len(), 1);
        up.on_answer("d@b", &status(500), now);
        now += 3600 * S;
    }
    assert!(up.get("d@b").is_none());
    assert_eq!(up.counts(), [0; 5]);
    // Never registered at the centre: nothing to remove.
    up.binding("c@b", true, t);
    up.binding("c@b", false, t);
    assert!(up.tick(t + 2 * S).is_empty());
    assert!(up.is_empty());
}

#[test]
fn a_binding_removed_while_its_register_is_out_is_removed_after_the_answer() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("a@b", true, t);
    up.tick(t);
    up.binding("a@b", false, t);
    up.on_answer("a@b", &ok(600), t);
    let sent = up.tick(t);
    assert_eq!(sent.iter().map(|r| r.expires_s).collect::<Vec<_>>(), [0]);
}

#[test]
fn nothing_is_sent_while_the_wan_is_down() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    up.binding("a@b", true, t);
    up.tick(t);
    up.on_answer("a@b", &ok(60), t);
    up.set_wan_down(true, t + S);
    // New phones, expiring registrations, removals: all wait.
    up.binding("c@b", true, t + S);
    up.binding("a@b", false, t + S);
    up.binding("a@b", true, t + 2 * S);
    for s in 1..600 {
        assert!(
            up.tick(t + s * S).is_empty(),
            "sent at {s} s with the WAN down"
        );
    }
    // A REGISTER that was out when it went down times out: no backoff,
    // it waits for the WAN.
    up.set_wan_down(false, t + 600 * S);
    let sent: Vec<_> = (0..=60).flat_map(|s| up.tick(t + (600 + s) * S)).collect();
    let mut aors: Vec<&str> = sent.iter().map(|r| r.aor.as_str()).collect();
    aors.sort_unstable();
    assert_eq!(aors, ["a@b", "c@b"]);
    up.set_wan_down(true, t + 700 * S);
    assert_eq!(up.on_failure("a@b", t + 700 * S), Outcome::Failed);
    assert_eq!(up.get("a@b").unwrap().state, UpState::Unregistered);
}

/// Sends per second over `secs` seconds of 100 ms ticks from `from`.
fn sends_per_second(up: &mut Upstream, from: Instant, secs: u64) -> Vec<usize> {
    let mut per_second = vec![0; secs as usize];
    for tick in 0..secs * 10 {
        let now = from + Duration::from_millis(tick * 100);
        let sent = up.tick(now);
        per_second[(tick / 10) as usize] += sent.len();
        for r in sent {
            up.on_answer(&r.aor, &ok(600), now);
        }
    }
    per_second
}

/// `n` AORs with bindings at `t`, registered at the centre for 600 s.
fn all_registered(up: &mut Upstream, n: usize, t: Instant) {
    for i in 0..n {
        up.binding(&format!("u{i}@b"), true, t);
    }
    for r in up.tick(t) {
        up.on_answer(&r.aor, &ok(600), t);
    }
}

#[test]
fn renewals_after_the_wan_returns_are_paced_over_the_window() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    // 1,000 phones registered, then the WAN went down for half an hour
    // (their registrations at the centre expired meanwhile).
    all_registered(&mut up, 1000, t);
    up.set_wan_down(true, t + S);
    let back = t + 1800 * S;
    assert!(up.tick(back).is_empty());
    up.set_wan_down(false, back);
    let per_second = sends_per_second(&mut up, back, 70);
    let total: usize = per_second.iter().sum();
    assert_eq!(total, 1000, "every AOR renewed once");
    let busiest = per_second.iter().max().copied().unwrap_or(0);
    assert!(
        busiest <= 17,
        "at most ceil(1000/60) a second, saw {busiest}: {per_second:?}"
    );
    // The last is due 60 ms before the window ends (the next 100 ms tick).
    assert!(
        per_second[61..].iter().all(|&n| n == 0),
        "all sent by the window's end: {per_second:?}"
    );
    assert_eq!(up.counts()[2], 1000);
}

#[test]
fn bindings_loaded_at_start_are_registered_paced() {
    let mut up = Upstream::new(settings(5), "cid".into());
    let t = Instant::now();
    for i in 0..50 {
        up.binding(&format!("u{i}@b"), true, t);
    }
    up.pace_pending(t);
    let per_second = sends_per_second(&mut up, t, 6);
    assert_eq!(per_second.iter().sum::<usize>(), 50);
    assert!(per_second.iter().all(|&n| n <= 10), "{per_second:?}");
}

#[test]
fn refreshes_of_phones_registered_together_are_spread() {
    let mut up = Upstream::new(settings(60), "cid".into());
    let t = Instant::now();
    all_registered(&mut up, 100, t);
    let per_second = sends_per_second(&mut up, t + S, 420);
    assert_eq!(per_second.iter().sum::<usize>(), 100);
    // Between 300 s and 400 s, no second with more than a handful.
    assert!(per_second[..298].iter().all(|&n| n == 0));
    assert!(per_second.iter().all(|&n| n <= 6), "{per_second:?}");
}

#[test]
fn a_replicated_registration_is_refreshed_with_the_same_call_id_after_a_takeover() {
    let mut active = Upstream::new(settings(60), "one".into());
    let t = Instant::now();
    let wall = 1_000_000;
    active.binding("a@b", true, t);
    active.tick(t);
    active.on_answer("a@b", &ok(600), t);
    assert_eq!(active.take_changed(), ["a@b"]);
    let rec = active.record("a@b", t, wall).unwrap();
    assert_eq!(rec.registered_until_ms, Some(wall + 600_000));

    let mut standby = Upstream::new(settings(60), "two".into());
    let rec: UpstreamRecord = serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
    standby.apply_record("a@b", Some(&rec), t, wall);
    assert!(standby.take_changed().is_empty());
    // Takeover with time to spare: the refresh keeps its time.
    standby.pace_pending(t + S);
    assert!(standby.tick(t + 2 * S).is_empty());
    let sent = standby.tick(t + 400 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].call_id.as_str(), sent[0].cseq), ("one-1", 2));
    standby.apply_record("a@b", None, t, wall);
    assert!(standby.is_empty());
}
