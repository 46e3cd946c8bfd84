//! The floating IP and the reachability probe in a network-namespace lab
//! (`deploy/testbed`): node a takes the address, the trunk reaches it;
//! node b takes it over and the trunk's neighbour entry follows by
//! gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6)
//! alone. Runs `ha-tool` (this crate's example) inside the lab's
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

/// The MAC the trunk's neighbour table holds for `vip`, if any.
fn trunk_entry(lab: &Lab, vip: &str) -> Option<String> {
    lab.neighbour("trunk", "eth0", vip)
        .expect("read the trunk's neighbour table")
        .map(|(mac, _state)| mac)
}

/// Waits until the trunk's entry for `vip` is `mac`.
async fn wait_trunk_entry(lab: &Lab, vip: &str, mac: &str, deadline: Duration, why: &str) {
    testkit::wait_for(why, deadline, || async {
        match trunk_entry(lab, vip) {
            Some(m) if m == mac => Ok(()),
            other => Err(format!("trunk's entry for {vip}: {other:?}, want {mac}")),
        }
    })
    .await;
}

/// a, holding `vip`, lets go of it and b takes it over: within 2 s of b
/// acquiring it the trunk's entry for it moves from `mac_a` to `mac_b` by
/// b's `announcement` alone, and the trunk reaches it again.
async fn hand_over_to_b(
    lab: &Lab,
    vip: &str,
    vip_net: &str,
    mac_a: &str,
    mac_b: &str,
    announcement: &str,
) {
    // a lets go; nothing tells the trunk, whose entry still says a.
    must(lab, "a", &["vip-release", "eth0", vip_net]).await;
    must_not(lab, "a", &["vip-held", "eth0", vip_net]).await;
    // Releasing again is fine.
    must(lab, "a", &["vip-release", "eth0", vip_net]).await;
    assert_eq!(
        trunk_entry(lab, vip).as_deref(),
        Some(mac_a),
        "the trunk's entry is stale, not gone"
    );
    // Past the neighbour lock time (1 s), within which some kernels ignore
    // a new address for an entry just confirmed. A real takeover comes
    // later than that after the last packet from the old active.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // b takes over. The trunk sends nothing meanwhile, and its stale entry
    // could only be re-checked by unicast to a's MAC (which gets no
    // answer), never learn b's MAC: only b's announcement (gratuitous
    // ARP, unsolicited NA) can move it.
    let started = Instant::now();
    must(lab, "b", &["vip-acquire", "eth0", vip_net]).await;
    wait_trunk_entry(
        lab,
        vip,
        mac_b,
        Duration::from_secs(2).saturating_sub(started.elapsed()),
        &format!("{announcement} to move the trunk's entry for {vip} to b"),
    )
    .await;
    must(lab, "trunk", &["ping", vip, "2000"]).await;
    must(lab, "b", &["vip-held", "eth0", vip_net]).await;
    must_not(lab, "a", &["vip-held", "eth0", vip_net]).await;
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
    assert_eq!(
        trunk_entry(&lab, VIP),
        None,
        "nobody answered ARP for {VIP}"
    );

    // a takes it: the trunk's entry resolves to a, and the VIP answers.
    must(&lab, "a", &["vip-acquire", "eth0", VIP_NET]).await;
    must(&lab, "a", &["vip-held", "eth0", VIP_NET]).await;
    // Acquiring again is fine.
    must(&lab, "a", &["vip-acquire", "eth0", VIP_NET]).await;
    wait_trunk_entry(
        &lab,
        VIP,
        &mac_a,
        Duration::from_secs(2),
        "trunk's entry for the VIP → a",
    )
    .await;
    must(&lab, "trunk", &["ping", VIP, "2000"]).await;
    assert_eq!(trunk_entry(&lab, VIP).as_deref(), Some(mac_a.as_str()));

    hand_over_to_b(&lab, VIP, VIP_NET, &mac_a, &mac_b, "gratuitous ARP").await;
    Ok(())
}

/// The IPv6 twin of [`floating_ip_moves_by_gratuitous_arp`]: the lab has
/// only link-local IPv6 addresses, so the test gives trunk, a and b ULA
/// ones (without duplicate address detection, usable at once).
#[tokio::test]
async fn floating_ipv6_moves_by_unsolicited_na() -> anyhow::Result<()> {
    const VIP6: &str = "fd77::100";
    const VIP6_NET: &str = "fd77::100/64";
    const TRUNK6: &str = "fd77::10";
    ha_tool();
    let lab = Lab::up("vi6")?;
    for (node, addr) in [("trunk", TRUNK6), ("a", "fd77::2"), ("b", "fd77::3")] {
        let ns = lab.ns(node);
        let net = format!("{addr}/64");
        let args = ["-n", &ns, "-6", "addr", "add", &net, "dev", "eth0", "nodad"];
        let out = std::process::Command::new("ip").args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mac_a = lab.mac("a", "eth0")?;
    let mac_b = lab.mac("b", "eth0")?;

    must(&lab, "a", &["ping", TRUNK6, "2000"]).await;
    must(&lab, "b", &["ping", TRUNK6, "2000"]).await;
    must_not(&lab, "trunk", &["ping", VIP6, "500"]).await;
    assert_eq!(trunk_entry(&lab, VIP6), None, "nobody answered for {VIP6}");

    // a takes it; the trunk resolves it to a.
    must(&lab, "a", &["vip-acquire", "eth0", VIP6_NET]).await;
    must(&lab, "a", &["vip-held", "eth0", VIP6_NET]).await;
    must(&lab, "trunk", &["ping", VIP6, "2000"]).await;
    assert_eq!(trunk_entry(&lab, VIP6).as_deref(), Some(mac_a.as_str()));

    hand_over_to_b(&lab, VIP6, VIP6_NET, &mac_a, &mac_b, "unsolicited NA").await;
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
