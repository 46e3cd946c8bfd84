//! `limits.max_transactions` caps the live server transactions only: the
//! ones a finished call leaves waiting out their timers for 32 s (its
//! INVITE in RFC 6026 Accepted, its BYE in Timer J) are counted apart and
//! never refuse a call. With a cap of 50 and SIPp placing 300 short calls
//! at 50 a second, the waiting ones (two per call, 32 s each) pass the cap
//! after 25 calls; every call must still complete.

mod common;

use common::{media_server, scenario, SECS, TANDEM};
use sipcore::dialog::Dialog;
use sipcore::endpoint::{Endpoint, EndpointConfig};
use sipcore::message::Message;
use sipcore::transaction::TuEvent;
use sipcore::transport::{Target, TransportKind};
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

/// With room for only two waiting transactions, other calls' transactions
/// end the caller's INVITE transaction (RFC 6026 Accepted) before its ACK
/// comes. Tandem's 2xx retransmissions must still reach the caller (sent
/// statelessly once the transaction is gone): a caller whose first 200 was
/// lost would otherwise never be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_is_retransmitted_after_its_transaction_was_ended_early() {
    let ms = media_server(None, false).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())]).extra_toml(
            "[limits]\nmax_transactions = 50\nstranger_transactions = 1\nwaiting_transactions = 2\n",
        ),
    )
    .await;
    // A caller that takes the first 200 and does not ACK it.
    let (ep, mut events) =
        Endpoint::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap();
    let me = ep.local_addr();
    let target = Target {
        transport: TransportKind::Udp,
        addr: tandem.sip_addr(),
        connection: None,
    };
    let sdp = "v=0\r\no=late 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let (invite, contact) = common::uac_invite(
        me,
        tandem.sip_addr(),
        "late",
        "late-ack@127.0.0.1",
        "z9hG4bKlateack1",
        sdp.to_owned(),
    );
    ep.layer().send_request(invite.clone(), target).unwrap();
    let ok = next_200(&mut events, SECS(5), &tandem).await;

    // Other calls' INVITEs and BYEs wait out their timers, and the two
    // places fill: the oldest waiting one, the caller's INVITE, is ended.
    let out = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "10", "-r", "20", "-d", "10"])
        .run(SECS(20))
        .await;
    assert_eq!(out.successful, 10, "{}\n{}", out.log, tandem.log_tail(30));
    wait_for("a waiting transaction ended early", SECS(5), || async {
        let m = tandem.try_metrics().await?;
        if m.get("tandem_sip_server_transactions_evicted_total", &[]) >= 1.0 {
            Ok(())
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;
    // Retransmissions of the 200 after that still come (T2 = 4 s apart at
    // most).
    while events.try_recv().is_some() {}
    let again = next_200(&mut events, SECS(6), &tandem).await;
    assert_eq!(again.call_id(), ok.call_id());

    let dialog = Dialog::from_uac_response(&invite, &ok, &contact).unwrap();
    let ack = dialog
        .ack(1, &format!("SIP/2.0/UDP {me};branch=z9hG4bKlateack2"))
        .build();
    ep.send_raw(target, ack).unwrap();
    ep.shutdown().await;
}

/// The next 200 (a response of a transaction, or a stray one once the
/// caller's own transaction has passed it on).
async fn next_200(
    events: &mut sipcore::transaction::TuReceiver,
    deadline: std::time::Duration,
    tandem: &Tandem,
) -> Message {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(
                TuEvent::Response { response, .. } | TuEvent::StrayResponse { response, .. },
            )) if response.status() == Some(200) => return response,
            Ok(Some(_)) => {}
            Ok(None) => panic!("endpoint closed"),
            Err(_) => panic!("no 200 within {deadline:?}\n{}", tandem.log_tail(20)),
        }
    }
}
