//! Dual registration end to end on loopback: the central registrar is a
//! second `tandem` (registrar on, realm `centre.test`, on 127.0.0.5); the
//! branch is a `tandem` (127.0.0.4) with `[registrar.upstream]` and a
//! `[[wan]]` whose evidence is the centre itself (a probe host); the
//! phones are SIPp (`register_digest.xml`) on 127.0.0.3; the carrier
//! calling the centre is SIPp on 127.0.0.2. What is proved:
//!
//! 1. a phone registers once to the branch → the centre holds the AOR
//!    bound to the branch (Contact = Tandem); a call to the centre for
//!    that user reaches the phone through the branch and is answered; the
//!    phone unregisters → the branch removes the AOR at the centre;
//! 2. the WAN forced down on the branch → nothing is sent upstream, also
//!    for phones registering meanwhile; back up → every AOR is renewed,
//!    paced over `renew_window_s` (never more than the window allows at
//!    any moment), and the phones never re-registered.
//!
//! Every process is killed when its handle drops; every wait has a
//! deadline.

use std::path::PathBuf;
use std::time::Duration;

use sipcore::digest::Algorithm;
use testkit::{wait_for, Sipp, SippProcess, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const DEADLINE: Duration = Duration::from_secs(15);
const BRANCH: &str = "branch.test";
const CENTRE: &str = "centre.test";
const PHONE_IP: &str = "127.0.0.3";
const CARRIER_IP: &str = "127.0.0.2";
const BRANCH_IP: [u8; 4] = [127, 0, 0, 4];
const CENTRE_IP: [u8; 4] = [127, 0, 0, 5];

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// Users `user0..userN` (password `pwN`), and alice and bob of
/// `register_users.csv`.
fn users(n: usize) -> Vec<(String, String)> {
    let mut all = vec![
        ("alice".to_owned(), "alicepw".to_owned()),
        ("bob".to_owned(), "bobpw".to_owned()),
    ];
    all.extend((0..n).map(|i| (format!("user{i}"), format!("pw{i}"))));
    all
}

/// A credentials file (`user:realm:MD5:HA1` lines, as `tandem passwd`
/// writes them) of `users` in each of `realms`.
fn credentials(users: &[(String, String)], realms: &[&str]) -> String {
    let mut text = String::new();
    for realm in realms {
        for (user, password) in users {
            let ha1 = Algorithm::Md5.ha1(user, realm, password);
            text += &format!("{user}:{realm}:MD5:{ha1}\n");
        }
    }
    text
}

/// A SIPp UAS as the pool member every Tandem config needs.
async fn media_server() -> SippProcess {
    let mut p = Sipp::builtin("uas", None).arg("-aa").spawn();
    p.wait_ready(Duration::from_secs(5)).await;
    p
}

/// The central registrar: its users by location; the carrier a trunk.
async fn centre(media: &SippProcess, users: &[(String, String)]) -> Tandem {
    let config = TandemConfig::new([("ms1", media.addr())])
        .listen_ip(CENTRE_IP.into())
        .trunk_networks([format!("{CARRIER_IP}/32")])
        .file("credentials", &credentials(users, &[CENTRE]), 0o600)
        .extra_toml(&format!(
            "[registrar]\ndomains = [\"{CENTRE}\"]\ncredentials_file = \"credentials\"\nmin_expires = 1\n\n\
             [[rule]]\nname = \"phones\"\nruri_user_regex = \"^(alice|bob|user[0-9]+)$\"\nlocation = true\n"
        ));
    Tandem::start(TANDEM, config).await
}

/// The branch: registrar for its phones, dual registration with the
/// centre across the WAN `dc` (judged by OPTIONS to the centre); the
/// centre is its trunk.
async fn branch(
    media: &SippProcess,
    centre: &Tandem,
    users: &[(String, String)],
    renew_window_s: u64,
) -> Tandem {
    let c = centre.sip_addr();
    let config = TandemConfig::new([("ms1", media.addr())])
        .listen_ip(BRANCH_IP.into())
        .trunk_networks([format!("{}/32", c.ip())])
        .file("credentials", &credentials(users, &[BRANCH, CENTRE]), 0o600)
        .extra_toml(&format!(
            "[registrar]\ndomains = [\"{BRANCH}\"]\ncredentials_file = \"credentials\"\nmin_expires = 1\n\n\
             [registrar.upstream]\nregistrar = \"{c}\"\nrealm = \"{CENTRE}\"\ndomain = \"{CENTRE}\"\n\
             expires_s = 600\nrenew_window_s = {renew_window_s}\nwan = \"dc\"\n\n\
             [[wan]]\nname = \"dc\"\nprobe_hosts = [\"{c}\"]\n\n\
             [[rule]]\nname = \"phones\"\nruri_user_regex = \"^(alice|bob|user[0-9]+)$\"\nlocation = true\n"
        ));
    Tandem::start(TANDEM, config).await
}

/// `register_digest.xml` from PHONE_IP to the branch, users from `csv`.
fn phones(branch: &Tandem, csv: &std::path::Path) -> Sipp {
    Sipp::scenario_file(&scenario("register_digest.xml"), Some(branch.sip_addr()))
        .local_ip(PHONE_IP)
        .args(["-inf", &csv.display().to_string()])
        .args(["-key", "domain", BRANCH, "-key", "expires", "300"])
}

#[tokio::test]
async fn a_phone_registered_at_the_branch_is_reached_through_the_centre() {
    let all = users(0);
    let media = media_server().await;
    let centre = centre(&media, &all).await;
    let branch = branch(&media, &centre, &all, 5).await;
    // alice registers once (SIPp answers calls to her meanwhile) and
    // unregisters after 8 s.
    let mut alice = phones(&branch, &scenario("register_users.csv"))
        .args(["-set", "unregister", "yes", "-d", "8000"])
        .args(["-oocsn", "uas", "-rtp_echo", "-m", "1"])
        .spawn();
    alice.wait_count("_200_Recv", 1, DEADLINE).await;

    // The centre holds alice@centre.test bound to the branch.
    let contact = format!("sip:alice@{}", branch.sip_addr());
    let listed = wait_for("alice at the centre", DEADLINE, || async {
        let listed = centre.registrations("alice@centre.test").await;
        if listed.contains(&contact) {
            Ok(listed)
        } else {
            Err(format!("{listed}\n{}", branch.log_tail(20)))
        }
    })
    .await;
    assert!(
        listed.contains(&branch.sip_addr().ip().to_string()),
        "{listed}"
    );
    let at_branch = branch.registrations("alice@branch.test").await;
    assert!(
        at_branch.contains("\"state\": \"registered\""),
        "{at_branch}"
    );

    // The carrier calls alice at the centre: through the branch to the
    // phone, answered.
    let call = Sipp::builtin("uac", Some(centre.sip_addr()))
        .local_ip(CARRIER_IP)
        .args(["-s", "alice", "-m", "1", "-d", "500"])
        .run(DEADLINE)
        .await;
    assert_eq!(
        call.successful,
        1,
        "{}\n{}\n{}",
        call.log,
        centre.log_tail(20),
        branch.log_tail(20)
    );
    let cdrs = branch.wait_cdrs(1, DEADLINE).await;
    assert!(
        cdrs[0].get("servers").contains("phone:alice@branch.test"),
        "{:?}",
        cdrs[0]
    );

    // alice unregisters: the branch removes her at the centre.
    let done = alice.wait_exit(DEADLINE).await;
    assert_eq!(done.exit_code, Some(0), "{}", done.log);
    wait_for("alice gone from the centre", DEADLINE, || async {
        let listed = centre.registrations("alice@centre.test").await;
        if listed.contains(&contact) {
            Err(listed)
        } else {
            Ok(())
        }
    })
    .await;
    let m = branch.metrics().await;
    assert_eq!(
        m.get("tandem_upstream_register_total", &[("result", "removed")]),
        1.0
    );
}

/// REGISTERs the centre received (challenged ones included).
async fn centre_registers(centre: &Tandem) -> f64 {
    centre.metrics().await.get(
        "tandem_sip_requests_total",
        &[("direction", "in"), ("method", "REGISTER")],
    )
}

/// REGISTERs the centre accepted.
async fn centre_accepted(centre: &Tandem) -> f64 {
    centre
        .metrics()
        .await
        .get("tandem_register_total", &[("result", "ok")])
}

#[tokio::test]
async fn with_the_wan_down_nothing_goes_upstream_and_renewals_are_paced_when_it_returns() {
    const N: usize = 20;
    const WINDOW_S: u64 = 5;
    let all = users(N);
    let media = media_server().await;
    let centre = centre(&media, &all).await;
    let branch = branch(&media, &centre, &all, WINDOW_S).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = |range: std::ops::Range<usize>, name: &str| {
        let path = dir.path().join(name);
        let mut text = String::from("SEQUENTIAL\n");
        for i in range {
            text += &format!("user{i};pw{i};[authentication username=user{i} password=pw{i}]\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    };

    // Half the phones register with the WAN up: at the centre at once.
    let first = phones(&branch, &csv(0..N / 2, "first.csv"))
        .args(["-m", &(N / 2).to_string()])
        .run(DEADLINE)
        .await;
    assert_eq!(first.successful, N as u64 / 2, "{}", first.log);
    branch
        .wait_metric(
            "tandem_upstream_registrations",
            &[("state", "registered")],
            (N / 2) as f64,
            DEADLINE,
        )
        .await;

    // The WAN forced down; the other half register at the branch.
    let forced = branch
        .admin_request_with_token("POST", "/wan/dc/down")
        .await
        .unwrap();
    assert_eq!(forced.status, 200, "{}", forced.body);
    let before = centre_registers(&centre).await;
    let second = phones(&branch, &csv(N / 2..N, "second.csv"))
        .args(["-m", &(N / 2).to_string()])
        .run(DEADLINE)
        .await;
    assert_eq!(second.successful, N as u64 / 2, "{}", second.log);
    // Nothing crosses the dead link (a REGISTER would be sent at once for
    // a new phone with the WAN up).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        centre_registers(&centre).await,
        before,
        "{}",
        branch.log_tail(20)
    );
    let listed = centre
        .registrations(&format!("user{}@centre.test", N - 1))
        .await;
    assert!(!listed.contains("sip:user"), "{listed}");

    // Back up: every AOR renewed, paced over the window.
    let accepted = centre_accepted(&centre).await;
    let back = tokio::time::Instant::now();
    let auto = branch
        .admin_request_with_token("POST", "/wan/dc/auto")
        .await
        .unwrap();
    assert_eq!(auto.status, 200, "{}", auto.body);
    // At most ceil(N / window) a second: renewal i goes out at
    // i × window / N after the WAN is back, so by `t` seconds no more
    // than t × N / window + 1 (a reading is older than the time taken
    // after it, so the bound holds on a slow machine too).
    let per_second = (N as f64 / WINDOW_S as f64).ceil();
    let mut readings = Vec::new();
    let until = back + DEADLINE;
    loop {
        let renewed = centre_accepted(&centre).await - accepted;
        let t = back.elapsed().as_secs_f64();
        readings.push((t, renewed));
        assert!(
            renewed <= per_second * t + 2.0,
            "{renewed} renewals {t:.2} s after the WAN returned: a burst ({readings:?})"
        );
        if renewed >= N as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "renewals not done: {readings:?}\n{}",
            branch.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rate, for the record (`--nocapture`).
    eprintln!("renewals accepted by the centre, (s after the WAN returned, count): {readings:?}");
    assert_eq!(
        centre_accepted(&centre).await - accepted,
        N as f64,
        "each AOR renewed once"
    );
    let listed = centre
        .registrations(&format!("user{}@centre.test", N - 1))
        .await;
    assert!(listed.contains(&format!("sip:user{}@", N - 1)), "{listed}");
    // The phones never registered again: one accepted REGISTER each.
    let m = branch.metrics().await;
    assert_eq!(
        m.get("tandem_register_total", &[("result", "ok")]),
        N as f64
    );
    assert_eq!(
        m.get("tandem_upstream_registrations", &[("state", "registered")]),
        N as f64
    );
}
