//! The WAN to a central site, end to end on loopback (the namespace
//! testbed with a cut WAN link comes with the branch topology): the real
//! `tandem` with a `[[wan]]` whose evidence is the central PBX group, a
//! fallback rule `wan = "down"` to a local gateway, SIPp as the PBX, the
//! gateway and the trunk. The PBX dies → the WAN is judged down (metric,
//! the call up across it ended with CDR reason `wan_down`) → new calls
//! go to the gateway; the PBX returns → after the hold-down new calls go
//! central again; the operator forces the WAN down and back to auto.

use std::time::Duration;

use testkit::{Sipp, SippProcess, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const DEADLINE: Duration = Duration::from_secs(15);

async fn uas(port: Option<u16>) -> SippProcess {
    let mut sipp = Sipp::builtin("uas", None).arg("-aa");
    if let Some(p) = port {
        sipp = sipp.with_port(p);
    }
    let mut p = sipp.spawn();
    p.wait_ready(Duration::from_secs(5)).await;
    p
}

/// One call from the trunk to `user`; the CDR's group.
async fn call(tandem: &Tandem, user: &str, n: usize) -> String {
    let out = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-s", user, "-m", "1", "-d", "200"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.successful, 1, "{}\n{}", out.log, tandem.log_tail(30));
    let cdrs = tandem.wait_cdrs(n, DEADLINE).await;
    cdrs[n - 1].get("group").to_owned()
}

#[tokio::test]
async fn a_dead_central_site_sends_calls_to_the_gateway_until_it_returns() {
    let media = uas(None).await;
    let mut pbx = uas(None).await;
    let pbx_port = pbx.addr().port();
    let gateway = uas(None).await;
    let config = TandemConfig::new([("ms1", media.addr())])
        .health(500, 300, 2, 1)
        .extra_toml(&format!(
            "[[group]]\nname = \"central\"\nresume = false\n[group.health]\nfailures_to_down = 5\n[[group.member]]\nname = \"pbx\"\naddress = \"{}\"\n\n\
             [[group]]\nname = \"gateway\"\nprobe = \"off\"\n[[group.member]]\nname = \"gw\"\naddress = \"{}\"\n\n\
             [[wan]]\nname = \"dc\"\ngroups = [\"central\"]\nfailures_to_down = 3\nsuccesses_to_up = 2\nhold_down_s = 2\n\n\
             [[rule]]\nname = \"out-local\"\nruri_user_prefix = \"0\"\nwan = \"down\"\ngroup = \"gateway\"\n\n\
             [[rule]]\nname = \"out-central\"\nruri_user_prefix = \"0\"\ngroup = \"central\"\n",
            pbx.addr(),
            gateway.addr()
        ));
    let tandem = Tandem::start(TANDEM, config).await;
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 1.0, DEADLINE)
        .await;
    assert_eq!(call(&tandem, "0301", 1).await, "central");

    // A call up across the WAN when the central site dies.
    let mut long = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-s", "0302", "-m", "1", "-d", "30000"])
        .spawn();
    long.wait_count("_200_Recv", 1, DEADLINE).await;
    pbx.kill().await;
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 0.0, DEADLINE)
        .await;
    let cdrs = tandem.wait_cdrs(2, DEADLINE).await;
    assert_eq!(cdrs[1].get("reason"), "wan_down", "{:?}", cdrs[1]);
    long.kill().await;
    // New calls: the fallback rule, to the gateway.
    assert_eq!(call(&tandem, "0303", 3).await, "gateway");

    // The PBX returns (same port): after 2 live rounds and the 2 s hold
    // down, calls go central again.
    let _pbx = uas(Some(pbx_port)).await;
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 1.0, DEADLINE)
        .await;
    assert_eq!(call(&tandem, "0304", 4).await, "central");

    // Planned work: forced down, then back to the evidence.
    let forced = tandem
        .admin_request_with_token("POST", "/wan/dc/down")
        .await
        .unwrap();
    assert_eq!((forced.status, forced.body.as_str()), (200, "down\n"));
    assert_eq!(call(&tandem, "0305", 5).await, "gateway");
    let auto = tandem
        .admin_request_with_token("POST", "/wan/dc/auto")
        .await
        .unwrap();
    assert_eq!((auto.status, auto.body.as_str()), (200, "up\n"));
    assert_eq!(call(&tandem, "0306", 6).await, "central");
    let listed = tandem.admin_request("GET", "/wan", &[], "").await.unwrap();
    assert!(
        listed.body.contains("\"forced\": \"auto\""),
        "{}",
        listed.body
    );
    // The status tells how long the branch ran on its fallback routes,
    // and why the WAN changed last.
    let status = tandem
        .admin_request("GET", "/status", &[], "")
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let wan = &status["wan"][0];
    assert_eq!(wan["state"], "up", "{status}");
    assert!(wan["fallback_total_s"].as_u64() >= Some(2), "{status}");
    assert!(
        wan["last_change"].as_str().unwrap().contains("operator"),
        "{status}"
    );
    let m = tandem.metrics().await;
    assert!(
        m.get("tandem_wan_fallback_seconds_total", &[("wan", "dc")]) >= 2.0,
        "{}",
        m.text()
    );
    // A transition is a change: two downs, two ups, none at start.
    assert_eq!(
        m.get(
            "tandem_wan_transitions_total",
            &[("wan", "dc"), ("to", "up")]
        ),
        2.0,
        "{}",
        m.text()
    );
    assert!(
        m.get(
            "tandem_wan_transitions_total",
            &[("wan", "dc"), ("to", "down")]
        ) >= 2.0,
        "{}",
        m.text()
    );
}

/// A WAN judged by a probe host alone, with no group probed at all: its
/// rounds still run, and the host's death takes it down.
#[tokio::test]
async fn a_wan_with_only_a_probe_host_is_judged_without_any_probed_group() {
    let media = uas(None).await;
    let mut probe = uas(None).await;
    let config = TandemConfig::new([("ms1", media.addr())])
        .without_health()
        .extra_toml(&format!(
            "[[wan]]\nname = \"dc\"\nprobe_hosts = [\"{}\"]\nfailures_to_down = 2\n",
            probe.addr()
        ));
    let tandem = Tandem::start(TANDEM, config).await;
    probe.kill().await;
    tandem
        .wait_metric("tandem_wan_state", &[("wan", "dc")], 0.0, DEADLINE)
        .await;
}
