use super::*;
use bytes::Bytes;
use sipcore::digest::authorization;

const REALM: &str = "example.org";
const URI: &str = "sip:example.org";
const NOW_S: u64 = 1_800_000_000;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn settings(algorithms: &[Algorithm]) -> AuthSettings {
    AuthSettings {
        realm: REALM.into(),
        algorithms: algorithms.to_vec(),
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 3,
        failure_window: Duration::from_secs(60),
        failure_ban: Duration::from_secs(600),
    }
}

fn key() -> NonceKey {
    NonceKey::from_secret(b"the pair's secret")
}

/// alice/secret and bob/hunter2, every algorithm.
fn users() -> Credentials {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    crate::registrar::credentials::write_passwd(&path, "alice", REALM, "secret").unwrap();
    crate::registrar::credentials::write_passwd(&path, "bob", REALM, "hunter2").unwrap();
    Credentials::load(&path).unwrap()
}

fn authenticator(algorithms: &[Algorithm]) -> Authenticator {
    Authenticator::new(settings(algorithms), key(), users())
}

/// A request with `headers` (full lines, `Name: value`).
fn request(method: &str, uri: &str, headers: &[String]) -> Message {
    let mut text = format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
         From: <sip:alice@example.org>;tag=1\r\n\
         To: <sip:alice@example.org>\r\n\
         Call-ID: c1\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n"
    );
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(text)).unwrap()
}

/// The challenges of an outcome, parsed; panics if it is not one.
fn challenges(outcome: &AuthOutcome, header: &str, status_wanted: u16) -> Vec<Challenge> {
    let AuthOutcome::Challenge {
        status, headers, ..
    } = outcome
    else {
        panic!("not a challenge: {outcome:?}");
    };
    assert_eq!(*status, status_wanted);
    headers
        .iter()
        .map(|(name, value)| {
            assert_eq!(*name, header);
            Challenge::parse(value).unwrap()
        })
        .collect()
}

/// A phone answering `challenge` for `user` with `password`.
fn answer(challenge: &Challenge, user: &str, password: &str, nc: u32) -> String {
    authorization(challenge, user, password, "REGISTER", URI, "0a4f113b", nc)
}

/// REGISTER carrying `authorization`.
fn register_with(authorization: &str) -> Message {
    request(
        "REGISTER",
        URI,
        &[format!("Authorization: {authorization}")],
    )
}

/// A fresh challenge for MD5 at `wall_s`.
fn md5_challenge(wall_s: u64) -> Challenge {
    Challenge {
        realm: REALM.into(),
        nonce: key().issue(wall_s, REALM),
        algorithm: Algorithm::Md5,
        opaque: None,
        stale: false,
        qop_auth: true,
    }
}

/// `request` checked as a REGISTER from 192.0.2.`source` at `now`.
fn www(auth: &mut Authenticator, request: &Message, source: u8, now: Instant) -> AuthOutcome {
    auth.check(request, AuthKind::Www, ip(source), now, NOW_S)
}

/// A REGISTER from 192.0.2.`source` answering `challenge`, checked at
/// `now`.
fn try_register(
    auth: &mut Authenticator,
    challenge: &Challenge,
    (user, password, nc): (&str, &str, u32),
    source: u8,
    now: Instant,
) -> AuthOutcome {
    www(
        auth,
        &register_with(&answer(challenge, user, password, nc)),
        source,
        now,
    )
}

fn forbidden() -> AuthOutcome {
    AuthOutcome::Failed {
        status: 403,
        reason: "Forbidden",
        headers: Vec::new(),
    }
}

fn authenticated(user: &str) -> AuthOutcome {
    AuthOutcome::Authenticated { user: user.into() }
}

