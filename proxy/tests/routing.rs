//! Routing end to end: the real `tandem` binary with `[[group]]` and
//! `[[rule]]` tables, between a SIPp "trunk" and SIPp destinations on
//! 127.0.0.1. What is proved, one test each:
//!
//! 1. rules pick the group by the called number's prefix, and each
//!    group's member gets exactly the calls of its rule (none leak to
//!    `[pool]`);
//! 2. the Request-URI user is rewritten (`replace` with a capture, and
//!    `strip` + `prefix`) as leg B's Request-URI shows it at the member;
//! 3. `redirect` answers 302 with the group's members as Contacts (best
//!    priority first, q from priority), sends no leg B, and a caller that
//!    follows the first Contact reaches that member;
//! 4. a `probe = "off"` group sends no OPTIONS; when a member dies, calls
//!    fail over to the next member before the answer, and after
//!    `failures_to_down` failed calls the dead member is marked down and
//!    skipped;
//! 5. a `reject` rule answers with its own code and reason, and no
//!    destination sees the call;
//! 6. with rules, a call no rule matches gets 404 and no leg B;
//! 7. SIGHUP with 50 calls up: new calls follow the new rule at once, the
//!    50 finish on their media server; a bad file is refused and the
//!    rules in force stay;
//! 8. a group named by DNS SRV (dnsmasq on 127.0.0.53 serving two
//!    priorities): calls go to the lower priority's member, and when it
//!    dies, to the next.
//!
//! As in `call_path.rs`, every test starts its own Tandem on fresh ports,
//! every process is killed when its handle drops, every wait has a
//! deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use testkit::{wait_for, Sipp, SippOutcome, SippProcess, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// A SIPp destination answering every INVITE (built-in `uas`), its
/// messages traced. `-aa` answers OPTIONS keepalives; without it an
/// OPTIONS would show up in the trace as an unexpected request.
async fn destination(answer_options: bool) -> SippProcess {
    let mut sipp = Sipp::builtin("uas", None).trace_messages();
    if answer_options {
        sipp = sipp.arg("-aa");
    }
    let mut p = sipp.spawn();
    p.wait_ready(SECS(5)).await;
    p
}

/// A trunk placing `calls` calls to `user` through Tandem with
/// `scenario_file`, one at a time, messages traced.
fn caller(tandem: &Tandem, scenario_file: &str, user: &str, calls: u32) -> Sipp {
    Sipp::scenario_file(&scenario(scenario_file), Some(tandem.sip_addr()))
        .args(["-s", user, "-m", &calls.to_string(), "-l", "1", "-d", "100"])
        .trace_messages()
}

/// A `[[group]]` table: `settings` are lines of the group (and may end
/// with a `[group.health]` table); members are (name, address,
/// priority).
fn group(name: &str, settings: &str, members: &[(&str, SocketAddr, u32)]) -> String {
    let mut t = format!("[[group]]\nname = \"{name}\"\n{settings}\n");
    for (member, addr, priority) in members {
        t += &format!(
            "[[group.member]]\nname = \"{member}\"\naddress = \"{addr}\"\npriority = {priority}\n\n"
        );
    }
    t
}

/// Tandem's configuration: `[pool]` (group `media`) is the one member
/// `ms0` at `pool_member` (still required with rules: it is a group too),
/// then `toml` (groups, rules).
fn config(pool_member: &SippProcess, toml: &str) -> TandemConfig {
    TandemConfig::new([("ms0", pool_member.addr())]).extra_toml(toml)
}

fn assert_all_succeeded(out: &SippOutcome, calls: u64, tandem: &Tandem) {
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), calls, 0),
        "expected {calls} successful calls\n{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
}

/// Waits until the destinations together received `total` INVITEs;
/// returns each one's count (read once more after the total is reached,
/// so that a late extra INVITE anywhere still shows).
async fn invites_per_destination(servers: &[&SippProcess], total: u64) -> Vec<u64> {
    let counts = || -> Vec<u64> {
        servers
            .iter()
            .map(|s| s.outcome().count("_INVITE_Recv"))
            .collect()
    };
    wait_for(
        &format!("{total} INVITEs over the destinations"),
        SECS(15),
        || async {
            let c = counts();
            if c.iter().sum::<u64>() >= total {
                Ok(())
            } else {
                let logs: Vec<String> = servers.iter().map(|s| s.outcome().log).collect();
                Err(format!("{c:?}\n{}", logs.join("\n")))
            }
        },
    )
    .await;
    counts()
}

