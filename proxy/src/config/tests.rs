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
    // From the registrar on (its rule needs it); its snapshot file's
    // directory does not exist here.
    let start = EXAMPLE.find("# The registrar").unwrap();
    let mut text = EXAMPLE[..start].to_owned();
    for line in EXAMPLE[start..].lines() {
        match line.strip_prefix('#') {
            Some(code) if code.starts_with("snapshot_file") => {}
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
    assert_eq!(c.rules.len(), 8);
    assert_eq!(c.rules[0].location, Some(true));
    assert_eq!(c.wans.len(), 1);
    assert_eq!(c.wan_of_rule(&c.rules[1]).as_deref(), Some("dc"));
    assert!(c.registrar_enabled());
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
    assert_eq!(c.rules[3].strip, Some(3));
    assert_eq!(c.rules[4].replace.as_ref().unwrap().with, "+${1}");
    assert_eq!(c.rules[5].redirect.as_deref(), Some("pbx"));
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
    // A group rule may fall back to another group; a reject may not.
    assert!(with_rule("group = \"media\"\nfallback = \"media\"").is_ok());
    let e = rule_error("reject = { code = 503, reason = \"x\" }\nfallback = \"media\"");
    assert!(e.contains("`rule[0].fallback`"), "{e}");
    let e = rule_error("group = \"media\"\nfallback = \"nowhere\"");
    assert!(e.contains("unknown group"), "{e}");
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
        "tandem.toml: key `rule[0].location`: needs the registrar: a [registrar] table with domains"
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

#[test]
fn media_latching_defaults_to_signalled_ip_and_names_the_choices() {
    let without = EXAMPLE.replace("latching = \"signalled-ip\"\n", "");
    assert_ne!(without, EXAMPLE, "the example documents the key");
    assert_eq!(
        parse(&without).unwrap().media.latching,
        media_relay::Latching::SignalledIp
    );
    for (value, mode) in [
        ("strict", media_relay::Latching::Strict),
        ("signalled-ip", media_relay::Latching::SignalledIp),
        ("any", media_relay::Latching::Any),
    ] {
        let text = EXAMPLE.replace("\"signalled-ip\"", &format!("\"{value}\""));
        assert_eq!(parse(&text).unwrap().media.latching, mode);
    }
    let text = EXAMPLE.replace("\"signalled-ip\"", "\"first-come\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("tandem.toml:"), "{err}");
    assert!(
        err.contains("latching") && err.contains("first-come"),
        "{err}"
    );
    assert!(err.contains("strict") && err.contains("any"), "{err}");
}

#[test]
fn media_fast_path_defaults_to_off_and_names_the_choices() {
    let without = EXAMPLE.replace("fast_path = \"off\"\n", "");
    assert_ne!(without, EXAMPLE, "the example documents the key");
    assert_eq!(
        parse(&without).unwrap().media.fast_path,
        media_relay::FastPathMode::Off
    );
    for (value, mode) in [
        ("auto", media_relay::FastPathMode::Auto),
        ("on", media_relay::FastPathMode::On),
        ("off", media_relay::FastPathMode::Off),
    ] {
        let text = EXAMPLE.replace("fast_path = \"off\"", &format!("fast_path = \"{value}\""));
        assert_eq!(parse(&text).unwrap().media.fast_path, mode);
    }
    let text = EXAMPLE.replace("fast_path = \"off\"", "fast_path = \"yes\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("tandem.toml:"), "{err}");
    assert!(err.contains("fast_path") && err.contains("yes"), "{err}");
    assert!(err.contains("auto") && err.contains("on"), "{err}");
}

/// A config whose `[admin]` table is `admin`, read from `dir`.
fn parse_in(dir: &Path, admin: &str) -> Result<Config, ConfigError> {
    let text = EXAMPLE.replace(
        "[admin]\nlisten = \"127.0.0.1:9090\"",
        &format!("[admin]\n{admin}"),
    );
    assert_ne!(text, EXAMPLE, "the example's [admin] table moved");
    Config::parse(&text, &dir.join("tandem.toml"))
}

fn token_file(dir: &Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn admin_tokens_are_read_from_private_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    token_file(dir.path(), "admin.token", "0123456789abcdefXYZ\n", 0o600);
    token_file(dir.path(), "metrics.token", "metrics-0123456789\r\n", 0o400);
    let c = parse_in(
        dir.path(),
        "listen = \"127.0.0.1:9090\"\ntoken_file = \"admin.token\"\nmetrics_token_file = \"metrics.token\"",
    )
    .unwrap();
    assert_eq!(c.admin.token.unwrap().as_str(), "0123456789abcdefXYZ");
    assert_eq!(
        c.admin.metrics_token.unwrap().as_str(),
        "metrics-0123456789"
    );
    assert!(
        !format!(
            "{:?}",
            parse_in(dir.path(), "token_file = \"admin.token\"")
                .unwrap()
                .admin
        )
        .contains("0123456789abcdef"),
        "Debug does not show the token"
    );
}

#[test]
fn admin_token_files_that_others_can_read_short_or_empty_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("0123456789abcdefXYZ\n", 0o644, "mode 0644"),
        ("0123456789abcdefXYZ\n", 0o620, "mode 0620"),
        ("short\n", 0o600, "too short"),
        ("\n", 0o600, "empty"),
        ("0123456789 abcdefXYZ\n", 0o600, "visible ASCII"),
        ("0123456789abcdefXYZ\nsecond line\n", 0o600, "visible ASCII"),
    ];
    for (text, mode, why) in cases {
        token_file(dir.path(), "admin.token", text, mode);
        let err = parse_in(dir.path(), "token_file = \"admin.token\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `admin.token_file`"), "{err}");
        assert!(err.contains("tandem.toml"), "names the config: {err}");
        assert!(err.contains("admin.token"), "names the token file: {err}");
        assert!(err.contains(why), "{why}: {err}");
    }
    let err = parse_in(dir.path(), "metrics_token_file = \"missing.token\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `admin.metrics_token_file`"), "{err}");
    assert!(err.contains("missing.token"), "{err}");
}

