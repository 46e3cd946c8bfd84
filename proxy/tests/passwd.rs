//! `tandem passwd`: the password from standard input, the HA1 lines in the
//! credentials file, a file others can read refused. The process is waited
//! for with a deadline and killed by its handle if it overstays.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// `tandem passwd --file F --realm R --user U` with `stdin`; (exit code,
/// stderr).
fn passwd(file: &Path, realm: &str, user: &str, stdin: &str) -> (i32, String) {
    let mut child = Command::new(TANDEM)
        .args(["passwd", "--file"])
        .arg(file)
        .args(["--realm", realm, "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the password");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tandem passwd still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    (status.code().unwrap_or(-1), stderr)
}

/// The hash of `text` by a program that is not ours (coreutils).
fn coreutils_hash(program: &str, text: &str) -> String {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(program);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect(program);
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_owned()
}

#[test]
fn passwd_writes_ha1_lines_from_stdin_and_refuses_readable_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    assert_eq!(passwd(&file, "example.org", "alice", "old\n").0, 0);
    let (code, stderr) = passwd(&file, "example.org", "alice", "Circle of Life\n");
    assert_eq!(code, 0, "{stderr}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    let plain = "alice:example.org:Circle of Life";
    assert_eq!(
        text,
        format!(
            "alice:example.org:MD5:{}\nalice:example.org:SHA-256:{}\n\
             alice:example.org:SHA-512-256:{}\n",
            coreutils_hash("md5sum", plain),
            coreutils_hash("sha256sum", plain),
            sipcore::digest::Algorithm::Sha512_256.ha1("alice", "example.org", "Circle of Life"),
        ),
        "the old password's lines are replaced"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = passwd(&file, "example.org", "bob", "pw\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "left alone");

    let (code, stderr) = passwd(&dir.path().join("new"), "example.org", "bob", "");
    assert_eq!(code, 2);
    assert!(stderr.contains("empty password"), "{stderr}");
}