/// The blocks of a SIPp `-trace_msg` log that SIPp received, each as its
/// message text (first line first).
fn received_messages(messages: &str) -> Vec<String> {
    messages
        .split("-----------------------------------------------")
        .filter_map(|block| {
            let mut lines = block.lines().skip(1);
            let kind = lines.next()?;
            if !kind.contains("message received") {
                return None;
            }
            let text: Vec<&str> = lines.map(str::trim).skip_while(|l| l.is_empty()).collect();
            Some(text.join("\n"))
        })
        .collect()
}

/// The Request-URIs of the `method` requests SIPp received, in order.
fn received_request_uris(messages: &str, method: &str) -> Vec<String> {
    received_messages(messages)
        .iter()
        .filter_map(|m| {
            let first = m.lines().next()?;
            let mut parts = first.split(' ');
            (parts.next()? == method).then(|| parts.next().unwrap_or("").to_owned())
        })
        .collect()
}

/// `sip:USER@HOST…` → (`USER`, `HOST…`).
fn split_uri(uri: &str) -> (&str, &str) {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    rest.split_once('@').unwrap_or(("", rest))
}

/// Asserts that every Request-URI in `uris` has user `user` and the
/// member's address as host and port (URI parameters allowed after it).
fn assert_request_uris(uris: &[String], user: &str, member: SocketAddr, count: usize) {
    assert_eq!(uris.len(), count, "INVITEs at {member}: {uris:?}");
    for uri in uris {
        let (u, host) = split_uri(uri);
        assert_eq!(u, user, "user of leg B's Request-URI {uri}");
        let addr = member.to_string();
        assert!(
            host == addr || host.starts_with(&format!("{addr};")),
            "leg B's Request-URI {uri} must address the member {addr}"
        );
    }
}

/// Leg B INVITEs Tandem sent (re-INVITEs included; retransmissions not).
async fn leg_b_invites(tandem: &Tandem) -> f64 {
    tandem.metrics().await.get(
        "tandem_sip_requests_total",
        &[("direction", "out"), ("method", "INVITE")],
    )
}

async fn wait_no_calls(tandem: &Tandem) {
    tandem
        .wait_metric("tandem_calls_active", &[], 0.0, SECS(10))
        .await;
}

// ---- 1. two groups chosen by the called number's prefix ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rules_send_each_call_to_its_group() {
    let pool = destination(true).await;
    let g1 = destination(true).await;
    let g2 = destination(true).await;
    let toml = group("g1", "", &[("g1-ms", g1.addr(), 0)])
        + &group("g2", "", &[("g2-ms", g2.addr(), 0)])
        + "[[rule]]\nname = \"ones\"\nruri_user_prefix = \"1\"\ngroup = \"g1\"\n\n\
           [[rule]]\nname = \"twos\"\nruri_user_prefix = \"2\"\ngroup = \"g2\"\n\n";
    let tandem = Tandem::start(TANDEM, config(&pool, &toml)).await;

    let out = caller(&tandem, "uac.xml", "1001", 3).run(SECS(30)).await;
    assert_all_succeeded(&out, 3, &tandem);
    let out = caller(&tandem, "uac.xml", "2002", 2).run(SECS(30)).await;
    assert_all_succeeded(&out, 2, &tandem);

    let counts = invites_per_destination(&[&g1, &g2, &pool], 5).await;
    assert_eq!(
        counts,
        vec![3, 2, 0],
        "INVITEs at g1, g2, [pool]\n{}",
        tandem.log_tail(30)
    );
    // Leg B's Request-URI: the called user at the member's address.
    let uris = received_request_uris(&g1.outcome().messages, "INVITE");
    assert_request_uris(&uris, "1001", g1.addr(), 3);
    let uris = received_request_uris(&g2.outcome().messages, "INVITE");
    assert_request_uris(&uris, "2002", g2.addr(), 2);
    for s in [&g1, &g2] {
        s.wait_count("_BYE_Recv", s.outcome().count("_INVITE_Recv"), SECS(10))
            .await;
    }
    wait_no_calls(&tandem).await;
}

