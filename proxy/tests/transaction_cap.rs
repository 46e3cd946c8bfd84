//! `limits.max_transactions` caps the live server transactions only: the
//! ones a finished call leaves waiting out their timers for 32 s (its
//! INVITE in RFC 6026 Accepted, its BYE in Timer J) are counted apart and
//! never refuse a call. With a cap of 50 and SIPp placing 300 short calls
//! at 50 a second, the waiting ones (two per call, 32 s each) pass the cap
//! after 25 calls; every call must still complete.

mod common;

use common::{media_server, scenario, SECS, TANDEM};
use testkit::{wait_for, Sipp, Tandem, TandemConfig};

const CALLS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_call_rate_is_not_refused_by_the_transactions_waiting_out_their_timers() {
    let ms = media_server(None, false).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())])
            .extra_toml("[limits]\nmax_transactions = 50\nstranger_transactions = 10\n"),
    )
    .await;
    // INVITE, ACK, 100 ms, BYE (deploy/sipp/uac.xml); 300 calls at 50/s.
    let out = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", &CALLS.to_string(), "-r", "50", "-d", "100"])
        .run(SECS(20))
        .await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), CALLS, 0),
        "every call completes\n{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    // The finished calls' transactions are still there, waiting, far
    // more of them than the cap; none was refused or evicted.
    let m = wait_for("the stats of the last calls", SECS(10), || async {
        let m = tandem.try_metrics().await?;
        let waiting = m.get("tandem_sip_server_transactions", &[("state", "waiting")]);
        if waiting >= 2.0 * 50.0 {
            Ok(m)
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;
    assert_eq!(
        m.get("tandem_sip_overload_total", &[("action", "rejected_503")]),
        0.0
    );
    assert_eq!(
        m.get("tandem_sip_server_transactions_evicted_total", &[]),
        0.0
    );
    assert!(m.get("tandem_sip_server_transactions", &[("state", "live")]) <= 50.0);
}
