//! The floating IP and the reachability probe in a network-namespace lab
//! (`deploy/testbed`): node a takes the address, the trunk reaches it;
//! node b takes it over and the trunk's ARP entry follows by gratuitous
//! ARP alone. Runs `ha-tool` (this crate's example) inside the lab's
//! namespaces. Needs root and iproute2 (`scripts/test`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::lab::Lab;

const VIP: &str = "10.77.0.100";
const VIP_NET: &str = "10.77.0.100/24";
const TRUNK: &str = "10.77.0.10";
/// Every ha-tool run finishes well within this, or fails the test.
const RUN_DEADLINE: Duration = Duration::from_secs(10);

/// `target/<profile>/examples/ha-tool`, which cargo builds for `cargo test`.
fn ha_tool() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let tool = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary sits in target/<profile>/deps")
        .join("examples/ha-tool");
    assert!(
        tool.exists(),
        "{} not found: build it with `cargo test -p state-sync` (which builds examples) \
         or `cargo build -p state-sync --examples`",
        tool.display()
    );
    tool
}

/// Runs `ha-tool ARGS…` in `node`'s namespace; `Ok(stdout)` on exit 0,
/// `Err(output)` on exit 1. Any other exit, or a run past
/// [`RUN_DEADLINE`], fails the test.
async fn tool(lab: &Lab, node: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = lab.command(node, ha_tool());
    cmd.args(args);
    let shown = format!("{cmd:?}");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(RUN_DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} still running after {RUN_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Ok(text),
        Some(1) => Err(text),
        _ => panic!("{shown} failed ({}): {text}", out.status),
    }
}

async fn must(lab: &Lab, node: &str, args: &[&str]) {
    if let Err(out) = tool(lab, node, args).await {
        panic!("ha-tool {} in {node} should succeed: {out}", args.join(" "));
    }
}

async fn must_not(lab: &Lab, node: &str, args: &[&str]) {
    if let Ok(out) = tool(lab, node, args).await {
        panic!("ha-tool {} in {node} should fail: {out}", args.join(" "));
    }
}

/// The MAC the trunk's neighbour table holds for the VIP, if any.
fn trunk_entry(lab: &Lab) -> Option<String> {
    lab.neighbour("trunk", "eth0", VIP)
        .expect("read the trunk's neighbour table")
        .map(|(mac, _state)| mac)
}

/// Waits until the trunk's entry for the VIP is `mac`.
async fn wait_trunk_entry(lab: &Lab, mac: &str, deadline: Duration, why: &str) {
    testkit::wait_for(why, deadline, || async {
        match trunk_entry(lab) {
            Some(m) if m == mac => Ok(()),
            other => Err(format!("trunk's entry for {VIP}: {other:?}, want {mac}")),
        }
    })
    .await;
}

#[tokio::test]
async fn floating_ip_moves_by_gratuitous_arp() -> anyhow::Result<()> {
    ha_tool();
    let lab = Lab::up("vip")?;
    let mac_a = lab.mac("a", "eth0")?;
    let mac_b = lab.mac("b", "eth0")?;
    assert_ne!(mac_a, mac_b);

    // The lab works: both nodes reach the trunk, and over the pair link
    // each other.
    must(&lab, "a", &["ping", TRUNK, "2000"]).await;
    must(&lab, "b", &["ping", TRUNK, "2000"]).await;
    must(&lab, "a", &["ping", "10.77.1.2", "2000"]).await;

    // Nobody holds the VIP yet. The trunk's failed attempt leaves an
    // unresolved entry for it.
    must_not(&lab, "a", &["vip-held", "eth0", VIP_NET]).await;
    must_not(&lab, "trunk", &["ping", VIP, "500"]).await;
    assert_eq!(trunk_entry(&lab), None, "nobody answered ARP for {VIP}");

    // a takes it: the trunk's entry resolves to a, and the VIP answers.
    must(&lab, "a", &["vip-acquire", "eth0", VIP_NET]).await;
    must(&lab, "a", &["vip-held", "eth0", VIP_NET]).await;
    // Acquiring again is fine.
    must(&lab, "a", &["vip-acquire", "eth0", VIP_NET]).await;
    wait_trunk_entry(
        &lab,
        &mac_a,
        Duration::from_secs(2),
        "trunk's entry for the VIP → a",
    )
    .await;
    must(&lab, "trunk", &["ping", VIP, "2000"]).await;
    assert_eq!(trunk_entry(&lab).as_deref(), Some(mac_a.as_str()));

    // a lets go; nothing tells the trunk, whose entry still says a.
    must(&lab, "a", &["vip-release", "eth0", VIP_NET]).await;
    must_not(&lab, "a", &["vip-held", "eth0", VIP_NET]).await;
    // Releasing again is fine.
    must(&lab, "a", &["vip-release", "eth0", VIP_NET]).await;
    assert_eq!(
        trunk_entry(&lab).as_deref(),
        Some(mac_a.as_str()),
        "the trunk's entry is stale, not gone"
    );
    // Past the neighbour lock time (1 s), within which some kernels ignore
    // a new address for an entry just confirmed. A real takeover comes
    // later than that after the last packet from the old active.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // b takes over. The trunk sends nothing meanwhile, and its stale entry
    // could only be re-checked by unicast to a's MAC (which gets no
    // answer), never learn b's MAC: only b's gratuitous ARP can move it.
    let started = Instant::now();
    must(&lab, "b", &["vip-acquire", "eth0", VIP_NET]).await;
    wait_trunk_entry(
        &lab,
        &mac_b,
        Duration::from_secs(2).saturating_sub(started.elapsed()),
        "gratuitous ARP to move the trunk's entry for the VIP to b",
    )
    .await;
    must(&lab, "trunk", &["ping", VIP, "2000"]).await;
    must(&lab, "b", &["vip-held", "eth0", VIP_NET]).await;
    must_not(&lab, "a", &["vip-held", "eth0", VIP_NET]).await;
    Ok(())
}

#[tokio::test]
async fn ping_of_absent_host_fails_within_its_timeout() -> anyhow::Result<()> {
    ha_tool();
    let lab = Lab::up("png")?;
    must(&lab, "a", &["ping", TRUNK, "2000"]).await;
    let started = Instant::now();
    must_not(&lab, "a", &["ping", "10.77.0.99", "500"]).await;
    let took = started.elapsed();
    // The tool's start-up and the namespace switch take a few ms.
    assert!(
        took >= Duration::from_millis(500),
        "gave up early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?} for a 500 ms timeout"
    );

    // Cut off, a reaches nothing: the "am I the one isolated?" signal.
    lab.cut("a")?;
    must_not(&lab, "a", &["ping", TRUNK, "500"]).await;
    must(&lab, "b", &["ping", TRUNK, "2000"]).await;
    lab.heal("a")?;
    must(&lab, "a", &["ping", TRUNK, "3000"]).await;
    Ok(())
}

#[tokio::test]
async fn missing_interface_is_reported() -> anyhow::Result<()> {
    let lab = Lab::up("ifc")?;
    let mut cmd = lab.command("a", ha_tool());
    cmd.args(["vip-acquire", "eth9", VIP_NET]);
    let out = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_DEADLINE, out).await??;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"eth9\" not found"), "{err}");
    Ok(())
}
