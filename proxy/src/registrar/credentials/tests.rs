use std::os::unix::fs::PermissionsExt;

use super::*;

fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn passwd_lines_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# phones\n\n{}   {}",
        passwd_lines("alice", "example.org", "secret"),
        passwd_lines("bob", "sip:odd:realm", "pw")
    );
    let path = private_file(dir.path(), "users", &text);
    let credentials = Credentials::load(&path).unwrap();
    assert_eq!(credentials.len(), 2);
    for a in Algorithm::ALL {
        assert_eq!(
            credentials.ha1("example.org", "alice", a),
            Some(a.ha1("alice", "example.org", "secret").as_str())
        );
        assert_eq!(
            credentials.ha1("sip:odd:realm", "bob", a),
            Some(a.ha1("bob", "sip:odd:realm", "pw").as_str()),
            "a realm with colons"
        );
    }
    assert_eq!(
        credentials.ha1("example.com", "alice", Algorithm::Md5),
        None
    );
    assert_eq!(
        credentials.ha1("example.org", "carol", Algorithm::Md5),
        None
    );
    // The MD5 line is what `echo -n alice:example.org:secret | md5sum` gives.
    assert!(text.contains("alice:example.org:MD5:"));
}

#[test]
fn a_user_may_have_only_some_algorithms() {
    let ha1 = Algorithm::Md5.ha1("u", "r", "p");
    let c = Credentials::parse(&format!("u:r:md5:{ha1}\n")).unwrap();
    assert_eq!(c.ha1("r", "u", Algorithm::Md5), Some(ha1.as_str()));
    assert_eq!(c.ha1("r", "u", Algorithm::Sha256), None);
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let md5 = "0123456789abcdef0123456789abcdef";
    let sha = md5.repeat(2);
    for (body, line, wanted) in [
        (
            "no colons here".to_string(),
            1,
            "expected `user:realm:ALGORITHM:ha1`",
        ),
        (
            format!("# c\nu:r:SHA-1:{md5}"),
            2,
            "unknown algorithm \"SHA-1\"",
        ),
        (
            format!("u:r:MD5:{}", md5.to_uppercase()),
            1,
            "32 lower-case hex",
        ),
        (format!("u:r:MD5:{sha}"), 1, "32 lower-case hex"),
        (format!("u:r:SHA-256:{md5}"), 1, "64 lower-case hex"),
        (
            format!("\n\nu:r:SHA-512-256:{}zz", &sha[..62]),
            3,
            "64 lower-case hex",
        ),
        (format!(":r:MD5:{md5}"), 1, "empty user name"),
        (format!("u::MD5:{md5}"), 1, "empty realm"),
        (
            format!("u:r:MD5:{md5}\nu:r:MD5:{md5}"),
            2,
            "a second MD5 line",
        ),
    ] {
        let path = private_file(dir.path(), "bad", &body);
        let err = Credentials::load(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains(&format!("`line {line}`")), "{text}");
        assert!(text.contains(wanted), "{text}");
    }
}

#[test]
fn a_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = private_file(dir.path(), "users", &passwd_lines("u", "r", "p"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Credentials::load(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    let missing = Credentials::load(&dir.path().join("missing")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    std::fs::write(dir.path().join("binary"), [0xff, 0xfe]).unwrap();
    std::fs::set_permissions(
        dir.path().join("binary"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let binary = Credentials::load(&dir.path().join("binary")).unwrap_err();
    assert!(binary.to_string().contains("not UTF-8"), "{binary}");
}

#[test]
fn write_passwd_creates_replaces_and_keeps_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    write_passwd(&path, "alice", "example.org", "one").unwrap();
    assert_eq!(mode_of(&path), 0o600, "created private");
    write_passwd(&path, "bob", "example.org", "two").unwrap();
    write_passwd(&path, "alice", "other.org", "three").unwrap();
    // A comment the operator wrote survives the rewrite.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.insert_str(0, "# desk phones\n");
    std::fs::write(&path, &text).unwrap();
    // A new password for alice in example.org replaces her three lines.
    write_passwd(&path, "alice", "example.org", "four").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# desk phones\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 9, "{text}");
    assert_eq!(mode_of(&path), 0o600);
    let credentials = Credentials::load(&path).unwrap();
    assert_eq!(credentials.len(), 3);
    let ha1 = |realm, user| credentials.ha1(realm, user, Algorithm::Sha256);
    let want = |user, realm, pw| Some(Algorithm::Sha256.ha1(user, realm, pw));
    assert_eq!(
        ha1("example.org", "alice").map(str::to_owned),
        want("alice", "example.org", "four")
    );
    assert_eq!(
        ha1("example.org", "bob").map(str::to_owned),
        want("bob", "example.org", "two")
    );
    assert_eq!(
        ha1("other.org", "alice").map(str::to_owned),
        want("alice", "other.org", "three")
    );
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn write_passwd_refuses_a_readable_file_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = private_file(dir.path(), "users", "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = write_passwd(&path, "alice", "r", "pw").unwrap_err();
    assert!(err.contains("chmod 600"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "left alone");
    let fresh = dir.path().join("fresh");
    assert!(write_passwd(&fresh, "a:b", "r", "pw").is_err());
    assert!(write_passwd(&fresh, "", "r", "pw").is_err());
    assert!(write_passwd(&fresh, "a", "r\n", "pw").is_err());
    assert!(write_passwd(&fresh, "a", "r", "").is_err());
    assert!(!fresh.exists());
}

#[test]
fn the_password_is_the_first_line() {
    assert_eq!(read_password(&b"s3cret\nmore\n"[..]).unwrap(), "s3cret");
    assert_eq!(read_password(&b"with space\r\n"[..]).unwrap(), "with space");
    assert_eq!(read_password(&b"no newline"[..]).unwrap(), "no newline");
    assert_eq!(read_password(&b""[..]).unwrap(), "");
}