// ---- 2. the Request-URI user rewritten, as leg B carries it ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_manipulation_shows_in_leg_b_request_uri() {
    let pool = destination(true).await;
    let ms = destination(true).await;
    // `00` + digits → `+` + digits (regex with a capture); a national
    // `0` number → `+49` + the rest (strip, then prefix).
    let toml = group("out", "", &[("out-ms", ms.addr(), 0)])
        + r#"[[rule]]
name = "international"
ruri_user_regex = "^00[1-9]"
replace = { regex = "^00(\\d+)$", with = "+${1}" }
group = "out"

[[rule]]
name = "national"
ruri_user_prefix = "0"
strip = 1
prefix = "+49"
group = "out"
"#;
    let tandem = Tandem::start(TANDEM, config(&pool, &toml)).await;

    let out = caller(&tandem, "uac.xml", "004930123", 1)
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    let out = caller(&tandem, "uac.xml", "0301234", 1).run(SECS(30)).await;
    assert_all_succeeded(&out, 1, &tandem);

    let counts = invites_per_destination(&[&ms, &pool], 2).await;
    assert_eq!(counts, vec![2, 0], "INVITEs at the member, [pool]");
    let uris = received_request_uris(&ms.outcome().messages, "INVITE");
    assert_eq!(uris.len(), 2, "{uris:?}");
    assert_request_uris(&uris[..1], "+4930123", ms.addr(), 1);
    assert_request_uris(&uris[1..], "+49301234", ms.addr(), 1);
    wait_no_calls(&tandem).await;
}

// ---- 3. redirect: 302 with the group's members, no leg B ----

/// The Contacts of the 302 the caller received: (URI, q), in order.
fn redirect_contacts(caller_messages: &str) -> Vec<(String, f64)> {
    let received = received_messages(caller_messages);
    let Some(moved) = received.iter().find(|m| m.starts_with("SIP/2.0 302 ")) else {
        panic!("no 302 received:\n{caller_messages}");
    };
    let mut contacts = Vec::new();
    for line in moved.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("Contact") || name.eq_ignore_ascii_case("m")) {
            continue;
        }
        for contact in value.split(',') {
            let uri = contact
                .split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(u, _)| u.to_owned())
                .unwrap_or_else(|| panic!("Contact without <…>: {line}"));
            let q = contact
                .split(';')
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or_else(|| panic!("Contact without a q value: {line}"));
            contacts.push((uri, q));
        }
    }
    contacts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_answers_302_with_the_group_and_the_caller_follows_it() {
    let pool = destination(true).await;
    let best = destination(true).await;
    let second = destination(true).await;
    // Listed worst first: the Contacts' order must come from priority.
    let toml = group(
        "g2",
        "",
        &[("g2-second", second.addr(), 2), ("g2-best", best.addr(), 1)],
    )
        + "[[rule]]\nname = \"moved\"\nruri_user_prefix = \"9\"\nstrip = 1\nredirect = \"g2\"\n\n";
    let tandem = Tandem::start(TANDEM, config(&pool, &toml)).await;

    let out = caller(&tandem, "redirect_uac.xml", "9555", 1)
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 1, &tandem);

    // The 302 names both members, rewritten user, best first.
    let contacts = redirect_contacts(&out.messages);
    let uris: Vec<&str> = contacts.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        uris,
        vec![
            format!("sip:555@{}", best.addr()),
            format!("sip:555@{}", second.addr())
        ],
        "Contacts of the 302: {contacts:?}"
    );
    let (q_best, q_second) = (contacts[0].1, contacts[1].1);
    assert!(
        q_best == 1.0 && q_second > 0.0 && q_second < q_best,
        "q values must follow priority: {contacts:?}"
    );

    // The caller reached the first Contact directly; the call ran to its
    // BYE there, and nothing reached the other member or [pool].
    best.wait_count("_BYE_Recv", 1, SECS(10)).await;
    let counts = invites_per_destination(&[&best, &second, &pool], 1).await;
    assert_eq!(counts, vec![1, 0, 0], "INVITEs at best, second, [pool]");
    let uris = received_request_uris(&best.outcome().messages, "INVITE");
    assert_request_uris(&uris, "555", best.addr(), 1);

    // Tandem sent no leg B and holds no call.
    assert_eq!(
        leg_b_invites(&tandem).await,
        0.0,
        "a redirect sends no INVITE\n{}",
        tandem.log_tail(30)
    );
    assert!(
        tandem.cdrs().iter().all(|c| c.servers().is_empty()),
        "no call was carried: {:#?}",
        tandem.cdrs().iter().map(|c| &c.line).collect::<Vec<_>>()
    );
    wait_no_calls(&tandem).await;
}

