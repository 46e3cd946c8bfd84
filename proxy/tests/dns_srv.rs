//! Destination-group members named by DNS, resolved against a real DNS
//! server: dnsmasq (Debian's dnsmasq-base, which `scripts/test` installs)
//! on 127.0.0.53 and a free port, serving NAPTR, SRV and A records for
//! `tandem.test` from its command line. Tandem resolves through its
//! `routing::dns` module, as `tandem resolve` shows it: the members in
//! order, how long they are valid, and the member a new call would go to
//! with some members down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::dnsmasq::{Dnsmasq, DNS_IP};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// `[dns]` keys for a test that does not look at TTLs.
const ANY_TTL: &str = "min_ttl_s = 1";

/// A config with the given `[dns]` keys and groups, resolving through
/// `dns`.
fn config(dir: &Path, dns: &Dnsmasq, dns_keys: &str, groups: &str) -> PathBuf {
    let text = format!(
        r#"
[sip]
listen = ["127.0.0.1:5060"]

[media]
ip = "127.0.0.1"
port_min = 20000
port_max = 20063

[pool]
[[pool.member]]
name = "ms1"
address = "127.0.0.1:5070"

[dns]
servers = ["{DNS_IP}:{port}"]
timeout_ms = 1000
{dns_keys}

{groups}
"#,
        port = dns.port
    );
    let path = dir.join("tandem.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `tandem resolve` with `args`, ended if it takes longer than 20 s.
fn resolve(config: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(TANDEM)
        .arg("resolve")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem resolve");
    let until = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait for tandem resolve").is_none() {
        if Instant::now() >= until {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap tandem resolve");
            panic!(
                "tandem resolve {args:?} took over 20 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("tandem resolve output")
}

/// Its standard output, failing the test when it failed.
fn resolved(config: &Path, args: &[&str], dns: &Dnsmasq) -> String {
    let out = resolve(config, args);
    assert!(
        out.status.success(),
        "tandem resolve {args:?}: {}\ndnsmasq: {}",
        String::from_utf8_lossy(&out.stderr),
        dns.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn member_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("member: "))
        .collect()
}

fn choice(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("choice: "))
        .and_then(|c| c.split(' ').next())
        .unwrap_or_else(|| panic!("no choice line in {out}"))
}

#[test]
fn srv_lower_priority_is_used_by_weight_and_the_next_when_its_members_are_down() {
    // Priority 10: ms1 (weight 40), ms2 (weight 60); priority 20: backup
    // (first by name and by weight, yet last: priority comes first).
    let dns = Dnsmasq::start(&[
        "--srv-host=_sip._udp.pbx.tandem.test,backup.tandem.test,5073,20,100",
        "--srv-host=_sip._udp.pbx.tandem.test,ms1.tandem.test,5071,10,40",
        "--srv-host=_sip._udp.pbx.tandem.test,ms2.tandem.test,5072,10,60",
        "--host-record=ms1.tandem.test,127.0.0.11",
        "--host-record=ms2.tandem.test,127.0.0.12",
        "--host-record=backup.tandem.test,127.0.0.13",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &dns,
        ANY_TTL,
        "[[group]]\nname = \"pbx\"\n[[group.dns]]\nsrv = \"_sip._udp.pbx.tandem.test\"\n",
    );
    let run = |args: &[&str]| resolved(&config, args, &dns);
    let (ms1, ms2, backup) = (
        "ms1.tandem.test:5071",
        "ms2.tandem.test:5072",
        "backup.tandem.test:5073",
    );

    let out = run(&["--group", "pbx", "--random", "0"]);
    // Lower priority first; within it the heavier first.
    assert_eq!(
        member_lines(&out),
        [
            "ms2.tandem.test:5072 127.0.0.12:5072 udp priority=10 weight=60",
            "ms1.tandem.test:5071 127.0.0.11:5071 udp priority=10 weight=40",
            "backup.tandem.test:5073 127.0.0.13:5073 udp priority=20 weight=100",
        ],
        "{out}"
    );
    // RFC 2782 within priority 10: running sums ms2 60, ms1 100 of
    // 0..=100, so 61 of 101 numbers go to ms2 and 40 to ms1.
    assert_eq!(choice(&out), ms2, "{out}");
    let out = run(&["--random", "60"]);
    assert_eq!(choice(&out), ms2, "{out}");
    let out = run(&["--random", "61"]);
    assert_eq!(choice(&out), ms1, "{out}");
    // Never the priority-20 member while one of priority 10 is up.
    for random in ["0", "61", "100", "4000000000"] {
        let out = run(&["--random", random, "--down", ms2]);
        assert_eq!(choice(&out), ms1, "random {random}: {out}");
    }
    // Both of priority 10 down: the next priority.
    let both = ["--random", "0", "--down", ms1, "--down", ms2];
    let out = run(&both);
    assert_eq!(choice(&out), backup, "{out}");
    let mut all = both.to_vec();
    all.extend(["--down", backup]);
    assert_eq!(choice(&run(&all)), "none");
}

#[test]
fn naptr_srv_a_chain_gives_the_members_and_the_smallest_ttl() {
    // NAPTR: TCP (order 10) before UDP (order 20, though its preference
    // is better: order comes first); the TCP SRV leads to a
    // host whose A record has TTL 42, below the zone's 300.
    let records = [
        "--naptr-record=dom.tandem.test,20,5,S,SIP+D2U,,_sip._udp.dom.tandem.test",
        "--naptr-record=dom.tandem.test,10,50,S,SIP+D2T,,_sip._tcp.dom.tandem.test",
        "--srv-host=_sip._tcp.dom.tandem.test,pbx1.tandem.test,5080,0,5",
        "--srv-host=_sip._udp.dom.tandem.test,pbx2.tandem.test,5090,0,5",
        "--host-record=pbx1.tandem.test,127.0.0.21,42",
        "--host-record=pbx2.tandem.test,127.0.0.22",
    ];
    let dns = Dnsmasq::start(&records);
    let dir = tempfile::tempdir().unwrap();
    let group = "[[group]]\nname = \"dom\"\n[[group.dns]]\nname = \"dom.tandem.test\"\n";
    let out = resolved(&config(dir.path(), &dns, ANY_TTL, group), &[], &dns);
    assert!(
        out.starts_with("group \"dom\": 1 members from DNS, valid for 42 s\n"),
        "{out}"
    );
    assert_eq!(
        member_lines(&out),
        ["pbx1.tandem.test:5080 127.0.0.21:5080 tcp priority=0 weight=5"],
        "{out}"
    );

    // Asked for UDP only, the UDP NAPTR record's chain (TTL 300 all along).
    let udp = group.to_owned() + "transport = \"udp\"\n";
    let out = resolved(&config(dir.path(), &dns, ANY_TTL, &udp), &[], &dns);
    assert!(out.contains("valid for 300 s"), "{out}");
    assert_eq!(
        member_lines(&out),
        ["pbx2.tandem.test:5090 127.0.0.22:5090 udp priority=0 weight=5"],
        "{out}"
    );

    // The TTL is clamped: at least min_ttl_s, at most max_ttl_s.
    let lowered = config(dir.path(), &dns, "min_ttl_s = 1\nmax_ttl_s = 30", group);
    let out = resolved(&lowered, &[], &dns);
    assert!(out.contains("valid for 30 s"), "{out}");
    let raised = config(dir.path(), &dns, "min_ttl_s = 100", group);
    let out = resolved(&raised, &[], &dns);
    assert!(out.contains("valid for 100 s"), "{out}");
}

#[test]
fn a_domain_without_naptr_falls_back_to_srv_then_to_its_address() {
    let dns = Dnsmasq::start(&[
        "--srv-host=_sip._tcp.srvonly.tandem.test,pbx3.tandem.test,5100,1,1",
        "--host-record=pbx3.tandem.test,127.0.0.31",
        "--host-record=plain.tandem.test,127.0.0.41",
        "--host-record=gw.tandem.test,127.0.0.51",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let groups = "\
[[group]]\nname = \"srvonly\"\n[[group.dns]]\nname = \"srvonly.tandem.test\"\n\
[[group]]\nname = \"plain\"\n[[group.dns]]\nname = \"plain.tandem.test\"\n\
[[group]]\nname = \"gw\"\n[[group.dns]]\nhost = \"gw.tandem.test\"\nport = 5099\ntransport = \"tcp\"\n";
    let config = config(dir.path(), &dns, ANY_TTL, groups);
    let lines = |group: &str| {
        member_lines(&resolved(&config, &["--group", group], &dns))
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    // No NAPTR, no _sip._udp SRV: _sip._tcp's SRV (RFC 3263 §4.1).
    assert_eq!(
        lines("srvonly"),
        ["pbx3.tandem.test:5100 127.0.0.31:5100 tcp priority=1 weight=1"]
    );
    // No NAPTR, no SRV: the domain's address on 5060, UDP (§4.2).
    assert_eq!(
        lines("plain"),
        ["plain.tandem.test:5060 127.0.0.41:5060 udp priority=0 weight=1"]
    );
    assert_eq!(
        lines("gw"),
        ["gw.tandem.test:5099 127.0.0.51:5099 tcp priority=0 weight=1"]
    );
}

#[test]
fn a_name_without_records_is_an_error_naming_it() {
    let dns = Dnsmasq::start(&["--host-record=other.tandem.test,127.0.0.61"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &dns,
        ANY_TTL,
        "[[group]]\nname = \"void\"\n[[group.dns]]\nname = \"nothing.tandem.test\"\n\
         [[group]]\nname = \"nosrv\"\n[[group.dns]]\nsrv = \"_sip._udp.nothing.tandem.test\"\n",
    );
    for (group, expected) in [
        (
            "void",
            "group \"void\": DNS: no NAPTR, SRV or A/AAAA records for nothing.tandem.test",
        ),
        (
            "nosrv",
            "group \"nosrv\": DNS: no SRV records for _sip._udp.nothing.tandem.test",
        ),
    ] {
        let out = resolve(&config, &["--group", group]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected),
            "{stderr}\ndnsmasq: {}",
            dns.log()
        );
        assert!(out.stdout.is_empty());
    }
}
