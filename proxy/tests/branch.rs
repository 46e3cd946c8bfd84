//! A branch office whose WAN is cut for real (testkit's branch lab:
//! network namespaces for the branch LAN, the WAN router and the central
//! site; Tandem in the root namespace between them). The central PBX
//! (SIPp) is reached only through the router; the local gateway (SIPp)
//! and the caller are on the branch LAN. Cut the WAN → the WAN is judged
//! down and new calls go to the gateway; heal it → after the hold-down,
//! calls go central again.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::Duration;

use testkit::branchlab::BranchLab;
use testkit::{Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const DEADLINE: Duration = Duration::from_secs(20);

/// A SIPp UAS (answering OPTIONS) started by `cmd` (in a namespace).
fn uas(mut cmd: std::process::Command, ip: IpAddr) -> Child {
    cmd.args([
        "-sn",
        "uas",
        "-aa",
        "-i",
        &ip.to_string(),
        "-p",
        "5060",
        "-nostdin",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("sipp")
}

/// One call from the branch LAN to `user`; whether SIPp saw it succeed.
fn call(lab: &BranchLab, tandem: SocketAddr, user: &str) -> bool {
    lab.run_in_branch("timeout")
        .args([
            "15",
            "sipp",
            &tandem.to_string(),
            "-sn",
            "uac",
            "-s",
            user,
            "-m",
            "1",
            "-d",
            "200",
        ])
        .args([
            "-i",
            &lab.branch_addr().to_string(),
            "-p",
            "5070",
            "-nostdin",
        ])
        .args(["-timeout", "10s", "-timeout_error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_wan_sends_branch_calls_to_the_local_gateway_until_it_heals() {
    testkit::require_sipp();
    let lab = BranchLab::new().expect("branch lab (needs root, iproute2, nftables)");
    // The centre answers the branch LAN's addresses through the router
    // (Tandem's SIP address is on the branch side).
    let branch_net = {
        let o = lab.tandem_branch_addr().octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    let routed = lab
        .run_in_router("ip")
        .args([
            "route",
            "add",
            &branch_net,
            "via",
            &lab.tandem_wan_addr().to_string(),
        ])
        .status()
        .unwrap();
    assert!(routed.success());
    let dc = IpAddr::from(lab.dc_addr());
    let gw = IpAddr::from(lab.branch_addr());
    let mut pbx = uas(lab.run_in_dc("sipp"), dc);
    let mut gateway = uas(lab.run_in_branch("sipp"), gw);
    let config = TandemConfig::new([("gw-media", SocketAddr::new(gw, 5060))])
        .listen_ip(IpAddr::from(lab.tandem_branch_addr()))
        .trunk_networks([format!("{gw}/32")])
        .health(1000, 500, 2, 1)
        .extra_toml(&format!(
            "[[group]]\nname = \"central\"\nresume = false\n[group.health]\nfailures_to_down = 5\n\
             [[group.member]]\nname = \"pbx\"\naddress = \"{dc}:5060\"\n\n\
             [[group]]\nname = \"gateway\"\nprobe = \"off\"\n[[group.member]]\nname = \"gw\"\naddress = \"{gw}:5060\"\n\n\
             [[wan]]\nname = \"dc\"\ngroups = [\"central\"]\nfailures_to_down = 3\nsuccesses_to_up = 3\nhold_down_s = 3\n\n\
             [[rule]]\nname = \"out-local\"\nwan = \"down\"\ngroup = \"gateway\"\n\n\
             [[rule]]\nname = \"out-central\"\ngroup = \"central\"\n"
        ));
    let tandem = Tandem::start(TANDEM, config).await;
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 1.0, DEADLINE)
        .await;
    let sip = tandem.sip_addr();
    let ok = tokio::task::block_in_place(|| call(&lab, sip, "0301"));
    assert!(ok, "{}", tandem.log_tail(20));
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs[0].get("group"), "central", "{:?}", cdrs[0]);

    lab.cut().unwrap();
    let cut_at = std::time::Instant::now();
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 0.0, DEADLINE)
        .await;
    let detected = cut_at.elapsed();
    let ok = tokio::task::block_in_place(|| call(&lab, sip, "0302"));
    assert!(ok, "{}", tandem.log_tail(20));
    let cdrs = tandem.wait_cdrs(2, DEADLINE).await;
    assert_eq!(cdrs[1].get("group"), "gateway", "{:?}", cdrs[1]);
    eprintln!("WAN judged down {detected:?} after the cut");

    lab.heal().unwrap();
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 1.0, DEADLINE)
        .await;
    let ok = tokio::task::block_in_place(|| call(&lab, sip, "0303"));
    assert!(ok, "{}", tandem.log_tail(20));
    let cdrs = tandem.wait_cdrs(3, DEADLINE).await;
    assert_eq!(cdrs[2].get("group"), "central", "{:?}", cdrs[2]);
    let _ = pbx.kill();
    let _ = gateway.kill();
    let _ = pbx.wait();
    let _ = gateway.wait();
}
