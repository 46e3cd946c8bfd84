//! The credentials file: HA1 hashes per realm, user and algorithm, never
//! clear-text passwords. Read with the mode check of secrets (no group or
//! other access: an HA1 is as good as the password for that realm);
//! reloaded on SIGHUP.
//!
//! The format, one line per (user, realm, algorithm):
//!
//! ```text
//! # comments and blank lines are ignored
//! alice:example.org:MD5:<32 lower-case hex digits>
//! alice:example.org:SHA-256:<64 lower-case hex digits>
//! alice:example.org:SHA-512-256:<64 lower-case hex digits>
//! ```
//!
//! HA1 = H(user ":" realm ":" password) with the line's algorithm
//! (`echo -n 'alice:example.org:secret' | md5sum`; `tandem passwd` writes
//! all three). The user name has no `:`; the realm may (the HA1 and the
//! algorithm are split off from the right). A user needs a line only for
//! the algorithms offered; each (user, realm, algorithm) at most once.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use sipcore::digest::Algorithm;

use crate::config::ConfigError;

/// A credentials file larger than this is refused: 3 lines of ~150 bytes
/// per user leave room for some 100,000 users.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// A user's HA1 per algorithm, in the order of [`algorithm_slot`].
type Ha1s = [Option<String>; 3];

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// realm → user → HA1s: two levels so that a lookup by borrowed
    /// strings allocates nothing.
    realms: HashMap<String, HashMap<String, Ha1s>>,
}

/// The index of `algorithm` in a user's HA1 array.
fn algorithm_slot(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Md5 => 0,
        Algorithm::Sha256 => 1,
        Algorithm::Sha512_256 => 2,
    }
}

impl Credentials {
    /// Reads `path`; errors name the file and line.
    pub fn load(path: &Path) -> Result<Credentials, ConfigError> {
        let file_error = |message: String| ConfigError::Syntax {
            file: path.to_path_buf(),
            message,
        };
        let bytes =
            state_sync::config::read_private_file(path, MAX_FILE_BYTES).map_err(file_error)?;
        let text =
            String::from_utf8(bytes).map_err(|_| file_error("not UTF-8 text".to_string()))?;
        Credentials::parse(&text).map_err(|(line, message)| ConfigError::Invalid {
            file: path.to_path_buf(),
            key: format!("line {line}"),
            message,
        })
    }

    /// Parses the file's text; an error is (line number, what is wrong).
    fn parse(text: &str) -> Result<Credentials, (usize, String)> {
        let mut realms: HashMap<String, HashMap<String, Ha1s>> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|m| (index + 1, m))?;
            let slot = &mut realms
                .entry(entry.realm.to_owned())
                .or_default()
                .entry(entry.user.to_owned())
                .or_default()[algorithm_slot(entry.algorithm)];
            if slot.is_some() {
                return Err((
                    index + 1,
                    format!(
                        "a second {} line for user {:?} in realm {:?}",
                        entry.algorithm.as_str(),
                        entry.user,
                        entry.realm
                    ),
                ));
            }
            *slot = Some(entry.ha1.to_owned());
        }
        Ok(Credentials { realms })
    }

    /// The HA1 of `user` in `realm` for `algorithm`.
    pub fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<&str> {
        self.realms.get(realm)?.get(user)?[algorithm_slot(algorithm)].as_deref()
    }

    /// Users with a line in `realm`.
    pub fn users_in(&self, realm: &str) -> usize {
        self.realms.get(realm).map_or(0, HashMap::len)
    }

    /// Users in all.
    pub fn len(&self) -> usize {
        self.realms.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One line of the file, borrowed.
struct Entry<'a> {
    user: &'a str,
    realm: &'a str,
    algorithm: Algorithm,
    ha1: &'a str,
}

/// `user:realm:ALGORITHM:ha1`.
fn parse_line(line: &str) -> Result<Entry<'_>, String> {
    const FORMAT: &str = "expected `user:realm:ALGORITHM:ha1`";
    let (rest, ha1) = line.rsplit_once(':').ok_or(FORMAT)?;
    let (rest, algorithm) = rest.rsplit_once(':').ok_or(FORMAT)?;
    let (user, realm) = rest.split_once(':').ok_or(FORMAT)?;
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if realm.is_empty() {
        return Err("empty realm".into());
    }
    let algorithm = Algorithm::parse(algorithm)
        .ok_or_else(|| format!("unknown algorithm {algorithm:?} (MD5, SHA-256 or SHA-512-256)"))?;
    let len = algorithm.hex_len();
    if ha1.len() != len || !ha1.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "the {} HA1 must be {len} lower-case hex digits",
            algorithm.as_str()
        ));
    }
    Ok(Entry {
        user,
        realm,
        algorithm,
        ha1,
    })
}

/// The lines `tandem passwd` appends for a user: one per algorithm.
pub fn passwd_lines(user: &str, realm: &str, password: &str) -> String {
    [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256]
        .into_iter()
        .map(|a| {
            format!(
                "{user}:{realm}:{}:{}\n",
                a.as_str(),
                a.ha1(user, realm, password)
            )
        })
        .collect()
}

/// The password `tandem passwd` reads: the first line of `input`, without
/// its line end.
pub fn read_password(input: impl std::io::BufRead) -> Result<String, String> {
    use std::io::BufRead as _;
    let mut line = String::new();
    // A password is short; do not read a whole file piped in by mistake.
    input
        .take(4096)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// `tandem passwd`: writes `user`'s lines for `realm` into the file at
/// `path`, replacing the ones it had; creates the file (mode 0600) if
/// missing, and refuses one that group or others may read. The new file
/// replaces the old by a rename, so a reader never sees half of it.
pub fn write_passwd(path: &Path, user: &str, realm: &str, password: &str) -> Result<(), String> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err("--user: must be non-empty, without `:` or line breaks".into());
    }
    if realm.is_empty() || realm.contains(['\n', '\r']) {
        return Err("--realm: must be non-empty, without line breaks".into());
    }
    if password.is_empty() {
        return Err("empty password (give it on standard input)".into());
    }
    let existing = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(_) => {
            let bytes = state_sync::config::read_private_file(path, MAX_FILE_BYTES)
                .map_err(|m| format!("{}: {m}", path.display()))?;
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?
        }
    };
    let mut text: String = existing
        .lines()
        .filter(|line| parse_line(line.trim()).map_or(true, |e| (e.user, e.realm) != (user, realm)))
        .flat_map(|line| [line, "\n"])
        .collect();
    text.push_str(&passwd_lines(user, realm, password));
    replace_file(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `bytes` to a new file (mode 0600) beside `path` and renames it
/// over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temp_name = name.to_os_string();
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests;
