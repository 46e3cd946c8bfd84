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