// ---- 4. probe = "off": failures of real calls mark a member down ----

/// The CDRs of the calls of the SIPp run with process id `pid`, by call
/// number (SIPp's Call-IDs are `N-PID@host`).
fn cdrs_of_run(tandem: &Tandem, pid: u32) -> Vec<testkit::Cdr> {
    let own = format!("{pid}@");
    let mut cdrs: Vec<(u64, testkit::Cdr)> = tandem
        .cdrs()
        .into_iter()
        .filter_map(|c| {
            let (n, rest) = c.get("a_call_id").split_once('-')?;
            if !rest.starts_with(&own) {
                return None;
            }
            Some((n.parse().ok()?, c))
        })
        .collect();
    cdrs.sort_by_key(|(n, _)| *n);
    cdrs.into_iter().map(|(_, c)| c).collect()
}

/// Runs `sipp` to its end and returns its outcome with its process id.
async fn run_with_pid(sipp: Sipp, deadline: Duration) -> (SippOutcome, u32) {
    let mut p = sipp.spawn();
    let pid = p.pid().expect("sipp's process id");
    (p.wait_exit(deadline).await, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_off_group_fails_over_and_marks_a_dead_member_down() {
    const FAILURES_TO_DOWN: usize = 2;
    let pool = destination(true).await;
    // No -aa: these never answer OPTIONS, as carriers that bill them.
    let mut c1 = destination(false).await;
    let c2 = destination(false).await;
    let toml = group(
        "carriers",
        &format!(
            "strategy = \"sequential\"\nprobe = \"off\"\nresume = false\n\
             [group.health]\nfailures_to_down = {FAILURES_TO_DOWN}\n"
        ),
        &[("c1", c1.addr(), 1), ("c2", c2.addr(), 2)],
    )
        + "[[rule]]\nname = \"carrier\"\nruri_user_prefix = \"5\"\ngroup = \"carriers\"\n\n";
    let tandem = Tandem::start(TANDEM, config(&pool, &toml).member_answer_timeout_ms(500)).await;

    // Both up: sequential sends every call to c1.
    let (out, _) = run_with_pid(caller(&tandem, "uac.xml", "5001", 2), SECS(30)).await;
    assert_all_succeeded(&out, 2, &tandem);
    let counts = invites_per_destination(&[&c1, &c2, &pool], 2).await;
    assert_eq!(counts, vec![2, 0, 0], "INVITEs at c1, c2, [pool]");
    c1.wait_count("_BYE_Recv", 2, SECS(10)).await;

    // c1 dies. Every call still succeeds: the first FAILURES_TO_DOWN try
    // c1, get no answer within 500 ms and go on to c2 before answering the
    // caller; then c1 is down and skipped.
    c1.kill().await;
    let calls = FAILURES_TO_DOWN + 2;
    let (out, pid) = run_with_pid(caller(&tandem, "uac.xml", "5002", calls as u32), SECS(60)).await;
    assert_all_succeeded(&out, calls as u64, &tandem);
    let on_c2 = c2.wait_count("_INVITE_Recv", calls as u64, SECS(10)).await;
    assert_eq!(on_c2.count("_INVITE_Recv"), calls as u64, "all on c2");
    tandem
        .wait_metric("tandem_media_server_up", &[("member", "c1")], 0.0, SECS(10))
        .await;

    wait_for("the CDRs of the calls after c1 died", SECS(10), || async {
        let cdrs = cdrs_of_run(&tandem, pid);
        if cdrs.len() >= calls {
            Ok(())
        } else {
            Err(format!("{} CDRs\n{}", cdrs.len(), tandem.log_tail(20)))
        }
    })
    .await;
    let tried: Vec<Vec<String>> = cdrs_of_run(&tandem, pid)
        .iter()
        .map(|c| c.servers())
        .collect();
    let mut expected = vec![vec!["c1".to_owned(), "c2".to_owned()]; FAILURES_TO_DOWN];
    expected.extend(vec![vec!["c2".to_owned()]; calls - FAILURES_TO_DOWN]);
    assert_eq!(
        tried,
        expected,
        "members tried per call after c1 died\n{}",
        tandem.log_tail(30)
    );

    // Nobody probed the live members: c2 was up throughout, c1 was up
    // until it died (a down member may be probed, but c1 was dead then).
    for (name, s) in [("c1", &c1), ("c2", &c2)] {
        let received = received_messages(&s.outcome().messages);
        let options: Vec<&String> = received
            .iter()
            .filter(|m| m.starts_with("OPTIONS "))
            .collect();
        assert!(
            options.is_empty(),
            "{name} (probe = \"off\") got OPTIONS: {options:#?}"
        );
    }
    assert_eq!(c2.outcome().failed, 0, "{}", c2.outcome().log);
    wait_no_calls(&tandem).await;
}

// ---- 5. a reject rule answers with its code and reason ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_rule_answers_its_code_and_no_destination_sees_the_call() {
    let pool = destination(true).await;
    let toml = r#"[[rule]]
name = "premium"
ruri_user_prefix = "0900"
reject = { code = 403, reason = "Premium numbers blocked" }

[[rule]]
name = "landline"
ruri_user_prefix = "0"
group = "media"
"#;
    let tandem = Tandem::start(TANDEM, config(&pool, toml)).await;

    let out = caller(&tandem, "reject_uac.xml", "0900123", 2)
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 2, &tandem);
    let finals: Vec<String> = received_messages(&out.messages)
        .iter()
        .filter_map(|m| m.lines().next().map(str::to_owned))
        .filter(|l| l.starts_with("SIP/2.0 ") && !l.starts_with("SIP/2.0 1"))
        .collect();
    assert_eq!(
        finals,
        vec!["SIP/2.0 403 Premium numbers blocked"; 2],
        "the rule's status line, not Tandem's own 403 Forbidden"
    );
    assert_eq!(leg_b_invites(&tandem).await, 0.0, "no leg B for a reject");

    // A number the reject rule does not match is still carried: the
    // refusal came from the rule, not from the source.
    let out = caller(&tandem, "uac.xml", "0301234", 1).run(SECS(30)).await;
    assert_all_succeeded(&out, 1, &tandem);
    let counts = invites_per_destination(&[&pool], 1).await;
    assert_eq!(counts, vec![1], "INVITEs at [pool]");
    let uris = received_request_uris(&pool.outcome().messages, "INVITE");
    assert_request_uris(&uris, "0301234", pool.addr(), 1);
    assert_eq!(leg_b_invites(&tandem).await, 1.0, "one leg B in all");
    wait_no_calls(&tandem).await;
}

