//! A network-namespace lab (`deploy/testbed/testbed.sh`) for integration
//! tests of the hot-standby pair: a switch, the trunk, nodes `a` and `b`,
//! media servers `ms1` and `ms2`, and the `a`–`b` pair link.
//!
//! [`Lab::up`] builds one under a fresh short name; dropping the [`Lab`]
//! (also when the test panics) runs `testbed.sh down`, which kills every
//! process still running in its namespaces, so a process started with
//! [`Lab::command`] never outlives the test. Needs root and iproute2, like
//! `scripts/test`; a missing one fails the test loudly rather than
//! skipping it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

/// A running lab; torn down on drop.
#[derive(Debug)]
pub struct Lab {
    name: String,
}

/// `deploy/testbed/testbed.sh` of this workspace.
pub fn testbed_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/testbed/testbed.sh")
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn testbed(args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new(testbed_script()).args(args))
}

/// A lab name no other lab on this machine has: up to 3 characters of the
/// hint, then base-36 digits of a hash of the process id, a per-process
/// counter and the time; 8 characters of `[a-z0-9]` in all.
pub(crate) fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut name: String = hint
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(3)
        .collect();
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let mut n = h.finish();
    while name.len() < 8 {
        name.push(char::from_digit((n % 36) as u32, 36).expect("digit < 36"));
        n /= 36;
    }
    name
}

impl Lab {
    /// Builds a lab named after `name_hint` (its first letters) plus a
    /// unique suffix.
    pub fn up(name_hint: &str) -> anyhow::Result<Lab> {
        let script = testbed_script();
        anyhow::ensure!(script.exists(), "{} not found", script.display());
        let present = String::from_utf8_lossy(&testbed(&["list"])?.stdout).into_owned();
        let name = (0..16)
            .map(|_| unique_name(name_hint))
            .find(|n| !present.lines().any(|l| l == n))
            .context("no unused lab name")?;
        // From here on the guard exists, so a half-built lab is torn down.
        let lab = Lab { name };
        testbed(&["up", &lab.name])?;
        Ok(lab)
    }

    /// The lab's name (the namespaces are `NAME-NODE`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace of `node` (`sw`, `trunk`, `a`, `b`, `ms1`, `ms2`).
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// `program` to be run inside `node`'s namespace
    /// (`ip netns exec NAME-NODE program …`); add arguments to it.
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(node)]).arg(program);
        cmd
    }

    /// Cuts `link`: `pair` (the a–b pair link), `a` / `b` (that node's
    /// whole network: eth0 and pair0), `trunk`, `ms1`, `ms2`.
    pub fn cut(&self, link: &str) -> anyhow::Result<()> {
        testbed(&["cut", &self.name, link]).map(drop)
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&self, link: &str) -> anyhow::Result<()> {
        testbed(&["heal", &self.name, link]).map(drop)
    }

    /// Kills (SIGKILL) every process in `node`'s namespace.
    pub fn kill(&self, node: &str) -> anyhow::Result<()> {
        testbed(&["kill", &self.name, node]).map(drop)
    }

    /// The MAC address of `dev` in `node`, as `ip link` prints it
    /// (`02:77:00:00:00:02`).
    pub fn mac(&self, node: &str, dev: &str) -> anyhow::Result<String> {
        let out =
            run(Command::new("ip").args(["-n", &self.ns(node), "-o", "link", "show", "dev", dev]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        word_after(&text, "link/ether").with_context(|| format!("no MAC in: {text}"))
    }

    /// The link-layer address `node`'s neighbour table holds for `ip` on
    /// `dev`, with the entry's state (`STALE`, `REACHABLE`, …); `None`
    /// when there is no entry or it has no address (`FAILED`,
    /// `INCOMPLETE`).
    pub fn neighbour(
        &self,
        node: &str,
        dev: &str,
        ip: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let out = run(Command::new("ip").args([
            "-n",
            &self.ns(node),
            "neigh",
            "show",
            "to",
            ip,
            "dev",
            dev,
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(word_after(&text, "lladdr").map(|mac| {
            let state = text
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned();
            (mac, state)
        }))
    }
}

/// The whitespace-separated word following `key` in `text`.
fn word_after(text: &str, key: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next().map(str::to_owned)
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = testbed(&["down", &self.name]) {
            eprintln!("testkit: tearing down lab {}: {e:#}", self.name);
        }
    }
}

#[cfg(test)]
mod tests;