#[test]
fn a_non_loopback_admin_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:9090", "192.0.2.1:9090", "[::]:9090"] {
        let err = parse_in(dir.path(), &format!("listen = \"{listen}\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `admin.token_file`"), "{err}");
        assert!(err.contains("not a loopback address"), "{err}");
    }
    token_file(dir.path(), "admin.token", "0123456789abcdefXYZ\n", 0o600);
    parse_in(
        dir.path(),
        "listen = \"0.0.0.0:9090\"\ntoken_file = \"admin.token\"",
    )
    .unwrap();
    parse_in(dir.path(), "listen = \"[::1]:9090\"").unwrap();
}

#[test]
fn the_admin_socket_is_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse_in(dir.path(), "socket = \"run/admin.sock\"").unwrap();
    assert_eq!(c.admin.socket, Some(dir.path().join("run/admin.sock")));
    let c = parse_in(dir.path(), "socket = \"/run/tandem/admin.sock\"").unwrap();
    assert_eq!(
        c.admin.socket,
        Some(PathBuf::from("/run/tandem/admin.sock"))
    );
    let err = parse_in(dir.path(), "socket = \"\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `admin.socket`"), "{err}");
}

#[test]
fn unknown_source_is_drop_or_403() {
    assert_eq!(
        parse(EXAMPLE).unwrap().machine_settings().unknown_source,
        crate::b2bua::UnknownSource::Drop
    );
    let with = |v: &str| {
        EXAMPLE.replace(
            "unknown_source = \"drop\"",
            &format!("unknown_source = {v}"),
        )
    };
    let c = parse(&with("\"403\"")).unwrap();
    assert_eq!(
        c.machine_settings().unknown_source,
        crate::b2bua::UnknownSource::Forbid
    );
    let err = parse(&with("\"reject\"")).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml:") && err.contains("unknown_source") && err.contains("reject"),
        "{err}"
    );
    let err = parse(&with("403")).unwrap_err().to_string();
    assert!(err.contains("unknown_source"), "{err}");
}

