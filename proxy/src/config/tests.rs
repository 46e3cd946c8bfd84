use super::*;

const EXAMPLE: &str = include_str!("../../../deploy/tandem.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("tandem.toml"))
}

#[test]
fn example_config_is_valid() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.pool.members.len(), 2);
    assert_eq!(c.pool.strategy, Strategy::RoundRobin);
    assert_eq!(c.advertised(), "127.0.0.1:5060".parse().unwrap());
    assert!(c.trunk_for("127.0.0.9".parse().unwrap()).is_some());
    assert!(c.trunk_for("192.0.2.1".parse().unwrap()).is_none());
}

#[test]
fn unknown_key_names_key_and_file() {
    let text = EXAMPLE.replace("port_max = 29999", "port_max = 29999\nport_maximum = 3");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("tandem.toml:"), "{err}");
    assert!(err.contains("port_maximum"), "{err}");
}

#[test]
fn bad_value_names_key() {
    let text = EXAMPLE.replace("port_min = 20000", "port_min = 20001");
    let err = parse(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "tandem.toml: key `media.port_min`: must be even (RTP on even ports)"
    );

    let text = EXAMPLE.replace("strategy = \"round-robin\"", "strategy = \"fastest\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("fastest"), "{err}");

    let text = EXAMPLE.replace(
        "networks = [\"127.0.0.0/8\"]",
        "networks = [\"127.0.0.0/33\"]",
    );
    assert!(parse(&text).is_err());
}

#[test]
fn duplicate_member_names_are_refused() {
    let text = EXAMPLE.replace("name = \"ms2\"", "name = \"ms1\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("pool.member[1].name"), "{err}");
}

#[test]
fn wildcard_listen_needs_advertise() {
    let text = EXAMPLE.replace(
        "listen = [\"127.0.0.1:5060\"]",
        "listen = [\"0.0.0.0:5060\"]",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("sip.advertise"), "{err}");
}

#[test]
fn more_than_one_listen_address_is_refused() {
    let text = EXAMPLE.replace(
        "listen = [\"127.0.0.1:5060\"]",
        "listen = [\"127.0.0.1:5060\", \"127.0.0.2:5060\"]",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `sip.listen`: exactly one address"),
        "{err}"
    );
}

#[test]
fn tcp_limits_are_read_and_checked() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.sip.tcp.max_connections_per_ip, 64);
    // The example without its [sip.tcp] table, then one of the test's.
    let start = EXAMPLE.find("[sip.tcp]").unwrap();
    let end = start + EXAMPLE[start..].find("\n\n").unwrap();
    let base = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let c = parse(&base).unwrap();
    assert_eq!(c.sip.tcp.max_connections_per_ip, 64, "the default");
    let with = |table: &str| format!("{base}\n[sip.tcp]\n{table}\n");
    let c = parse(&with(
        "max_connections_per_ip = 3\nmessage_timeout_ms = 2000",
    ))
    .unwrap();
    let mut tcp = sipcore::transport::TcpConfig::default();
    c.sip.tcp.apply(&mut tcp);
    assert_eq!(tcp.max_connections_per_ip, 3);
    assert_eq!(tcp.message_timeout, Duration::from_secs(2));
    for (table, key) in [
        ("max_connections = 0", "sip.tcp.max_connections"),
        (
            "max_connections_per_ip = 0",
            "sip.tcp.max_connections_per_ip",
        ),
        (
            "max_connections = 10\nmax_connections_per_ip = 11",
            "sip.tcp.max_connections_per_ip",
        ),
        (
            "first_message_timeout_ms = 0",
            "sip.tcp.first_message_timeout_ms",
        ),
        ("message_timeout_ms = 9999999", "sip.tcp.message_timeout_ms"),
        ("idle_timeout_s = 0", "sip.tcp.idle_timeout_s"),
    ] {
        let err = parse(&with(table)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("tandem.toml: key `{key}`")),
            "{err}"
        );
    }
}