// ---- 6. rules, none matches: 404 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_number_gets_404_and_no_leg_b() {
    let pool = destination(true).await;
    let toml = "[[rule]]\nname = \"ones\"\nruri_user_prefix = \"1\"\ngroup = \"media\"\n";
    let tandem = Tandem::start(TANDEM, config(&pool, toml)).await;

    let out = caller(&tandem, "not_found_uac.xml", "7000", 1)
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    assert_eq!(leg_b_invites(&tandem).await, 0.0, "no leg B without a rule");

    // The rule that does match still routes (the 404 is not a broken
    // config).
    let out = caller(&tandem, "uac.xml", "1000", 1).run(SECS(30)).await;
    assert_all_succeeded(&out, 1, &tandem);
    let counts = invites_per_destination(&[&pool], 1).await;
    assert_eq!(counts, vec![1], "INVITEs at [pool]: only the routed call");
    wait_no_calls(&tandem).await;
}

// ---- 7. SIGHUP: new rules for new calls, calls up keep their server ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_rules_for_new_calls_only() {
    let pool = destination(true).await;
    let g1 = destination(true).await;
    let g2 = destination(true).await;
    let groups =
        group("g1", "", &[("g1-ms", g1.addr(), 0)]) + &group("g2", "", &[("g2-ms", g2.addr(), 0)]);
    let rule = |to: &str| {
        format!("[[rule]]\nname = \"to-{to}\"\nruri_user_prefix = \"1\"\ngroup = \"{to}\"\n")
    };
    // Four relay ports per call: room for the 50 and the later ones.
    let first = config(&pool, &(groups.clone() + &rule("g1"))).media_ports(256);
    let tandem = Tandem::start(TANDEM, first).await;

    // 50 calls of 6 s each, all up before the reload.
    let held = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args([
            "-s", "1001", "-m", "50", "-r", "50", "-l", "50", "-d", "6000",
        ])
        .spawn();
    tandem
        .wait_metric("tandem_calls_active", &[], 50.0, SECS(10))
        .await;

    let rewrite = |toml: &str| {
        std::fs::write(
            tandem.config_path(),
            config(&pool, toml).render(
                tandem.sip_addr(),
                tandem.admin_addr(),
                tandem.media_ports(),
            ),
        )
        .expect("rewrite the configuration");
    };
    rewrite(&(groups.clone() + &rule("g2")));
    tandem.signal("HUP");
    tandem.wait_log("configuration reloaded", SECS(5)).await;
    let out = caller(&tandem, "uac.xml", "1002", 5).run(SECS(30)).await;
    assert_all_succeeded(&out, 5, &tandem);

    // A file that does not load changes nothing.
    rewrite(&(groups + "[[rule]]\nname = \"bad\"\ngroup = \"nowhere\"\n"));
    tandem.signal("HUP");
    tandem.wait_log("configuration not reloaded", SECS(5)).await;
    let out = caller(&tandem, "uac.xml", "1003", 2).run(SECS(30)).await;
    assert_all_succeeded(&out, 2, &tandem);

    let done = held.wait_stat("SuccessfulCall(C)", 50, SECS(30)).await;
    assert_eq!(
        (done.successful, done.failed),
        (50, 0),
        "every call up at the reload finishes\n{}",
        done.log
    );
    let counts = invites_per_destination(&[&g1, &g2, &pool], 57).await;
    assert_eq!(
        counts,
        [50, 7, 0],
        "g1: the 50 held calls; g2: the 7 after the reload"
    );
    wait_no_calls(&tandem).await;
}