/// The example plus an `[ha]` table whose secret file holds `secret`
/// with `mode`; the file is kept while the returned guard lives.
fn with_ha(secret: &str, mode: u32) -> (String, tempfile::TempPath) {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{secret}").unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    let path = f.into_temp_path();
    let text = format!(
        "{EXAMPLE}\n[ha]\nnode = \"a\"\nsecret_file = {:?}\nlink = {{ listen = \"10.0.0.1:7480\", peer = \"10.0.0.2:7480\" }}\n",
        path.display().to_string()
    );
    (text, path)
}

#[test]
fn the_pair_secret_file_is_checked_naming_key_and_file() {
    let random = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=";
    let (text, _keep) = with_ha(random, 0o600);
    parse(&text).unwrap();

    let (text, path) = with_ha(random, 0o644);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `ha.secret_file`: ")
            && err.contains(&path.display().to_string())
            && err.contains("0644"),
        "{err}"
    );

    let (text, _keep) = with_ha("testbed pair secret, change me", 0o600);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("ha.secret_file") && err.contains("published example"),
        "{err}"
    );

    let (text, _keep) = with_ha(random, 0o600);
    let text = text.replace("\n[ha]\n", "\n[ha]\nsecret = \"inline\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("key `ha.secret`"), "{err}");
}

#[test]
fn limits_are_checked_and_name_the_key() {
    // The example's [limits] table, replaced by `limits`.
    let start = EXAMPLE.find("[limits]\n").unwrap();
    let end = start + EXAMPLE[start..].find("\n\n").unwrap();
    let with = |limits: &str| {
        parse(&format!(
            "{}[limits]\n{limits}{}",
            &EXAMPLE[..start],
            &EXAMPLE[end..]
        ))
    };
    let c = with("stranger_rate = 5\nmax_calls = 10\nwaiting_transactions = 100000").unwrap();
    assert_eq!(c.limits.waiting_transactions, 100_000);
    assert_eq!(c.rate_limit().rate_per_s, 5);
    assert_eq!(c.machine_settings().max_calls, 10);
    for (limits, key) in [
        ("stranger_burst = 0", "limits.stranger_burst"),
        ("ban_s = 0", "limits.ban_s"),
        ("sources_tracked = 0", "limits.sources_tracked"),
        ("stranger_queue = 0", "limits.stranger_queue"),
        ("stranger_queue = 2048", "limits.stranger_queue"),
        ("max_transactions = 0", "limits.max_transactions"),
        (
            "max_transactions = 10\nstranger_transactions = 10",
            "limits.stranger_transactions",
        ),
        (
            "stranger_transactions = 10\nwaiting_transactions = 10",
            "limits.waiting_transactions",
        ),
    ] {
        let err = with(limits).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("tandem.toml: key `{key}`")),
            "{limits}: {err}"
        );
    }
    // No rate: no burst needed.
    assert!(with("stranger_rate = 0\nstranger_burst = 0").is_ok());
    let text = EXAMPLE.replace(
        "networks = [\"127.0.0.0/8\"]",
        "networks = [\"127.0.0.0/8\"]\nmax_calls = 0",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("key `trunk[0].max_calls`"), "{err}");
}