#[test]
fn tls_files_and_port_are_checked() {
    let with = |table: &str| format!("{EXAMPLE}\n[sip.tls]\n{table}\n");
    let missing = "cert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"";
    let err = parse(&with(missing)).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `sip.tls.cert_file`")
            && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
    let err = parse(&with(&format!("port = 5060\n{missing}")))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tandem.toml: key `sip.tls.port`"), "{err}");
}

#[test]
fn tls_members_need_a_ca_file_and_an_address() {
    let member = "address = \"127.0.0.1:5070\"";
    assert!(
        EXAMPLE.contains(member),
        "the example has a pool member at {member}"
    );
    let text = EXAMPLE.replacen(member, &format!("{member}\ntransport = \"tls\""), 1);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `pool.member[0].transport`") && err.contains("ca_file"),
        "{err}"
    );
    let dns = "[[group]]\nname = \"d\"\n[[group.dns]]\nhost = \"gw.test\"\ntransport = \"tls\"\n";
    let err = parse(&format!("{EXAMPLE}\n{dns}")).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `group[0].dns[0].transport`"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/tandem.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/tandem.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn survival_settings_are_checked() {
    let c = parse(EXAMPLE).unwrap();
    assert!(c.survival.enabled);
    assert_eq!(c.survival.on_no_server, OnNoServer::Hangup);
    let text = EXAMPLE.replace("media_silence_ms = 500", "media_silence_ms = 20");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("`survival.media_silence_ms`"), "{err}");
    let text = EXAMPLE.replace("resume_rate = 200", "resume_rate = 0");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("`survival.resume_rate`"), "{err}");
    let text = EXAMPLE.replace("on_no_server = \"hangup\"", "on_no_server = \"retry\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("retry"), "{err}");
    // Without the section: the defaults, survival on.
    let start = EXAMPLE.find("# Call survival").unwrap();
    let c = parse(&EXAMPLE[..start]).unwrap();
    assert!(c.survival.enabled && c.survival.continuity);
    assert_eq!(c.survival.media_silence_ms, 500);
}

/// The example with its commented routing examples turned on: lines of
/// the routing section starting with `#` and no space are config.
fn example_with_routing() -> String {
    let start = EXAMPLE.find("# Routing").unwrap();
    let mut text = EXAMPLE[..start].to_owned();
    for line in EXAMPLE[start..].lines() {
        match line.strip_prefix('#') {
            Some(code) if !code.is_empty() && !code.starts_with([' ', '#']) => {
                text.push_str(code);
                text.push('\n');
            }
            _ => {}
        }
    }
    text
}

/// A rule appended to the example (which has trunk `carrier`, group
/// `media`).
fn with_rule(rule: &str) -> Result<Config, ConfigError> {
    parse(&format!("{EXAMPLE}\n[[rule]]\nname = \"r\"\n{rule}\n"))
}

fn rule_error(rule: &str) -> String {
    with_rule(rule).unwrap_err().to_string()
}

#[test]
fn the_example_routing_section_is_valid_when_uncommented() {
    let c = parse(EXAMPLE).unwrap();
    assert!(c.groups.is_empty() && c.rules.is_empty());
    let c = parse(&example_with_routing()).unwrap();
    assert_eq!(c.groups.len(), 3);
    assert_eq!(c.rules.len(), 6);
    let dns = &c.groups[2];
    assert!(dns.members.is_empty());
    assert_eq!(dns.dns_members.len(), 3);
    assert_eq!(dns.dns_members[0].name.as_deref(), Some("pbx.example.net"));
    assert_eq!(dns.dns_members[0].transport, Some(MemberTransport::Tcp));
    assert_eq!(dns.dns_members[2].port, Some(5080));
    assert_eq!(c.dns.servers, ["127.0.0.53:53".parse().unwrap()]);
    assert_eq!((c.dns.min_ttl_s, c.dns.max_ttl_s), (10, 3600));
    let pbx = &c.groups[0];
    assert_eq!(pbx.strategy, Strategy::HashCallId);
    assert_eq!((pbx.probe, pbx.resume), (Probe::Options, false));
    assert_eq!(pbx.health.failures_to_down, 3);
    assert_eq!(c.groups[1].probe, Probe::Off);
    assert_eq!(c.rules[1].strip, Some(3));
    assert_eq!(c.rules[2].replace.as_ref().unwrap().with, "+${1}");
    assert_eq!(c.rules[3].redirect.as_deref(), Some("pbx"));
}

