//! `sip.shards = 2`: SIPp places calls through Tandem to a SIPp media
//! server; the kernel's steering program spreads the calls over both
//! shards by Call-ID, and every answer (leg A's requests, leg B's
//! responses, the member's OPTIONS answers) reaches the shard that holds
//! its call, so every call completes. Without the steering the kernel
//! hashes by address: SIPp's one port lands on one shard only, and the
//! media server's answers to the other shard's calls are lost.

mod common;

use common::{
    load_call_args, media_server, read_json, run_call, said, tandem_load, wait_members_up, SECS,
};
use testkit::{wait_for, Sipp, Tandem, TandemConfig};

const CALLS: u64 = 40;

/// Each shard received messages (else a test proves nothing of shard 1).
fn both_shards_received(m: &testkit::Metrics) {
    for shard in ["0", "1"] {
        assert!(
            m.get("tandem_shard_messages_received_total", &[("shard", shard)]) > 0.0,
            "shard {shard} received nothing: {}",
            m.text()
        );
    }
}

/// `calls` calls from SIPp at `rate` per second, each held `hold_ms`:
/// every one completes.
async fn all_calls_complete(tandem: &Tandem, calls: u64, rate: u32, hold_ms: u32) {
    let out = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args([
            "-d",
            &hold_ms.to_string(),
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .run(SECS(60))
        .await;
    assert_calls(&out, tandem, (calls, 0));
}

/// SIPp's calls: (successful, failed).
fn assert_calls(out: &testkit::SippOutcome, tandem: &Tandem, want: (u64, u64)) {
    assert_eq!(
        (out.stat("SuccessfulCall(C)"), out.stat("FailedCall(C)")),
        want,
        "{}\n{}",
        out.log,
        tandem.log_tail(40)
    );
}

/// Tandem with two shards and `extra` TOML, its one member (a SIPp
/// media server) up.
async fn two_shards_to_one_member(extra: &str) -> (testkit::SippProcess, Tandem) {
    testkit::require_sipp();
    let ms = media_server(None, false).await;
    let tandem = Tandem::start(
        common::TANDEM,
        TandemConfig::new([("ms1", ms.addr())])
            .shards(2)
            .media_ports(400)
            .extra_toml(extra),
    )
    .await;
    wait_members_up(&tandem, &["ms1"]).await;
    (ms, tandem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_carry_calls_and_every_call_completes() {
    let (mut ms, tandem) = two_shards_to_one_member("").await;

    // 40 calls at 20/s, each held 1.5 s: both shards hold calls at once.
    let mut uac = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-m", &CALLS.to_string(), "-r", "20", "-d", "1500"])
        .args(["-timeout", "40s", "-timeout_error"])
        .spawn();
    let shard_calls = |m: &testkit::Metrics, shard: &str| {
        m.value("tandem_shard_calls", &[("shard", shard)])
            .unwrap_or(0.0)
    };
    wait_for("calls in progress on both shards", SECS(20), || async {
        let m = tandem.try_metrics().await?;
        if shard_calls(&m, "0") > 0.0 && shard_calls(&m, "1") > 0.0 {
            Ok(())
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;
    // `GET /calls` asks every shard and merges: calls of both shards are
    // listed (shard 0 numbers its calls 1, 3, 5…, shard 1 2, 4, 6…).
    wait_for("calls of both shards in GET /calls", SECS(20), || async {
        let answer = tandem.admin_request_with_token("GET", "/calls").await?;
        let calls: serde_json::Value =
            serde_json::from_str(&answer.body).map_err(|e| format!("{e}: {}", answer.body))?;
        let ids: Vec<u64> = calls
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_u64()).collect())
            .unwrap_or_default();
        if ids.iter().any(|id| id % 2 == 1) && ids.iter().any(|id| id % 2 == 0) {
            Ok(())
        } else {
            Err(answer.body)
        }
    })
    .await;
    let out = uac.wait_exit(SECS(60)).await;
    assert_calls(&out, &tandem, (CALLS, 0));

    let m = tandem.metrics().await;
    both_shards_received(&m);
    assert!(
        m.get("tandem_shard_steered_total", &[("by", "call_id")]) >= (CALLS * 4) as f64,
        "{}",
        m.text()
    );
    // The series `server::run` publishes that the sharded node must
    // publish too: the shared relay's media quality (from its first
    // second, every 5 s) and the stray responses dropped as not ours,
    // summed over the shards' transaction layers (0 here, but there).
    for (name, labels) in [
        ("tandem_rtp_streams_receiving", &[][..]),
        ("tandem_rtp_loss_ratio", &[]),
        ("tandem_rtp_jitter_mean_seconds", &[]),
        ("tandem_rtp_jitter_max_seconds", &[]),
        (
            "tandem_sip_refused_total",
            &[("reason", "unverified_response")],
        ),
    ] {
        assert!(
            m.value(name, labels).is_some(),
            "no {name}{labels:?}: {}",
            m.text()
        );
    }
    // Every call ended on both shards.
    wait_for("no call left", SECS(10), || async {
        let m = tandem.try_metrics().await?;
        let left = shard_calls(&m, "0") + shard_calls(&m, "1");
        if left == 0.0 {
            Ok(())
        } else {
            Err(format!("{left} calls left"))
        }
    })
    .await;
    // The node-wide SIP series are every shard's endpoint summed, not
    // one shard's. The media server goes first: its answers to the
    // probes (every 500 ms, to shard 0) would keep moving the figures,
    // and the per-shard series and the sum are published on different
    // ticks. Then each call brought at least 6 messages in: leg A's
    // INVITE, ACK and BYE from the caller, leg B's 180, 200 and the
    // BYE's 200 from the media server.
    ms.kill().await;
    wait_for(
        "the node's SIP messages received: the shards' sum",
        SECS(10),
        || async {
            let m = tandem.try_metrics().await?;
            let node = m.get(
                "tandem_sip_messages_received_total",
                &[("transport", "udp")],
            );
            let shards = m.get("tandem_shard_messages_received_total", &[]);
            if node == shards && node >= (CALLS * 6) as f64 {
                Ok(())
            } else {
                Err(format!(
                    "node {node}, shards' sum {shards}, calls' least {}",
                    CALLS * 6
                ))
            }
        },
    )
    .await;
}

/// Call survival with two shards: the media server holding every call is
/// killed; shard 0 finds it down by its probes (their answers come back
/// to it), shard 1 follows its finding, and each resumes its own calls
/// on the other member, with the caller's RTP (through the shared relay)
/// coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_resume_their_calls_when_the_media_server_dies() {
    const CALLS: u64 = 10;
    let bin = tandem_load();
    let mut ms1 = media_server(None, true).await;
    let mut ms2 = media_server(None, true).await;
    let tandem = Tandem::start(
        common::TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())])
            .strategy("sequential")
            .health(200, 150, 2, 2)
            .shards(2)
            .media_ports(400),
    )
    .await;
    wait_members_up(&tandem, &["ms1", "ms2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("call.json");
    // 10 calls of 8 s; at 2 s ms1 (which holds them all) is killed.
    let mut args = load_call_args(&tandem, CALLS as u32, "8s", &json, &["--per-call"]);
    let kill = format!("kill -9 {}", ms1.pid().expect("ms1 runs"));
    args.extend(["--fail-at", "2", "--fail-cmd", &kill].map(String::from));
    let out = run_call(&bin, &args, SECS(60)).await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    for (key, want) in [("answered", CALLS), ("completed", CALLS), ("failed", 0)] {
        assert_eq!(r["calls"][key], want, "{key}: {}\n{said}", r["calls"]);
    }
    let f = &r["failure"];
    assert_eq!(f["calls_up"], CALLS, "{f}");
    let gap = f["rtp"]["gap_ms"]["max"].as_f64().unwrap();
    assert!(gap < 4000.0, "audio did not come back: {f}\n{said}");
    let m = tandem.metrics().await;
    assert_eq!(
        m.get(
            "tandem_calls_resumed_total",
            &[("from", "ms1"), ("to", "ms2"), ("outcome", "ok")]
        ),
        CALLS as f64,
        "{}",
        m.text()
    );
    ms1.kill().await;
    ms2.kill().await;
}

/// `[cdr]` with two shards: one writer, a sender in every shard; every
/// call of both shards has its end line in the one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_write_every_calls_cdr_line_to_the_one_file() {
    const CALLS: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let (mut ms, tandem) =
        two_shards_to_one_member(&format!("[cdr]\npath = \"{}\"\n", path.display())).await;
    all_calls_complete(&tandem, CALLS, 30, 300).await;
    let m = tandem.metrics().await;
    both_shards_received(&m);
    let ends = wait_for("an end line per call", SECS(10), || async {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let ends: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|l: &serde_json::Value| l["type"] == "end")
            .collect();
        if ends.len() as u64 >= CALLS {
            Ok(ends)
        } else {
            Err(format!("{} end lines\n{}", ends.len(), tandem.log_tail(20)))
        }
    })
    .await;
    let call_ids: std::collections::HashSet<_> = ends
        .iter()
        .map(|l| l["a_call_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(call_ids.len() as u64, CALLS, "{ends:?}");
    ms.kill().await;
}

/// `limits.max_calls` with two shards is the node's cap: calls held on
/// both shards count together, and the calls beyond it get 503 whichever
/// shard their Call-ID lands on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_cap_holds_for_the_node_across_two_shards() {
    const CAP: u64 = 3;
    const CALLS: u64 = 12;
    let (mut ms, tandem) =
        two_shards_to_one_member(&format!("[limits]\nmax_calls = {CAP}\n")).await;
    // 12 calls in 0.25 s, each held 5 s: all are placed while the first
    // ones are up.
    let out = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-m", &CALLS.to_string(), "-r", "48", "-d", "5000"])
        .args(["-timeout", "40s"])
        .run(SECS(60))
        .await;
    let m = tandem.metrics().await;
    // The refused calls were spread over both shards (each received
    // INVITEs), yet only CAP calls were taken in all.
    both_shards_received(&m);
    assert_calls(&out, &tandem, (CAP, CALLS - CAP));
    ms.kill().await;
}

/// A member played by a bare UDP socket: it counts the OPTIONS and the
/// INVITEs it gets, and answers the OPTIONS 200 when `answers` (never an
/// INVITE). Ends with the test's runtime.
struct CountingMember {
    addr: std::net::SocketAddr,
    options: std::sync::Arc<std::sync::atomic::AtomicU64>,
    invites: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingMember {
    async fn start(answers: bool) -> CountingMember {
        use std::sync::atomic::Ordering;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let options = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let invites = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (o, i) = (options.clone(), invites.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.starts_with("INVITE ") {
                    i.fetch_add(1, Ordering::Relaxed);
                } else if text.starts_with("OPTIONS ") {
                    o.fetch_add(1, Ordering::Relaxed);
                    if answers {
                        let _ = socket.send_to(ok_to(&text).as_bytes(), from).await;
                    }
                }
            }
        });
        CountingMember {
            addr,
            options,
            invites,
        }
    }

    fn options(&self) -> u64 {
        self.options.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn invites(&self) -> u64 {
        self.invites.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A 200 to `request`: its Via, From, To, Call-ID and CSeq (a To tag
/// added).
fn ok_to(request: &str) -> String {
    let mut answer = String::from("SIP/2.0 200 OK\r\n");
    for line in request.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                answer += line;
                answer += "\r\n";
            }
            "to" | "t" => {
                answer += line;
                answer += ";tag=counting\r\n";
            }
            _ => {}
        }
    }
    answer + "Content-Length: 0\r\n\r\n"
}

/// Two shards, one prober: shard 0 alone sends the OPTIONS keepalives
/// (at the group's interval, not twice that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_shards_only_one_probes_each_member() {
    const INTERVAL_MS: u64 = 300;
    const WINDOW_MS: u64 = 3000;
    let member = CountingMember::start(true).await;
    let tandem = Tandem::start(
        common::TANDEM,
        TandemConfig::new([("counted", member.addr)])
            .health(INTERVAL_MS, 200, 1, 1)
            .shards(2),
    )
    .await;
    wait_members_up(&tandem, &["counted"]).await;
    let before = member.options();
    tokio::time::sleep(std::time::Duration::from_millis(WINDOW_MS)).await;
    let probes = member.options() - before;
    // One prober: about WINDOW / INTERVAL = 10; two would send about 20.
    let one_prober = WINDOW_MS / INTERVAL_MS;
    assert!(
        (one_prober / 2..=one_prober + one_prober / 3).contains(&probes),
        "{probes} OPTIONS in {WINDOW_MS} ms at {INTERVAL_MS} ms\n{}",
        tandem.log_tail(20)
    );
}

/// The shard that does not probe follows shard 0's findings: a member
/// that never answers is down on both shards, and no call of either
/// shard is sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_that_does_not_probe_sends_no_call_to_a_member_shard_0_found_down() {
    const CALLS: u64 = 20;
    testkit::require_sipp();
    let dead = CountingMember::start(false).await;
    let mut ms = media_server(None, false).await;
    let tandem = Tandem::start(
        common::TANDEM,
        TandemConfig::new([("ms1", ms.addr()), ("dead", dead.addr)])
            .strategy("round-robin")
            .health(200, 150, 2, 2)
            .shards(2)
            .media_ports(400),
    )
    .await;
    wait_members_up(&tandem, &["ms1"]).await;
    tandem
        .wait_metric(
            "tandem_media_server_up",
            &[("member", "dead")],
            0.0,
            SECS(10),
        )
        .await;
    all_calls_complete(&tandem, CALLS, 20, 200).await;
    both_shards_received(&tandem.metrics().await);
    assert_eq!(dead.invites(), 0, "{}", tandem.log_tail(40));
    ms.kill().await;
}

/// The status page with two shards counts the node's calls: shard 1's
/// are added to shard 0's view (they are spread by Call-ID; all ten on
/// shard 0 would be a 1 in 1,024 chance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_counts_the_calls_of_both_shards() {
    const CALLS: u64 = 10;
    let (mut ms, tandem) = two_shards_to_one_member("").await;
    // Ten calls in half a second, each held 8 s: all up at once for
    // about 7 s.
    let mut uac = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .args(["-m", &CALLS.to_string(), "-r", "20", "-d", "8000"])
        .args(["-timeout", "40s", "-timeout_error"])
        .spawn();
    wait_for("the page's count of calls", SECS(10), || async {
        let answer = tandem.admin_request_with_token("GET", "/overview").await?;
        let page: serde_json::Value =
            serde_json::from_str(&answer.body).map_err(|e| format!("{e}: {}", answer.body))?;
        if page["calls"]["active"] == CALLS {
            Ok(())
        } else {
            Err(format!("{}", page["calls"]))
        }
    })
    .await;
    let out = uac.wait_exit(SECS(60)).await;
    assert_calls(&out, &tandem, (CALLS, 0));
    ms.kill().await;
}