#[test]
fn a_trunk_client_ca_needs_a_tls_listener_and_a_readable_file() {
    let trunk = |ca: &str| {
        EXAMPLE.replace(
            "networks = [\"127.0.0.0/8\"]",
            &format!("networks = [\"127.0.0.0/8\"]\ntls_client_ca_file = {ca:?}"),
        )
    };
    let err = parse(&trunk("/nonexistent/ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `trunk[0].tls_client_ca_file`"), "{err}");
    assert!(err.contains("needs [sip.tls]"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let ca = testkit::certs::TestCa::new("t");
    ca.issue(&["127.0.0.1"], &p("cert.pem"), &p("key.pem"));
    let tls = format!(
        "\n[sip.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        p("cert.pem"),
        p("key.pem")
    );
    let missing = p("missing.pem").display().to_string();
    let err = parse(&(trunk(&missing) + &tls)).unwrap_err().to_string();
    assert!(err.contains("key `trunk[0].tls_client_ca_file`"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");

    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    let ca_file = p("ca.pem").display().to_string();
    let c = parse(&(trunk(&ca_file) + &tls)).unwrap();
    let configs = c
        .sip
        .tls
        .as_ref()
        .unwrap()
        .server_configs(&c.trunks)
        .unwrap();
    assert_eq!(configs.by_network.len(), 1);
}

#[test]
fn trunks_members_and_the_peer_are_trusted_and_nobody_else() {
    let c = parse(EXAMPLE).unwrap();
    let trusted = c.trusted_sources();
    // The example's trunk is 127.0.0.0/8; its members are on loopback.
    assert!(trusted.contains("127.0.0.9".parse().unwrap()));
    assert!(!trusted.contains("192.0.2.1".parse().unwrap()));
    let text = EXAMPLE.replace("networks = [\"127.0.0.0/8\"]", "networks = [\"10.0.0.0/8\"]")
        + "\n[[group]]\nname = \"pbx\"\n[[group.member]]\nname = \"pbx1\"\naddress = \"192.0.2.50:5060\"\n";
    let c = parse(&text).unwrap();
    let trusted = c.trusted_sources();
    assert!(trusted.contains("10.1.2.3".parse().unwrap()));
    assert!(trusted.contains("192.0.2.50".parse().unwrap()), "a member");
    for m in &c.pool.members {
        assert!(trusted.contains(m.address.ip()), "pool member {}", m.name);
    }
    assert!(!trusted.contains("192.0.2.51".parse().unwrap()));
}

/// The example's commented `[registrar]` table, uncommented, with `extra`
/// (a `key = value` line) in place of the example's line for that key.
/// Without the example's snapshot_file (its directory need not exist).
fn with_registrar(extra: &str) -> String {
    let start = EXAMPLE.find("#[registrar]").unwrap();
    let extra_key = extra.split('=').next().unwrap_or("").trim();
    let table: String = EXAMPLE[start..]
        .lines()
        .take_while(|l| l.starts_with('#') && !l.starts_with("# "))
        .map(|l| l.trim_start_matches('#'))
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            key != "snapshot_file" && key != extra_key
        })
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{EXAMPLE}\n{table}{extra}\n")
}

#[test]
fn no_registrar_table_is_no_registrar() {
    assert!(parse(EXAMPLE).unwrap().registrar.is_none());
    let c = parse(&format!("{EXAMPLE}\n[registrar]\n")).unwrap();
    let r = c.registrar.unwrap();
    assert!(!r.enabled());
    // Off: no credentials needed.
    assert_eq!(r.credentials_file, None);
}

#[test]
fn the_example_registrar_table_is_valid_and_gives_the_settings() {
    let c = parse(&with_registrar("")).unwrap();
    let r = c.registrar.unwrap();
    assert!(r.enabled());
    assert_eq!(
        r.settings(),
        crate::registrar::RegistrarSettings {
            domains: vec!["example.com".into()],
            realm: "example.com".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 5,
            when_full: crate::registrar::WhenFull::ReplaceOldest,
            max_bindings: 200_000,
            authenticate_invites: true,
        }
    );
    assert_eq!(
        r.credentials_file.as_deref(),
        Some(Path::new("/etc/tandem/credentials"))
    );
    assert!(r.authenticate_invites);
    let auth = r.auth_settings();
    assert_eq!(auth.algorithms, [sipcore::digest::Algorithm::Md5]);
    assert_eq!(auth.nonce_lifetime, Duration::from_secs(300));
    assert_eq!(auth.max_failures, 10);
    assert_eq!(auth.failure_window, Duration::from_secs(60));
    assert_eq!(auth.failure_ban, Duration::from_secs(300));
}

#[test]
fn registrar_defaults_and_realm_from_the_first_domain() {
    let text = format!(
        "{EXAMPLE}\n[registrar]\ndomains = [\"Voice.Example.NET\", \"192.0.2.1\"]\n\
         credentials_file = \"creds\"\nwhen_full = \"reject\"\n\
         auth_algorithms = [\"SHA-512-256\"]\n"
    );
    let r = parse(&text).unwrap().registrar.unwrap();
    let s = r.settings();
    assert_eq!(s.domains, ["voice.example.net", "192.0.2.1"]);
    assert_eq!(s.realm, "voice.example.net");
    assert_eq!(s.when_full, crate::registrar::WhenFull::Reject);
    assert_eq!(s.max_contacts, 5);
    assert_eq!(r.snapshot_file, None);
    assert_eq!(
        r.auth_settings().algorithms,
        [sipcore::digest::Algorithm::Sha512_256]
    );
}

#[test]
fn bad_registrar_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("none").join("bindings.jsonl");
    for (extra, key) in [
        ("min_expires = 0", "registrar.min_expires"),
        ("max_expires = 30", "registrar.max_expires"),
        ("default_expires = 7200", "registrar.default_expires"),
        ("max_contacts = 0", "registrar.max_contacts"),
        ("max_bindings = 0", "registrar.max_bindings"),
        ("auth_algorithms = []", "registrar.auth_algorithms"),
        (
            "auth_algorithms = [\"MD5\", \"MD5\"]",
            "registrar.auth_algorithms[1]",
        ),
        ("nonce_lifetime_s = 0", "registrar.nonce_lifetime_s"),
        ("max_auth_failures = 0", "registrar.max_auth_failures"),
        (
            "auth_failure_window_s = 0",
            "registrar.auth_failure_window_s",
        ),
        ("auth_failure_ban_s = 0", "registrar.auth_failure_ban_s"),
        ("realm = \"a\\\"b\"", "registrar.realm"),
        ("realm = \"\"", "registrar.realm"),
        (
            &format!("snapshot_file = {:?}", missing_dir.display().to_string()),
            "registrar.snapshot_file",
        ),
        (
            &format!("snapshot_file = {:?}", dir.path().display().to_string()),
            "registrar.snapshot_file",
        ),
    ] {
        let err = parse(&with_registrar(extra)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("tandem.toml: key `{key}`: ")),
            "{extra}: {err}"
        );
    }
}