// ---- 8. SRV: the lower priority first, the next when it is down ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_members_lower_priority_first_then_the_next() {
    let pool = destination(true).await;
    let mut first = destination(true).await;
    let second = destination(true).await;
    let (a, b) = (first.addr().port(), second.addr().port());
    let dns = testkit::dnsmasq::Dnsmasq::start(&[
        &format!("--srv-host=_sip._udp.pbx.tandem.test,a.tandem.test,{a},10,10"),
        &format!("--srv-host=_sip._udp.pbx.tandem.test,b.tandem.test,{b},20,10"),
        "--host-record=a.tandem.test,127.0.0.1",
        "--host-record=b.tandem.test,127.0.0.1",
    ]);
    let toml = format!(
        "[dns]\nservers = [\"{}:{}\"]\nmin_ttl_s = 1\n\n\
         [[group]]\nname = \"pbx\"\nstrategy = \"sequential\"\n\
         [group.health]\ninterval_ms = 300\ntimeout_ms = 200\nfailures_to_down = 2\n\
         [[group.dns]]\nsrv = \"_sip._udp.pbx.tandem.test\"\n\n\
         [[rule]]\nname = \"to-pbx\"\ngroup = \"pbx\"\n",
        testkit::dnsmasq::DNS_IP,
        dns.port
    );
    let tandem = Tandem::start(TANDEM, config(&pool, &toml)).await;
    wait_for("the SRV members", SECS(10), || async {
        if tandem.log().contains("group members resolved") {
            Ok(())
        } else {
            Err(format!("{}\n{}", tandem.log_tail(10), dns.log()))
        }
    })
    .await;

    let out = caller(&tandem, "uac.xml", "100", 3).run(SECS(30)).await;
    assert_all_succeeded(&out, 3, &tandem);
    assert_eq!(
        invites_per_destination(&[&first, &second, &pool], 3).await,
        [3, 0, 0],
        "priority 10 before priority 20"
    );

    first.kill().await;
    let member = format!("a.tandem.test:{a}");
    tandem
        .wait_metric(
            "tandem_media_server_up",
            &[("member", member.as_str())],
            0.0,
            SECS(10),
        )
        .await;
    let out = caller(&tandem, "uac.xml", "100", 3).run(SECS(30)).await;
    assert_all_succeeded(&out, 3, &tandem);
    assert_eq!(
        invites_per_destination(&[&second, &pool], 3).await,
        [3, 0],
        "priority 20 once priority 10 is down"
    );
    wait_no_calls(&tandem).await;
}