#[test]
fn no_credentials_get_one_challenge_per_algorithm_in_order() {
    let order = [Algorithm::Sha256, Algorithm::Md5, Algorithm::Sha512_256];
    let mut auth = authenticator(&order);
    let now = Instant::now();
    let outcome = www(&mut auth, &request("REGISTER", URI, &[]), 1, now);
    let AuthOutcome::Challenge { reason, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(*reason, "Unauthorized");
    let offered = challenges(&outcome, "WWW-Authenticate", 401);
    assert_eq!(
        offered.iter().map(|c| c.algorithm).collect::<Vec<_>>(),
        order
    );
    for c in &offered {
        assert_eq!(c.realm, REALM);
        assert!(c.qop_auth);
        assert!(!c.stale);
        assert_eq!(
            key().check(&c.nonce, NOW_S, REALM, 300),
            NonceCheck::Valid { issued: NOW_S }
        );
    }
    // INVITE: 407 and Proxy-Authenticate; an Authorization header is not
    // a Proxy-Authorization.
    let answer = answer(&offered[0], "alice", "secret", 1);
    let invite = request("INVITE", URI, &[format!("Authorization: {answer}")]);
    let outcome = auth.check(&invite, AuthKind::Proxy, ip(1), now, NOW_S);
    let AuthOutcome::Challenge { reason, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(*reason, "Proxy Authentication Required");
    assert_eq!(challenges(&outcome, "Proxy-Authenticate", 407).len(), 3);
    assert_eq!(
        auth.failures_total(),
        0,
        "asking for credentials is no failure"
    );
}

#[test]
fn right_credentials_authenticate_with_every_algorithm_and_kind() {
    let mut auth = authenticator(&Algorithm::ALL);
    let now = Instant::now();
    let first = www(&mut auth, &request("REGISTER", URI, &[]), 1, now);
    for (nc, challenge) in (1..).zip(challenges(&first, "WWW-Authenticate", 401)) {
        let value = answer(&challenge, "alice", "secret", nc);
        assert_eq!(
            auth.check(&register_with(&value), AuthKind::Www, ip(1), now, NOW_S + 1),
            authenticated("alice"),
            "{:?}",
            challenge.algorithm
        );
    }
    // INVITE with Proxy-Authorization (the INVITE's own method in the hash).
    let challenge = md5_challenge(NOW_S);
    let value = authorization(&challenge, "bob", "hunter2", "INVITE", URI, "cn", 1);
    let invite = request("INVITE", URI, &[format!("Proxy-Authorization: {value}")]);
    assert_eq!(
        auth.check(&invite, AuthKind::Proxy, ip(1), now, NOW_S),
        authenticated("bob")
    );
    assert_eq!(auth.failures_total(), 0);
}

#[test]
fn the_header_for_our_realm_is_found_among_others() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let other = Challenge {
        realm: "carrier.example".into(),
        ..md5_challenge(NOW_S)
    };
    let register = request(
        "REGISTER",
        URI,
        &[
            "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l".into(),
            format!("Authorization: {}", answer(&other, "alice", "secret", 1)),
            format!(
                "Authorization: {}",
                answer(&md5_challenge(NOW_S), "alice", "secret", 1)
            ),
        ],
    );
    assert_eq!(www(&mut auth, &register, 1, now), authenticated("alice"));
    // Only another realm's credentials: a challenge, not a failure.
    let register = register_with(&answer(&other, "alice", "secret", 1));
    let outcome = www(&mut auth, &register, 1, now);
    assert_eq!(challenges(&outcome, "WWW-Authenticate", 401).len(), 1);
    assert_eq!(auth.failures_total(), 0);
}

#[test]
fn a_stale_nonce_gets_stale_true_only_with_the_right_password() {
    let mut auth = authenticator(&[Algorithm::Md5, Algorithm::Sha256]);
    let now = Instant::now();
    let old = md5_challenge(NOW_S - 301);
    let outcome = try_register(&mut auth, &old, ("alice", "secret", 1), 1, now);
    let offered = challenges(&outcome, "WWW-Authenticate", 401);
    assert_eq!(offered.len(), 2);
    assert!(offered.iter().all(|c| c.stale));
    assert_ne!(offered[0].nonce, old.nonce, "a fresh nonce");
    assert_eq!(auth.failures_total(), 0, "a stale nonce is no failure");
    // The fresh nonce then works.
    let value = answer(&offered[0], "alice", "secret", 1);
    assert_eq!(
        www(&mut auth, &register_with(&value), 1, now),
        authenticated("alice")
    );
    // A wrong password with a stale nonce is a failure, not a hint.
    let outcome = try_register(&mut auth, &old, ("alice", "guess", 1), 1, now);
    assert_eq!(outcome, forbidden());
    assert_eq!(auth.failures_total(), 1);
}

#[test]
fn a_forged_nonce_is_challenged_and_counted() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    for nonce in [
        NonceKey::from_secret(b"another node").issue(NOW_S, REALM),
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".to_string(),
        // Ours, but issued in the future.
        key().issue(NOW_S + 60, REALM),
    ] {
        let forged = Challenge {
            nonce,
            ..md5_challenge(NOW_S)
        };
        let outcome = try_register(&mut auth, &forged, ("alice", "secret", 1), 1, now);
        let offered = challenges(&outcome, "WWW-Authenticate", 401);
        assert!(!offered[0].stale);
    }
    assert_eq!(auth.failures_total(), 3);
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_answer() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = md5_challenge(NOW_S);
    let wrong_password = try_register(&mut auth, &challenge, ("alice", "guess", 1), 1, now);
    let unknown_user = try_register(&mut auth, &challenge, ("mallory", "secret", 1), 1, now);
    assert_eq!(wrong_password, forbidden());
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(auth.failures_total(), 2);
}