#[test]
fn registrar_domains_must_be_hosts_and_need_credentials() {
    for (domains, key) in [
        ("[\"sip:example.com\"]", "registrar.domains[0]"),
        ("[\"example.com:5060\"]", "registrar.domains[0]"),
        ("[\"alice@example.com\"]", "registrar.domains[0]"),
        ("[\"\"]", "registrar.domains[0]"),
        ("[\"example.com\", \"EXAMPLE.com\"]", "registrar.domains[1]"),
    ] {
        let text =
            format!("{EXAMPLE}\n[registrar]\ndomains = {domains}\ncredentials_file = \"c\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("tandem.toml: key `{key}`: ")),
            "{domains}: {err}"
        );
    }
    let text = format!("{EXAMPLE}\n[registrar]\ndomains = [\"example.com\"]\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("tandem.toml: key `registrar.credentials_file`: "),
        "{err}"
    );
}

#[test]
fn unknown_registrar_keys_and_values_are_refused() {
    for (extra, named) in [
        ("expires_max = 10", "expires_max"),
        ("when_full = \"drop-newest\"", "drop-newest"),
        ("auth_algorithms = [\"SHA-1\"]", "SHA-1"),
        ("auth_algorithms = [\"MD5-sess\"]", "MD5-sess"),
    ] {
        let err = parse(&with_registrar(extra)).unwrap_err().to_string();
        assert!(err.starts_with("tandem.toml:"), "{extra}: {err}");
        assert!(err.contains(named), "{extra}: {err}");
    }
}

