// Tests may panic: a failed unwrap or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::config::{GroupConfig, HealthConfig, MemberConfig, Probe, Strategy};

fn group(members: &[(&str, u32, MemberTransport)]) -> GroupConfig {
    GroupConfig {
        name: "pbx".into(),
        strategy: Strategy::Sequential,
        probe: Probe::Options,
        resume: false,
        health: HealthConfig::default(),
        members: members
            .iter()
            .enumerate()
            .map(|(i, &(name, priority, transport))| MemberConfig {
                name: name.into(),
                address: format!("10.0.0.{}:5060", i + 1).parse().unwrap(),
                transport,
                weight: 1,
                priority,
            })
            .collect(),
        dns_members: Vec::new(),
    }
}

#[test]
fn redirect_contacts_are_up_members_best_priority_first() {
    use MemberTransport::{Tcp, Udp};
    let mut pool = Pool::from_group(&group(&[
        ("c", 5, Udp),
        ("a", 1, Tcp),
        ("b", 1, Udp),
        ("d", 9, Udp),
    ]));
    let values: Vec<String> = redirect_contacts(&pool, "4930123")
        .iter()
        .map(RedirectContact::header_value)
        .collect();
    assert_eq!(
        values,
        [
            "<sip:4930123@10.0.0.2:5060;transport=tcp>;q=1.000",
            "<sip:4930123@10.0.0.3:5060>;q=1.000",
            "<sip:4930123@10.0.0.1:5060>;q=0.550",
            "<sip:4930123@10.0.0.4:5060>;q=0.100",
        ]
    );
    pool.force_down(1);
    let contacts = redirect_contacts(&pool, "");
    assert_eq!(
        contacts.iter().map(|c| c.member).collect::<Vec<_>>(),
        [2, 0, 3],
        "down members are left out"
    );
    assert_eq!(contacts[0].uri, "sip:10.0.0.3:5060");
    // A drained member is offered no new call either.
    pool.members[3].draining = true;
    let contacts = redirect_contacts(&pool, "");
    assert_eq!(
        contacts.iter().map(|c| c.member).collect::<Vec<_>>(),
        [2, 0],
        "drained members are left out"
    );
}

#[test]
fn one_priority_level_is_q_one() {
    let pool = Pool::from_group(&group(&[("a", 3, MemberTransport::Udp)]));
    assert_eq!(redirect_contacts(&pool, "1")[0].q_milli, 1000);
}