#[test]
fn groups_have_defaults_and_the_pool_is_the_first_group() {
    let text = format!(
        "{EXAMPLE}\n[[group]]\nname = \"gw\"\n[[group.member]]\nname = \"gw1\"\naddress = \"10.9.0.1:5060\"\n"
    );
    let c = parse(&text).unwrap();
    let g = &c.groups[0];
    assert_eq!(g.strategy, Strategy::RoundRobin);
    assert_eq!((g.probe, g.resume), (Probe::Options, true));
    assert_eq!(g.health.interval_ms, 1000);
    let all = c.destination_groups();
    assert_eq!(
        all.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["media", "gw"]
    );
    assert!(all[0].resume, "survival.enabled");
    let c = parse(&text.replace("enabled = true ", "enabled = false ")).unwrap();
    assert!(!c.destination_groups()[0].resume, "survival off: no resume");
}

#[test]
fn group_errors_name_the_key() {
    let group = |body: &str| {
        parse(&format!("{EXAMPLE}\n[[group]]\n{body}\n"))
            .unwrap_err()
            .to_string()
    };
    let member = "[[group.member]]\nname = \"a\"\naddress = \"10.0.0.1:5060\"";
    let e = group(&format!("name = \"media\"\n{member}"));
    assert!(e.contains("`group[0].name`: duplicate group name"), "{e}");
    let e = group("name = \"gw\"\nmember = []");
    assert!(e.contains("`group[0].member`"), "{e}");
    let e = group(&format!("name = \"gw\"\n{member}\n{member}"));
    assert!(e.contains("`group[0].member[1].name`"), "{e}");
    let e = group(&format!("name = \"gw\"\nprobe = \"sometimes\"\n{member}"));
    assert!(e.contains("sometimes"), "{e}");
    let e = group(&format!(
        "name = \"gw\"\n[group.health]\nenabled = false\n{member}"
    ));
    assert!(e.contains("`group[0].health.enabled`"), "{e}");
    let e = group(&format!(
        "name = \"gw\"\n[group.health]\ntimeout_ms = 5000\n{member}"
    ));
    assert!(e.contains("`group[0].health.timeout_ms`"), "{e}");
    let e = group(&format!("name = \"gw\"\nresumes = true\n{member}"));
    assert!(e.contains("resumes"), "unknown key: {e}");
}

#[test]
fn hash_strategies_work_in_the_pool_too() {
    let text = EXAMPLE.replace("strategy = \"round-robin\"", "strategy = \"hash-call-id\"");
    assert_eq!(parse(&text).unwrap().pool.strategy, Strategy::HashCallId);
}