#[test]
fn wan_tables_and_rule_conditions_are_checked() {
    let wan = "[[wan]]\nname = \"dc\"\ngroups = [\"media\"]\n";
    let c = parse(&format!(
        "{EXAMPLE}\n{wan}\n[[rule]]\nname = \"r\"\nwan = \"down\"\ngroup = \"media\"\n"
    ))
    .unwrap();
    assert_eq!(c.wans[0].failures_to_down, 3);
    assert_eq!(c.wan_of_rule(&c.rules[0]).as_deref(), Some("dc"));
    // A rule's wan needs a [[wan]].
    let e = rule_error("wan = \"down\"\ngroup = \"media\"");
    assert!(e.contains("`rule[0].wan_name`"), "{e}");
    // A WAN needs evidence, and groups that exist.
    let e = parse(&format!("{EXAMPLE}\n[[wan]]\nname = \"dc\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`wan[0].groups`"), "{e}");
    let e = parse(&format!(
        "{EXAMPLE}\n[[wan]]\nname = \"dc\"\ngroups = [\"nope\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown group"), "{e}");
    let e = parse(&format!(
        "{EXAMPLE}\n{wan}[[rule]]\nname = \"r\"\nwan = \"sideways\"\ngroup = \"media\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("wan"), "{e}");
    // Probes: not a flood, and at least one a round.
    assert_eq!(c.wans[0].probe_interval_ms, 250);
    for keys in ["probe_interval_ms = 10", "probe_interval_ms = 2000"] {
        let e = parse(&format!(
            "{EXAMPLE}
{wan}{keys}
"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`wan[0].probe_interval_ms`"), "{e}");
    }
}

#[test]
fn the_example_upstream_table_gives_the_settings() {
    let c = parse(&example_with_routing()).unwrap();
    let u = c
        .upstream_settings()
        .expect("[registrar.upstream] in the example");
    assert_eq!(
        u,
        crate::upstream::UpstreamSettings {
            registrar: "192.0.2.10:5060".parse().unwrap(),
            realm: "centre.example.com".into(),
            domain: "centre.example.com".into(),
            expires_s: 600,
            renew_window: Duration::from_secs(60),
            wan: Some("dc".into()),
        }
    );
    // Defaults; the domain is the registrar's first.
    let text = format!(
        "{}\n[registrar.upstream]\nregistrar = \"192.0.2.10:5060\"\nrealm = \"c\"\n",
        with_registrar("")
    );
    let u = parse(&text).unwrap().upstream_settings().unwrap();
    assert_eq!((u.domain.as_str(), u.expires_s), ("example.com", 600));
    assert_eq!((u.renew_window, u.wan), (Duration::from_secs(60), None));
}

#[test]
fn bad_upstream_values_name_the_key() {
    for (extra, key) in [
        ("realm = \"\"", "registrar.upstream.realm"),
        ("domain = \"sip:x\"", "registrar.upstream.domain"),
        ("expires_s = 10", "registrar.upstream.expires_s"),
        ("renew_window_s = 0", "registrar.upstream.renew_window_s"),
        ("wan = \"nowhere\"", "registrar.upstream.wan"),
    ] {
        let text = format!(
            "{}\n[registrar.upstream]\nregistrar = \"192.0.2.10:5060\"\n{}\n{extra}\n",
            with_registrar(""),
            if extra.starts_with("realm") {
                ""
            } else {
                "realm = \"c\""
            },
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(&format!("key `{key}`")), "{extra}: {e}");
    }
    let text = format!(
        "{}\n[registrar.upstream]\nregistrar = \"0.0.0.0:5060\"\nrealm = \"c\"\n",
        with_registrar("")
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("key `registrar.upstream.registrar`"), "{e}");
    // Without the registrar's domains there is nothing to register.
    let text = format!(
        "{EXAMPLE}\n[registrar]\n[registrar.upstream]\nregistrar = \"192.0.2.10:5060\"\nrealm = \"c\"\n"
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("key `registrar.upstream`"), "{e}");
}

#[test]
fn shutdown_drain_defaults_to_30_s_and_is_bounded() {
    let without = EXAMPLE.replace("[shutdown]\ndrain_s = 30", "");
    assert_eq!(parse(&without).unwrap().shutdown.drain_s, 30);
    let text = EXAMPLE.replace("drain_s = 30 ", "drain_s = 2 ");
    assert_eq!(parse(&text).unwrap().shutdown.drain_s, 2);
    let text = EXAMPLE.replace("drain_s = 30 ", "drain_s = 3601 ");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("key `shutdown.drain_s`"), "{err}");
}

#[test]
fn hep_export_is_optional_and_validated_naming_its_keys() {
    assert!(parse(EXAMPLE).unwrap().hep.is_none());
    let with = |section: &str| format!("{EXAMPLE}\n[hep]\n{section}\n");
    let c = parse(&with(
        "collector = \"192.0.2.50:9060\"\nagent_id = 7\npassword = \"pw\"",
    ))
    .unwrap();
    let hep = c.hep.unwrap().settings();
    assert_eq!(hep.collector, "192.0.2.50:9060".parse().unwrap());
    assert_eq!(hep.agent.id, 7);
    assert_eq!(hep.agent.password.as_deref(), Some("pw"));
    assert_eq!(hep.queue_limit, 4096);

    for (section, key) in [
        ("collector = \"0.0.0.0:9060\"", "hep.collector"),
        ("collector = \"192.0.2.50:0\"", "hep.collector"),
        (
            "collector = \"192.0.2.50:9060\"\npassword = \"\"",
            "hep.password",
        ),
        (
            "collector = \"192.0.2.50:9060\"\npassword = \"a\\nb\"",
            "hep.password",
        ),
        (
            "collector = \"192.0.2.50:9060\"\nqueue_limit = 0",
            "hep.queue_limit",
        ),
    ] {
        let err = parse(&with(section)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("tandem.toml: key `{key}`:")),
            "{section}: {err}"
        );
    }
    // Wrong types and unknown keys: the parser names them.
    for (section, word) in [
        ("collector = \"collector.example:9060\"", "collector"),
        ("collector = \"192.0.2.50:9060\"\nagent_id = -1", "agent_id"),
        ("collector = \"192.0.2.50:9060\"\nagentid = 1", "agentid"),
    ] {
        let err = parse(&with(section)).unwrap_err().to_string();
        assert!(
            err.starts_with("tandem.toml:") && err.contains(word),
            "{section}: {err}"
        );
    }
}

