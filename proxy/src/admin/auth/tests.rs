use super::*;

const LOOPBACK_WITH_TOKEN: Policy = Policy {
    loopback: true,
    admin_token: true,
    metrics_token: false,
};
const NETWORK_WITH_TOKEN: Policy = Policy {
    loopback: false,
    admin_token: true,
    metrics_token: false,
};
const LOOPBACK_NO_TOKEN: Policy = Policy {
    loopback: true,
    admin_token: false,
    metrics_token: false,
};

use Credential::{Admin, Metrics, Missing, Wrong};
use Decision::{Allow, NoToken, Unauthorized};

#[test]
fn every_post_needs_the_admin_token() {
    for path in [
        "/switchover",
        "/notify/backup",
        "/notify/master",
        "/nowhere",
    ] {
        for policy in [LOOPBACK_WITH_TOKEN, NETWORK_WITH_TOKEN] {
            assert_eq!(decide(policy, &Method::POST, path, Missing), Unauthorized);
            assert_eq!(decide(policy, &Method::POST, path, Wrong), Unauthorized);
            assert_eq!(decide(policy, &Method::POST, path, Admin), Allow);
        }
        assert_eq!(
            decide(LOOPBACK_NO_TOKEN, &Method::POST, path, Missing),
            NoToken,
            "no token configured: changes are refused, not open"
        );
    }
}

#[test]
fn a_get_needs_the_token_only_off_loopback() {
    for path in ["/status", "/metrics", "/", "/overview", "/events"] {
        assert_eq!(
            decide(LOOPBACK_WITH_TOKEN, &Method::GET, path, Missing),
            Allow
        );
        assert_eq!(
            decide(LOOPBACK_NO_TOKEN, &Method::GET, path, Missing),
            Allow
        );
        assert_eq!(
            decide(LOOPBACK_WITH_TOKEN, &Method::HEAD, path, Missing),
            Allow
        );
        assert_eq!(
            decide(NETWORK_WITH_TOKEN, &Method::GET, path, Missing),
            Unauthorized
        );
        assert_eq!(decide(NETWORK_WITH_TOKEN, &Method::GET, path, Admin), Allow);
    }
}

#[test]
fn a_wrong_token_is_refused_even_where_none_is_needed() {
    assert_eq!(
        decide(LOOPBACK_WITH_TOKEN, &Method::GET, "/status", Wrong),
        Unauthorized
    );
}

#[test]
fn the_metrics_token_opens_metrics_and_nothing_else() {
    let policy = Policy {
        metrics_token: true,
        ..NETWORK_WITH_TOKEN
    };
    assert_eq!(decide(policy, &Method::GET, "/metrics", Metrics), Allow);
    assert_eq!(decide(policy, &Method::GET, "/metrics", Admin), Allow);
    assert_eq!(
        decide(policy, &Method::GET, "/metrics", Missing),
        Unauthorized
    );
    assert_eq!(
        decide(policy, &Method::GET, "/status", Metrics),
        Unauthorized
    );
    assert_eq!(
        decide(policy, &Method::POST, "/switchover", Metrics),
        Unauthorized
    );
    // On loopback, /metrics with its own token needs it all the same.
    let local = Policy {
        loopback: true,
        ..policy
    };
    assert_eq!(
        decide(local, &Method::GET, "/metrics", Missing),
        Unauthorized
    );
    assert_eq!(decide(local, &Method::GET, "/status", Metrics), Allow);
}

#[test]
fn login_and_logout_check_for_themselves() {
    for policy in [NETWORK_WITH_TOKEN, LOOPBACK_NO_TOKEN] {
        assert_eq!(decide(policy, &Method::POST, "/login", Missing), Allow);
        assert_eq!(decide(policy, &Method::GET, "/login", Missing), Allow);
        assert_eq!(decide(policy, &Method::POST, "/logout", Missing), Allow);
    }
}

#[test]
fn sessions_expire_are_capped_and_close() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut s = Sessions::new(2, ttl);
    s.open("a".repeat(32), t0);
    assert!(s.is_live(&"a".repeat(32), t0));
    assert!(!s.is_live(&"b".repeat(32), t0));
    assert!(!s.is_live("", t0));
    assert!(!s.is_live(&"a".repeat(32), t0 + ttl), "expired");

    s.open("b".repeat(32), t0 + Duration::from_secs(1));
    s.open("c".repeat(32), t0 + Duration::from_secs(2));
    assert_eq!(s.len(), 2, "capped");
    let now = t0 + Duration::from_secs(3);
    assert!(!s.is_live(&"a".repeat(32), now), "the oldest made room");
    assert!(s.is_live(&"b".repeat(32), now));

    s.close(&"b".repeat(32));
    assert!(!s.is_live(&"b".repeat(32), now));
    assert!(s.is_live(&"c".repeat(32), now));

    // Expired sessions go at the next login.
    s.open("d".repeat(32), t0 + ttl * 3);
    assert_eq!(s.len(), 1);
}

fn auth() -> Auth {
    let config = AdminConfig {
        token: Some(AdminToken::for_tests("admin-token-0123456789")),
        metrics_token: Some(AdminToken::for_tests("metrics-token-0123456789")),
        listen: Some("127.0.0.1:9090".parse().unwrap()),
        ..AdminConfig::default()
    };
    Auth::new(&config)
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.clone(), v.parse().unwrap());
    }
    h
}

#[test]
fn credentials_come_from_the_bearer_header_or_a_live_session_cookie() {
    let auth = auth();
    let now = Instant::now();
    let cred = |pairs: &[(header::HeaderName, &str)]| auth.credential(&headers(pairs), now);
    assert_eq!(cred(&[]), Missing);
    assert_eq!(
        cred(&[(header::AUTHORIZATION, "Bearer admin-token-0123456789")]),
        Admin
    );
    assert_eq!(
        cred(&[(header::AUTHORIZATION, "bearer metrics-token-0123456789")]),
        Metrics
    );
    assert_eq!(
        cred(&[(header::AUTHORIZATION, "Bearer admin-token-012345678")]),
        Wrong
    );
    assert_eq!(
        cred(&[(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")]),
        Wrong
    );
    assert_eq!(
        cred(&[(
            header::COOKIE,
            "tandem_session=00112233445566778899aabbccddeeff"
        )]),
        Missing,
        "an unknown session is no credential"
    );

    let Login::Opened(cookie) = auth.login("admin-token-0123456789") else {
        panic!("the admin token opens a session");
    };
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    let id = pair.strip_prefix("tandem_session=").unwrap();
    assert_eq!(id.len(), 32);
    let with_cookie = format!("theme=dark; {pair}");
    assert_eq!(cred(&[(header::COOKIE, &with_cookie)]), Admin);

    auth.logout(&headers(&[(header::COOKIE, pair)]));
    assert_eq!(cred(&[(header::COOKIE, &with_cookie)]), Missing);

    assert!(matches!(
        auth.login("metrics-token-0123456789"),
        Login::WrongToken
    ));
    assert!(matches!(auth.login(""), Login::WrongToken));
}