#[test]
fn a_replayed_nonce_count_is_challenged_and_counted() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = md5_challenge(NOW_S);
    let first = register_with(&answer(&challenge, "alice", "secret", 1));
    assert_eq!(www(&mut auth, &first, 1, now), authenticated("alice"));
    // The same request again (a captured packet replayed).
    let replay = www(&mut auth, &first, 1, now);
    assert!(!challenges(&replay, "WWW-Authenticate", 401)[0].stale);
    assert_eq!(auth.failures_total(), 1);
    // The phone's next request on that nonce, with the next count, is fine.
    let next = register_with(&answer(&challenge, "alice", "secret", 2));
    assert_eq!(www(&mut auth, &next, 1, now), authenticated("alice"));
}

#[test]
fn an_rfc_2069_answer_is_good_for_one_request() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = Challenge {
        qop_auth: false,
        ..md5_challenge(NOW_S)
    };
    let register = register_with(&answer(&challenge, "alice", "secret", 1));
    assert_eq!(www(&mut auth, &register, 1, now), authenticated("alice"));
    let replay = www(&mut auth, &register, 1, now);
    assert!(
        matches!(replay, AuthOutcome::Challenge { .. }),
        "{replay:?}"
    );
}

#[test]
fn the_digest_uri_must_name_the_request_uris_resource() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = md5_challenge(NOW_S);
    // Right password, but for another Request-URI.
    let value = authorization(
        &challenge,
        "alice",
        "secret",
        "REGISTER",
        "sip:other.org",
        "c",
        1,
    );
    assert_eq!(www(&mut auth, &register_with(&value), 1, now), forbidden());
    // Spaces around the uri do not matter.
    let value = answer(&challenge, "alice", "secret", 1)
        .replace(&format!("uri=\"{URI}\""), &format!("uri=\" {URI} \""));
    let value = value.replace(
        &answer(&challenge, "alice", "secret", 1)
            .split("response=\"")
            .nth(1)
            .unwrap()[..32],
        &sipcore::digest::response(
            Algorithm::Md5,
            &Algorithm::Md5.ha1("alice", REALM, "secret"),
            &challenge.nonce,
            Some(1),
            Some("0a4f113b"),
            Some("auth"),
            "REGISTER",
            &format!(" {URI} "),
        ),
    );
    assert_eq!(
        www(&mut auth, &register_with(&value), 1, now),
        authenticated("alice")
    );
    assert_eq!(auth.failures_total(), 1);
}

#[test]
fn an_algorithm_not_offered_is_refused() {
    let mut auth = authenticator(&[Algorithm::Sha256]);
    let now = Instant::now();
    // Right password, but MD5 when only SHA-256 is offered (a downgrade).
    let value = answer(&md5_challenge(NOW_S), "alice", "secret", 1);
    assert_eq!(www(&mut auth, &register_with(&value), 1, now), forbidden());
    assert_eq!(auth.failures_total(), 1);
}

#[test]
fn failures_lock_out_the_source_and_user_only_for_the_ban() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let t0 = Instant::now();
    let challenge = md5_challenge(NOW_S);
    let guess = register_with(&answer(&challenge, "alice", "guess", 1));
    for _ in 0..3 {
        assert_eq!(www(&mut auth, &guess, 1, t0), forbidden());
    }
    // Locked out: even the right password is dropped, unanswered.
    let right = register_with(&answer(&challenge, "alice", "secret", 1));
    assert_eq!(www(&mut auth, &right, 1, t0), AuthOutcome::Ignored);
    assert_eq!(auth.ignored_total(), 1);
    assert_eq!(auth.failures_total(), 3);
    // Bob behind the same NAT address, and alice from elsewhere, are fine.
    let bob = register_with(&answer(&challenge, "bob", "hunter2", 1));
    assert_eq!(www(&mut auth, &bob, 1, t0), authenticated("bob"));
    let elsewhere = register_with(&answer(&challenge, "alice", "secret", 2));
    assert_eq!(www(&mut auth, &elsewhere, 2, t0), authenticated("alice"));
    // After the ban, alice at ip(1) is heard again.
    let later = t0 + Duration::from_secs(600);
    let fresh = md5_challenge(NOW_S + 600);
    let right = register_with(&answer(&fresh, "alice", "secret", 1));
    assert_eq!(
        auth.check(&right, AuthKind::Www, ip(1), later, NOW_S + 600),
        authenticated("alice")
    );
}

