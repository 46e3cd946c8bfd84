//! `tandem-load call` → the real `tandem` → two `tandem-load answer`
//! media servers, with RTP both ways: every call answered, every packet
//! back, calls spread over both servers. The load tool checks what SIPp
//! cannot: the audio that comes back through the relay.

mod common;

use common::{
    answerer, read_json, run_call, said, tandem_load, wait_members_up, Proc, SECS, TANDEM,
};
use testkit::{Tandem, TandemConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_calls_with_rtp_through_tandem_lose_nothing() {
    let bin = tandem_load();
    let dir = tempfile::tempdir().unwrap();
    let ports = [testkit::free_port(), testkit::free_port()];
    let jsons = [dir.path().join("ms1.json"), dir.path().join("ms2.json")];
    let mut servers: Vec<Proc> = ports
        .iter()
        .zip(&jsons)
        .map(|(&p, j)| answerer(&bin, p, j))
        .collect();
    for p in ports {
        testkit::wait_udp_bound(p, SECS(10)).await;
    }
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([
            ("ms1", format!("127.0.0.1:{}", ports[0]).parse().unwrap()),
            ("ms2", format!("127.0.0.1:{}", ports[1]).parse().unwrap()),
        ])
        .media_ports(400),
    )
    .await;
    // Both members up before the first call, so round-robin uses both.
    wait_members_up(&tandem, &["ms1", "ms2"]).await;

    let call_json = dir.path().join("call.json");
    let args: Vec<String> = [
        "--target",
        &tandem.sip_addr().to_string(),
        "--calls",
        "50",
        "--rate",
        "25",
        "--hold",
        "2s",
        "--quiet",
        "--per-call",
        "--json",
        call_json.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_call(&bin, &args, SECS(60)).await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");

    let r = read_json(&call_json);
    let calls = &r["calls"];
    for (key, want) in [
        ("attempted", 50),
        ("answered", 50),
        ("completed", 50),
        ("failed", 0),
        ("dropped", 0),
    ] {
        assert_eq!(calls[key], want, "{key}: {calls}\n{said}");
    }
    let rtp = &r["rtp"];
    assert_eq!(rtp["calls"], 50, "{rtp}");
    assert_eq!(rtp["packets_lost"], 0, "no loss through the relay: {rtp}");
    assert_eq!(rtp["calls_without_packets"], 0, "{rtp}");
    assert_eq!(rtp["ssrc_changes"], 0, "{rtp}");
    // 2 s of hold at 50 packets/s, echoed by the servers through the relay.
    assert!(
        rtp["packets_received"].as_u64().unwrap() >= 50 * 80,
        "{rtp}"
    );
    for c in r["per_call"].as_array().expect("per-call records") {
        assert_eq!(c["rtp"]["lost"], 0, "{c}");
    }

    // Every call ended at both ends: one CDR each, nothing left in Tandem.
    let cdrs = tandem.wait_cdrs(50, SECS(10)).await;
    assert_eq!(cdrs.len(), 50);
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_calls_active", &[]), 0.0, "{}", m.text());
    let mut answered = Vec::new();
    for (s, j) in servers.iter_mut().zip(&jsons) {
        assert!(s.terminate(SECS(10)), "answerer did not exit on SIGTERM");
        let a = read_json(j);
        assert_eq!(a["answered"], a["byes"], "{a}");
        assert_eq!(a["active_at_end"], 0, "{a}");
        assert_eq!(a["rtp"]["packets_lost"], 0, "{a}");
        answered.push(a["answered"].as_u64().unwrap());
    }
    assert_eq!(answered.iter().sum::<u64>(), 50, "{answered:?}");
    assert!(
        answered.iter().all(|&n| n >= 20),
        "round-robin spreads the calls: {answered:?}"
    );
}