#[test]
fn shards_are_checked_and_refused_where_not_yet_shared() {
    let shards = |n: &str, extra: &str| {
        let text = EXAMPLE.replace("#shards = 2", &format!("shards = {n}")) + extra;
        parse(&text)
            .map(|c| c.sip.shards)
            .map_err(|e| e.to_string())
    };
    assert_eq!(shards("2", ""), Ok(2));
    assert_eq!(parse(EXAMPLE).unwrap().sip.shards, 1);
    assert_eq!(
        shards("0", ""),
        Err("tandem.toml: key `sip.shards`: 0 is not between 1 and 64".into())
    );
    assert!(shards("65", "").is_err());
    // Shared across shards now: the call caps and the CDR file.
    let text = EXAMPLE
        .replace("#shards = 2", "shards = 2")
        .replace("max_calls = 0 ", "max_calls = 10 ");
    assert_eq!(parse(&text).map(|c| c.limits.max_calls).ok(), Some(10));
    assert_eq!(shards("2", "\n[cdr]\npath = \"/tmp/x.jsonl\"\n"), Ok(2));
    // Still one state for the node: refused, the error naming the key.
    let registrar =
        "\n[registrar]\ndomains = [\"example.com\"]\ncredentials_file = \"/tmp/none\"\n";
    let err = shards("2", registrar).unwrap_err();
    assert!(
        err.starts_with("tandem.toml: key `sip.shards`:") && err.ends_with("[registrar]"),
        "{err}"
    );
    // One shard: today's behaviour, everything allowed.
    assert!(shards("1", "\n[cdr]\npath = \"/tmp/x.jsonl\"\n").is_ok());
}