#[test]
fn dry_run_reports_rule_action_uri_and_member() {
    use std::path::Path;
    let text = include_str!("../../../deploy/tandem.example.toml").to_owned()
        + r#"
[[group]]
name = "pbx"
strategy = "hash-from-user"
[[group.member]]
name = "pbx1"
address = "10.1.0.1:5060"
[[group.member]]
name = "pbx2"
address = "10.1.0.2:5060"
transport = "tcp"

[[rule]]
name = "berlin"
ruri_user_prefix = "+4930"
strip = 3
prefix = "0"
group = "pbx"
[[rule]]
name = "redirect-9"
ruri_user_prefix = "9"
redirect = "pbx"
"#;
    let config = crate::config::Config::parse(&text, Path::new("t.toml")).unwrap();
    let router = Router::compile(&config).unwrap();
    let run = |to: &str, from: &str, from_user: &str| {
        dry_run(
            &config,
            &router,
            &DryRun {
                from: from.parse().unwrap(),
                to,
                from_user,
                headers: &[],
                call_id: "abc",
                minute_of_day: 600,
                wans_down: Vec::new(),
            },
        )
    };
    let report = run("sip:+4930123@x;user=phone", "127.0.0.5", "alice").unwrap();
    assert!(
        report.contains("rule:        rule[0] \"berlin\""),
        "{report}"
    );
    assert!(
        report.contains("request-uri: sip:030123@x;user=phone"),
        "{report}"
    );
    assert!(report.contains("(hash-from-user)"), "{report}");
    // hash-from-user: the same From user, the same member.
    let member = |r: &str| {
        r.lines()
            .find(|l| l.starts_with("member:"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        member(&report),
        member(&run("sip:+4930999@x", "127.0.0.5", "alice").unwrap())
    );
    let report = run("sip:912@x", "127.0.0.5", "alice").unwrap();
    assert!(report.contains("redirect (302)"), "{report}");
    assert!(
        report.contains("contact:     <sip:912@10.1.0.2:5060;transport=tcp>;q=1.000"),
        "{report}"
    );
    let report = run("sip:555@x", "127.0.0.5", "alice").unwrap();
    assert!(
        report.contains("no rule matches: the call would be refused with 404 Not Found"),
        "{report}"
    );
    let report = run("sip:555@x", "192.0.2.1", "alice").unwrap();
    assert!(report.contains("is no [[trunk]]"), "{report}");
    assert!(run("tel:+4930", "127.0.0.5", "").is_err());
    assert!(run("not a uri", "127.0.0.5", "").is_err());
}

#[test]
fn with_user_keeps_the_rest_of_the_uri() {
    let uri = sipcore::message::Uri::parse("sips:old:pw@host:5061;a=b").unwrap();
    assert_eq!(dry_run::with_user(&uri, "new"), "sips:new:pw@host:5061;a=b");
    assert_eq!(dry_run::with_user(&uri, ""), "sips:host:5061;a=b");
    let bare = sipcore::message::Uri::parse("sip:host").unwrap();
    assert_eq!(dry_run::with_user(&bare, "100"), "sip:100@host");
}

#[test]
fn dry_run_says_dns_members_are_not_resolved_by_it() {
    let text = r#"
[sip]
listen = ["127.0.0.1:5060"]
[media]
ip = "127.0.0.1"
port_min = 20000
port_max = 20100
[[trunk]]
name = "t"
networks = ["127.0.0.0/8"]
[pool]
[[pool.member]]
name = "ms1"
address = "127.0.0.1:5070"
[[group]]
name = "pbx"
[[group.dns]]
srv = "_sip._udp.pbx.example.net"
[[rule]]
name = "to-pbx"
ruri_user = "1"
group = "pbx"
[[rule]]
name = "rest"
group = "media"
"#;
    let config = crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
    let router = Router::compile(&config).unwrap();
    let run = |to: &str| {
        dry_run(
            &config,
            &router,
            &DryRun {
                from: "127.0.0.1".parse().unwrap(),
                to,
                from_user: "",
                headers: &[],
                call_id: "abc",
                minute_of_day: 600,
                wans_down: Vec::new(),
            },
        )
        .unwrap()
    };
    let report = run("sip:1@x");
    assert!(report.contains("member:      none\n"), "{report}");
    assert!(
        report.contains("dns:         1 [[group.dns]] entries, not resolved here"),
        "{report}"
    );
    assert!(report.contains("tandem resolve --group pbx"), "{report}");
    let report = run("sip:2@x");
    assert!(
        !report.contains("dns:"),
        "[pool] has no DNS members: {report}"
    );
}

/// Not a test: the cost of one routing decision with 50 compiled rules
/// (prefixes and regexes, the match at the 50th) beside the implicit
/// default rule, printed. proxy is a binary crate, so criterion cannot
/// reach this module; BENCHMARKS.md has the figures and the command:
/// `cargo test --release -p proxy --bins fifty_rules -- --ignored --nocapture`.
#[test]
#[ignore]
fn fifty_rules_cost_per_decision() {
    let mut rules = String::new();
    for i in 0..49 {
        if i % 2 == 1 {
            rules += &format!(
                "[[rule]]\nname = \"p{i}\"\nruri_user_prefix = \"9{i:03}\"\nreject = {{ code = 403, reason = \"no\" }}\n"
            );
        } else {
            rules += &format!(
                "[[rule]]\nname = \"r{i}\"\nruri_user_regex = \"^8{i}[0-9]+x$\"\nreject = {{ code = 403, reason = \"no\" }}\n"
            );
        }
    }
    rules += "[[rule]]\nname = \"all\"\ngroup = \"media\"\n";
    let example = include_str!("../../../deploy/tandem.example.toml");
    let time = |extra: &str| {
        let config = crate::config::Config::parse(
            &format!("{example}\n{extra}"),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let router = Router::compile(&config).unwrap();
        let view = RequestView {
            source: "carrier",
            ruri_user: "service",
            ruri_host: "127.0.0.1",
            from_user: "sipp",
            headers: &[],
            minute_of_day: 600,
            wans_down: &[],
        };
        let n: u32 = 500_000;
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(router.route(std::hint::black_box(&view)));
            }
            best = best.min(t.elapsed() / n);
        }
        best
    };
    eprintln!(
        "one routing decision: default rule {:?}, 50 rules (match at the 50th) {:?}",
        time(""),
        time(&rules)
    );
}
