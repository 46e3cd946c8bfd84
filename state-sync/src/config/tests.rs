use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;

const GOOD: &str = "q8Z1mJx0Vt4rK2bN7yWc5LpE3sHd9fGa6uTo0iRk=";

fn secret_file(content: &str, mode: u32) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{content}").unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

fn config(secret_file: &Path) -> SyncConfig {
    SyncConfig {
        node: "a".into(),
        priority: 100,
        secret_file: secret_file.to_path_buf(),
        secret: None,
        link: LinkConfig {
            listen: "10.0.0.1:7480".parse().unwrap(),
            peer: "10.0.0.2:7480".parse().unwrap(),
        },
        aux: None,
        heartbeat: HeartbeatConfig::default(),
        fencing: FencingConfig::default(),
        vip: None,
        external_role: false,
        realtime_priority: 0,
        journal_capacity: 10,
    }
}

#[test]
fn a_private_file_with_a_random_secret_loads_trimmed() {
    let f = secret_file(GOOD, 0o600);
    let c = config(f.path());
    c.validate().unwrap();
    assert_eq!(c.load_secret().unwrap(), GOOD.as_bytes());
}

#[test]
fn a_secret_file_others_can_read_is_refused_naming_key_and_file() {
    let f = secret_file(GOOD, 0o644);
    let e = config(f.path()).validate().unwrap_err();
    assert!(e.starts_with("secret_file: "), "{e}");
    assert!(e.contains(&f.path().display().to_string()), "{e}");
    assert!(e.contains("0644"), "{e}");
    let f = secret_file(GOOD, 0o640);
    assert!(config(f.path()).validate().is_err());
    let f = secret_file(GOOD, 0o400);
    config(f.path()).validate().unwrap();
}

#[test]
fn example_short_and_made_up_secrets_are_refused() {
    for weak in [
        "testbed pair secret, change me",
        "A Shared Secret of the Pair",
        "short but random: Xk2",
        "our production pair secret for 2026 ok",
        "abababababababababababababababababababab",
    ] {
        let f = secret_file(weak, 0o600);
        let e = config(f.path()).validate().unwrap_err();
        assert!(e.starts_with("secret_file: "), "{weak}: {e}");
    }
}

#[test]
fn an_inline_secret_or_a_relative_path_is_refused() {
    let f = secret_file(GOOD, 0o600);
    let mut c = config(f.path());
    c.secret = Some(GOOD.into());
    let e = c.validate().unwrap_err();
    assert!(
        e.starts_with("secret: ") && e.contains("secret_file"),
        "{e}"
    );
    let c = config(Path::new("pair.secret"));
    assert!(c.validate().unwrap_err().contains("absolute"));
}