#[test]
fn rule_errors_name_the_key() {
    assert!(with_rule("group = \"media\"").is_ok());
    let e = rule_error("group = \"nowhere\"");
    assert_eq!(
        e,
        "tandem.toml: key `rule[0].group`: unknown group \"nowhere\" (groups: media)"
    );
    let e = rule_error("redirect = \"nowhere\"");
    assert!(e.contains("`rule[0].redirect`: unknown group"), "{e}");
    let e = rule_error("source = \"nobody\"\ngroup = \"media\"");
    assert!(e.contains("`rule[0].source`: unknown source"), "{e}");
    let e = rule_error("ruri_user_prefix = \"49\"");
    assert!(e.contains("exactly one action"), "none: {e}");
    let e = rule_error("group = \"media\"\nredirect = \"media\"");
    assert!(e.contains("exactly one action"), "two: {e}");
    let e = rule_error("location = true");
    assert_eq!(
        e,
        "tandem.toml: key `rule[0].location`: needs the registrar, not built yet"
    );
    for code in [199, 200, 299, 700] {
        let e = rule_error(&format!("reject = {{ code = {code}, reason = \"x\" }}"));
        assert!(e.contains("`rule[0].reject.code`"), "{code}: {e}");
    }
    for code in [300, 403, 699] {
        assert!(with_rule(&format!("reject = {{ code = {code}, reason = \"x\" }}")).is_ok());
    }
    let e = rule_error("reject = { code = 403, reason = \"\" }");
    assert!(e.contains("`rule[0].reject.reason`"), "{e}");
    let e = rule_error("reject = { code = 403, reason = \"x\" }\nstrip = 2");
    assert!(
        e.contains("`rule[0].strip`: only with group or redirect"),
        "{e}"
    );
    let e = rule_error("ruri_user = \"1\"\nruri_user_prefix = \"1\"\ngroup = \"media\"");
    assert!(e.contains("`rule[0].ruri_user`: give one of"), "{e}");
    let e = rule_error("header = { name = \"X Bad\", regex = \"a\" }\ngroup = \"media\"");
    assert!(e.contains("`rule[0].header.name`"), "{e}");
    let e = rule_error("ruri_user_regex = \"(\"\ngroup = \"media\"");
    assert!(e.contains("`rule[0].ruri_user_regex`: bad regex"), "{e}");
    let e = rule_error("time = \"9-5\"\ngroup = \"media\"");
    assert!(e.contains("`rule[0].time`"), "{e}");
    let e = rule_error("ruri_usr = \"1\"\ngroup = \"media\"");
    assert!(e.contains("ruri_usr"), "unknown key: {e}");
    let e = rule_error("group = \"media\"\n[[rule]]\nname = \"r\"\ngroup = \"media\"");
    assert!(e.contains("`rule[1].name`: duplicate rule name"), "{e}");
}

#[test]
fn dns_members_and_the_resolver_have_defaults() {
    let c = parse(&format!(
        "{EXAMPLE}\n[[group]]\nname = \"d\"\n[[group.dns]]\nsrv = \"_sip._udp.pbx.example.net\"\n"
    ))
    .unwrap();
    assert!(c.groups[0].members.is_empty());
    assert_eq!(c.groups[0].dns_members.len(), 1);
    assert!(c.dns.servers.is_empty(), "default: /etc/resolv.conf");
    assert_eq!(
        (c.dns.timeout_ms, c.dns.min_ttl_s, c.dns.max_ttl_s),
        (2000, 10, 3600)
    );
}

#[test]
fn dns_errors_name_the_key() {
    let error = |text: String| parse(&text).unwrap_err().to_string();
    let group = |body: &str| error(format!("{EXAMPLE}\n[[group]]\nname = \"d\"\n{body}\n"));
    let e = group("[[group.dns]]\nsrv = \"pbx.example.net\"");
    assert!(e.contains("key `group[0].dns[0].srv`: "), "{e}");
    let e = group("[[group.dns]]\nname = \"a.example\"\nhost = \"b.example\"");
    assert!(
        e.contains("key `group[0].dns[0].name`: give exactly one"),
        "{e}"
    );
    let e = group("[[group.dns]]\nname = \"a.example\"\nport = 5060");
    assert!(e.contains("key `group[0].dns[0].port`"), "{e}");
    let e = group("[[group.dns]]\nhost = \"a.example\"\nweight = 3");
    assert!(e.contains("weight"), "unknown key named: {e}");
    let e = group("");
    assert!(e.contains("`group[0].member`: at least one member"), "{e}");
    let e = error(format!(
        "{EXAMPLE}\n[dns]\nmin_ttl_s = 60\nmax_ttl_s = 30\n"
    ));
    assert!(
        e.contains("key `dns.min_ttl_s`: must be <= dns.max_ttl_s (30)"),
        "{e}"
    );
    let e = error(format!("{EXAMPLE}\n[dns]\ntimeout_ms = 0\n"));
    assert!(e.contains("key `dns.timeout_ms`"), "{e}");
    let e = error(format!("{EXAMPLE}\n[dns]\nserver = [\"127.0.0.53:53\"]\n"));
    assert!(e.contains("server"), "unknown key named: {e}");
}