#[test]
fn a_success_clears_earlier_failures() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let t0 = Instant::now();
    let challenge = md5_challenge(NOW_S);
    let guess = register_with(&answer(&challenge, "alice", "guess", 1));
    for nc in 1..=2 {
        assert_eq!(www(&mut auth, &guess, 1, t0), forbidden());
        let right = register_with(&answer(&challenge, "alice", "secret", nc));
        assert_eq!(www(&mut auth, &right, 1, t0), authenticated("alice"));
    }
    // Two more failures stay under the limit of three.
    for _ in 0..2 {
        assert_eq!(www(&mut auth, &guess, 1, t0), forbidden());
    }
    let right = register_with(&answer(&challenge, "alice", "secret", 3));
    assert_eq!(www(&mut auth, &right, 1, t0), authenticated("alice"));
}

#[test]
fn reloaded_credentials_and_settings_take_effect() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = md5_challenge(NOW_S);
    auth.set_credentials(Credentials::default());
    let right = register_with(&answer(&challenge, "alice", "secret", 1));
    assert_eq!(www(&mut auth, &right, 1, now), forbidden());
    auth.set_credentials(users());
    assert_eq!(www(&mut auth, &right, 1, now), authenticated("alice"));
    auth.set_settings(settings(&[Algorithm::Sha512_256]));
    let outcome = www(&mut auth, &request("REGISTER", URI, &[]), 1, now);
    let offered = challenges(&outcome, "WWW-Authenticate", 401);
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].algorithm, Algorithm::Sha512_256);
    // An empty list falls back to the default rather than offer nothing.
    auth.set_settings(settings(&[]));
    let outcome = www(&mut auth, &request("REGISTER", URI, &[]), 1, now);
    assert_eq!(
        challenges(&outcome, "WWW-Authenticate", 401)
            .iter()
            .map(|c| c.algorithm)
            .collect::<Vec<_>>(),
        DEFAULT_ALGORITHMS
    );
}

#[test]
fn hostile_headers_get_a_challenge_and_cost_little() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    for header in [
        "Authorization: Digest".to_string(),
        format!("Authorization: Digest username=\"{}\"", "a".repeat(5000)),
        "Authorization: Digest username=\"unterminated".to_string(),
        "Authorization: Digest username=\"u\", realm=\"example.org\", nonce=\"n\", uri=\"sip:example.org\", response=\"r\", qop=auth".to_string(),
    ] {
        let outcome = www(&mut auth, &request("REGISTER", URI, &[header]), 1, now);
        assert!(matches!(outcome, AuthOutcome::Challenge { .. }), "{outcome:?}");
    }
    assert_eq!(auth.failures_total(), 0);
}

#[test]
fn two_phones_challenged_in_one_second_both_authenticate() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let empty = request("REGISTER", URI, &[]);
    let for_alice = www(&mut auth, &empty, 1, now);
    let for_bob = www(&mut auth, &empty, 2, now);
    let alice = answer(
        &challenges(&for_alice, "WWW-Authenticate", 401)[0],
        "alice",
        "secret",
        1,
    );
    let bob = answer(
        &challenges(&for_bob, "WWW-Authenticate", 401)[0],
        "bob",
        "hunter2",
        1,
    );
    assert_eq!(
        www(&mut auth, &register_with(&alice), 1, now),
        authenticated("alice")
    );
    assert_eq!(
        www(&mut auth, &register_with(&bob), 2, now),
        authenticated("bob"),
        "bob's nc=1 is not a replay of alice's"
    );
}

#[test]
fn a_digest_uri_of_the_servers_address_is_taken_as_sipp_sends_it() {
    let mut auth = authenticator(&[Algorithm::Md5]);
    let now = Instant::now();
    let challenge = md5_challenge(NOW_S);
    // SIPp 3.6.1: uri="sip:SERVER-IP:PORT" for a REGISTER to sip:example.org.
    let value = authorization(
        &challenge,
        "alice",
        "secret",
        "REGISTER",
        "sip:127.0.0.1:5060",
        "c",
        1,
    );
    assert!(matches!(
        www(&mut auth, &register_with(&value), 1, now),
        AuthOutcome::Authenticated { .. }
    ));
}
mod real_clients;
