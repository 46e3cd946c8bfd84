//! `tandem-load call`: the UAC.
//!
//! One task runs the SIP side of every call: it launches calls on
//! schedule (rate and/or concurrency), handles the endpoint's TU events,
//! and fires the per-call timers (setup timeout, end of hold) from one
//! heap. The RTP side runs in the [`MediaEngine`].
//!
//! A call goes Inviting → Up (first 2xx: ACK, media on, hold timer) →
//! Hanging (BYE sent) → done. The transaction layer absorbs retransmitted
//! provisional and error responses; a retransmitted 2xx reaches us and is
//! ACKed again from the ACK kept in the call, and is never taken as a new
//! answer. A call not answered within the setup timeout fails with
//! `timeout` (CANCEL if it rang) and is kept as TimedOut, so that a late
//! 2xx is still ACKed and hung up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sipcore::dialog::{Dialog, DialogError};
use sipcore::endpoint::Endpoint;
use sipcore::message::{Message, Method, RequestBuilder};
use sipcore::transaction::{ClientKey, ServerKey, TransactionKey, TransactionLayer, TuEvent};
use sipcore::transport::{Target, TransportKind};
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};

use crate::cli::CallConfig;
use crate::error::{Error, Result};
use crate::fail::{self, CommandOutcome};
use crate::media::{MediaEngine, Mode, Stream};
use crate::progress::Progress;
use crate::report::{
    CallCounts, CallRecord, CallReport, CallSettings, CpsReport, FailureReport, Outcome, SipCounts,
};
use crate::sip::{self, Unacked, AGENT, ALLOW};
use crate::stats::{Latency, Timeline};

/// How long the failure command may run.
const FAIL_CMD_LIMIT: Duration = Duration::from_secs(10);
/// After an interrupt, how long calls get to hang up.
const INTERRUPT_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Inviting,
    Up,
    Hanging,
    /// Failed with `timeout`; kept so that a late 2xx can be ACKed and
    /// hung up.
    TimedOut,
}

impl State {
    fn is_active(self) -> bool {
        self != State::TimedOut
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    SetupTimeout,
    HoldOver,
}

struct Call {
    record: CallRecord,
    state: State,
    invite: Message,
    sent_at: Instant,
    rang: bool,
    dialog: Option<Dialog>,
    /// The ACK of our 2xx, kept to answer 2xx retransmissions.
    ack: Option<(Target, Bytes)>,
    stream: Option<Arc<Stream>>,
    /// Our SDP session id and version (re-INVITEs answer with version+1).
    sdp_id: u64,
    sdp_version: u64,
    /// The hold time was cut short (interrupt, drain deadline).
    cut_short: bool,
}

struct Failure {
    at: Duration,
    result: Option<oneshot::Receiver<CommandOutcome>>,
}

/// The UAC of one run.
struct Uac {
    cfg: CallConfig,
    ep: Endpoint,
    layer: TransactionLayer,
    local: SocketAddr,
    contact: String,
    media: MediaEngine,
    epoch: Instant,
    run: String,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    next_idx: u64,
    next_branch: u64,
    active: u64,
    launching: bool,
    next_launch: Instant,
    drain_deadline: Option<Instant>,
    interrupted: bool,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerKind)>>,
    unacked: Unacked,
    records: Vec<CallRecord>,
    counts: CallCounts,
    sip: SipCounts,
    latency: Latency,
    timeline: Timeline,
    first_attempt: Option<Duration>,
    last_attempt: Option<Duration>,
    failure: Option<Failure>,
    progress: Progress,
    last_progress: (Instant, u64),
}

/// Runs the calls as configured and returns the report. Errors only for
/// what prevents the run (the SIP address cannot be bound).
pub async fn run(cfg: CallConfig) -> Result<CallReport> {
    let (ep, mut events) = sip::bind(cfg.local, cfg.media_ip)?;
    let local = ep.local_addr();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let epoch = Instant::now();
    if !cfg.quiet {
        eprintln!(
            "tandem-load call: {} → {} ({}), RTP {}",
            local,
            cfg.target,
            cfg.transport,
            if cfg.rtp { "on" } else { "off" }
        );
    }
    let mut uac = Uac {
        contact: format!("<{}>", sip::contact_uri(cfg.transport, local)),
        layer: ep.layer().clone(),
        media: MediaEngine::start(cfg.media_ip, epoch),
        progress: Progress::new(cfg.quiet),
        cfg,
        ep: ep.clone(),
        local,
        epoch,
        run: format!("{:08x}", rand::random::<u32>()),
        calls: HashMap::new(),
        by_call_id: HashMap::new(),
        next_idx: 0,
        next_branch: 0,
        active: 0,
        launching: true,
        next_launch: epoch,
        drain_deadline: None,
        interrupted: false,
        timers: BinaryHeap::new(),
        unacked: Unacked::default(),
        records: Vec::new(),
        counts: CallCounts::default(),
        sip: SipCounts::default(),
        latency: Latency::new(),
        timeline: Timeline::default(),
        first_attempt: None,
        last_attempt: None,
        failure: None,
        last_progress: (epoch, 0),
    };
    let fail_at = uac.cfg.fail_at.map(|d| epoch + d);
    let mut fail_pending = fail_at.is_some();
    let mut housekeeping = tokio::time::interval(Duration::from_millis(20));
    let mut progress =
        tokio::time::interval_at(epoch + Duration::from_secs(1), Duration::from_secs(1));
    let mut signals = Signals::new()?;

    loop {
        if !uac.launching && uac.active == 0 {
            break;
        }
        let next_launch = uac.next_launch_at();
        let next_timer = uac.timers.peek().map(|Reverse((at, ..))| *at);
        let drain = uac.drain_deadline;
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => uac.on_event(ev),
                None => break,
            },
            _ = sleep_opt(next_launch) => uac.launch_due(),
            _ = sleep_opt(next_timer) => uac.fire_timers(),
            _ = sleep_opt(drain) => {
                uac.drain_expired();
                break;
            }
            _ = sleep_opt(fail_at.filter(|_| fail_pending)) => {
                fail_pending = false;
                uac.inject_failure();
            }
            _ = housekeeping.tick() => uac.housekeeping(),
            _ = progress.tick() => uac.report_progress(),
            _ = signals.recv() => uac.interrupt(),
        }
        let since = uac.since_start();
        uac.timeline.active(since, uac.active);
    }
    uac.progress.finish();
    // Let the last BYEs and ACKs leave before the endpoint goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = uac.finish(started_unix_ms).await;
    ep.shutdown().await;
    Ok(report)
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt())
            .map_err(|e| Error::io("installing the SIGINT handler", e))?;
        let term = signal(SignalKind::terminate())
            .map_err(|e| Error::io("installing the SIGTERM handler", e))?;
        Ok(Signals { int, term })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

impl Uac {
    fn since_start(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn branch(&mut self, idx: u64) -> String {
        self.next_branch += 1;
        format!("z9hG4bK{}.{idx}.{}", self.run, self.next_branch)
    }

    /// The call a client transaction belongs to, from its branch.
    fn idx_of(&self, key: &ClientKey) -> Option<u64> {
        let rest = key
            .branch
            .strip_prefix("z9hG4bK")?
            .strip_prefix(&self.run)?;
        rest.strip_prefix('.')?.split('.').next()?.parse().ok()
    }

    fn via(&mut self, idx: u64) -> String {
        let branch = self.branch(idx);
        sip::via(self.cfg.transport, self.local, &branch)
    }

    fn target(&self) -> Target {
        Target {
            transport: self.cfg.transport,
            addr: self.cfg.target,
            connection: None,
        }
    }

    // ---- launching -------------------------------------------------------

    fn below_concurrency(&self) -> bool {
        self.cfg.concurrency.is_none_or(|c| self.active < c)
    }

    fn next_launch_at(&self) -> Option<Instant> {
        if !self.launching || !self.below_concurrency() {
            return None;
        }
        Some(match self.cfg.rate {
            Some(_) => self.next_launch,
            None => Instant::now(),
        })
    }

    fn check_launch_limits(&mut self) {
        if !self.launching {
            return;
        }
        let calls_done = self.cfg.calls.is_some_and(|n| self.next_idx >= n);
        let time_up = self.cfg.duration.is_some_and(|d| self.since_start() >= d);
        if calls_done || time_up {
            self.stop_launching(self.cfg.drain);
        }
    }

    fn stop_launching(&mut self, drain: Duration) {
        self.launching = false;
        let deadline = Instant::now() + drain;
        self.drain_deadline = Some(self.drain_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn launch_due(&mut self) {
        let now = Instant::now();
        // At most a burst of 200 per wake-up; the loop comes back at once.
        for _ in 0..200 {
            self.check_launch_limits();
            if !self.launching || !self.below_concurrency() {
                return;
            }
            if let Some(rate) = self.cfg.rate {
                if self.next_launch > now {
                    return;
                }
                // After a pause (concurrency limit) do not catch up with
                // more than a second's worth of calls.
                if now.saturating_duration_since(self.next_launch) > Duration::from_secs(1) {
                    self.next_launch = now;
                }
                self.next_launch += Duration::from_secs_f64(1.0 / rate);
            }
            self.launch();
        }
    }

    fn launch(&mut self) {
        let idx = self.next_idx;
        self.next_idx += 1;
        let now = Instant::now();
        let at = self.since_start();
        self.first_attempt.get_or_insert(at);
        self.last_attempt = Some(at);
        self.counts.attempted += 1;
        self.timeline.attempted(at);
        let call_id = format!("{}-{idx}@tandem-load", self.run);
        let mut record = CallRecord {
            call_id: call_id.clone(),
            started_s: at.as_secs_f64(),
            outcome: Outcome::Failed,
            reason: None,
            setup_ms: None,
            ended_s: at.as_secs_f64(),
            up_at_failure: false,
            rtp_sent: None,
            rtp: None,
        };
        let stream = if self.cfg.rtp {
            match self.media.bind() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind an RTP socket");
                    record.reason = Some(format!("local_rtp: {}", e.kind()));
                    self.finish_record(record);
                    return;
                }
            }
        } else {
            None
        };
        let media_addr = stream
            .as_ref()
            .map_or(SocketAddr::new(self.cfg.media_ip, 9), |s| s.local_addr());
        let sdp_id = rand::random::<u32>() as u64;
        let body = sip::sdp(media_addr, sdp_id, 1, stream.is_some());
        let via = self.via(idx);
        let target = self.cfg.target;
        let mut b = RequestBuilder::new(
            &Method::Invite,
            &format!("sip:{}@{}", self.cfg.user, sip::host_port(target)),
        )
        .header("Via", &via)
        .header(
            "From",
            &format!(
                "<sip:{}@{}>;tag={}",
                self.cfg.from_user,
                sip::uri_host(self.local.ip()),
                sip::token()
            ),
        )
        .header(
            "To",
            &format!("<sip:{}@{}>", self.cfg.user, sip::host_port(target)),
        )
        .header("Call-ID", &call_id)
        .header("CSeq", "1 INVITE")
        .header("Contact", &self.contact)
        .header("Allow", ALLOW)
        .header("User-Agent", AGENT);
        for (name, value) in &self.cfg.headers {
            b = b.header(name, value);
        }
        let invite = Message::parse(b.body("application/sdp", body).build())
            .expect("an INVITE we built parses");
        if let Err(e) = self.layer.send_request(invite.clone(), self.target()) {
            record.reason = Some("transport".into());
            tracing::debug!(error = %e, "INVITE not sent");
            if let Some(s) = stream {
                s.stop();
            }
            self.finish_record(record);
            return;
        }
        self.calls.insert(
            idx,
            Call {
                record,
                state: State::Inviting,
                invite,
                sent_at: now,
                rang: false,
                dialog: None,
                ack: None,
                stream,
                sdp_id,
                sdp_version: 1,
                cut_short: false,
            },
        );
        self.by_call_id.insert(call_id, idx);
        self.active += 1;
        self.timers.push(Reverse((
            now + self.cfg.setup_timeout,
            idx,
            TimerKind::SetupTimeout,
        )));
    }

    // ---- timers ------------------------------------------------------------

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, idx, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(state) = self.calls.get(&idx).map(|c| c.state) else {
                continue;
            };
            match (kind, state) {
                (TimerKind::SetupTimeout, State::Inviting) => self.setup_timed_out(idx),
                (TimerKind::HoldOver, State::Up) => self.hang_up(idx),
                _ => {}
            }
        }
    }

    fn setup_timed_out(&mut self, idx: u64) {
        let Some(call) = self.calls.get(&idx) else {
            return;
        };
        if call.rang {
            let cancel = build_cancel(&call.invite);
            let _ = self.layer.send_request(cancel, self.target());
            self.sip.cancels_sent += 1;
        }
        self.fail_call(idx, "timeout".into(), true);
    }

    /// Records an unanswered call as failed. `keep`: leave it in the table
    /// (TimedOut) for a late 2xx.
    fn fail_call(&mut self, idx: u64, reason: String, keep: bool) {
        let Some(call) = self.calls.get_mut(&idx) else {
            return;
        };
        if call.state == State::Inviting {
            self.active -= 1;
        }
        let mut record = call.record.clone();
        record.outcome = Outcome::Failed;
        record.reason = Some(reason);
        record.ended_s = self.epoch.elapsed().as_secs_f64();
        if let Some(stream) = call.stream.take() {
            stream.stop();
        }
        if keep {
            call.state = State::TimedOut;
        } else {
            self.remove(idx);
        }
        self.timeline.failed(self.since_start());
        self.finish_record(record);
    }

    fn remove(&mut self, idx: u64) -> Option<Call> {
        let call = self.calls.remove(&idx)?;
        self.by_call_id.remove(&call.record.call_id);
        self.unacked.forget_call(&call.record.call_id);
        Some(call)
    }

    /// Ends an answered call (Up or Hanging) with `outcome`.
    fn end_call(&mut self, idx: u64, outcome: Outcome, reason: Option<String>) {
        let Some(mut call) = self.remove(idx) else {
            return;
        };
        if call.state.is_active() {
            self.active -= 1;
        }
        let mut record = call.record.clone();
        record.outcome = outcome;
        record.reason = reason;
        record.ended_s = self.epoch.elapsed().as_secs_f64();
        if let Some(stream) = call.stream.take() {
            record.with_media(stream.stop());
        }
        self.timeline.ended(self.since_start());
        self.finish_record(record);
    }

    fn finish_record(&mut self, record: CallRecord) {
        self.counts.count(&record);
        self.records.push(record);
    }

    fn hang_up(&mut self, idx: u64) {
        let via = self.via(idx);
        let Some(call) = self.calls.get_mut(&idx) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let bye = dialog
            .request(&Method::Bye, &via)
            .header("User-Agent", AGENT)
            .build();
        let target = sip::uri_target(dialog.next_hop(), self.cfg.transport, self.cfg.target);
        call.state = State::Hanging;
        // The media ends with the BYE: the time after it is no gap.
        if let Some(stream) = call.stream.take() {
            call.record.with_media(stream.stop());
        }
        let bye = Message::parse(bye).expect("a BYE we built parses");
        if let Err(e) = self.layer.send_request(bye, target) {
            tracing::debug!(error = %e, "BYE not sent");
            self.end_call(idx, Outcome::Dropped, Some("bye_transport".into()));
        }
    }

    // ---- SIP events --------------------------------------------------------

    fn on_event(&mut self, ev: TuEvent) {
        match ev {
            TuEvent::Response { key, response } => self.on_response(&key, response),
            TuEvent::StrayResponse { response, .. } => self.on_stray(response),
            TuEvent::Request {
                key,
                request,
                source,
            } => self.on_request(key, request, source),
            TuEvent::Ack { ack, .. } => {
                self.unacked.ack(&ack);
                if let Some(&idx) = self.by_call_id.get(ack.call_id()) {
                    self.update_remote_media(idx, ack.body());
                }
            }
            TuEvent::Timeout { key, .. } => self.on_transaction_failure(&key, "timeout"),
            TuEvent::TransportError { key } => self.on_transaction_failure(&key, "transport"),
            TuEvent::Terminated { key } => {
                // A timed-out call is forgotten with its INVITE transaction.
                if let TransactionKey::Client(ck) = &key {
                    if ck.method == Method::Invite {
                        if let Some(idx) = self.idx_of(ck) {
                            if self
                                .calls
                                .get(&idx)
                                .is_some_and(|c| c.state == State::TimedOut)
                            {
                                self.remove(idx);
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_transaction_failure(&mut self, key: &TransactionKey, what: &str) {
        let TransactionKey::Client(ck) = key else {
            return;
        };
        let Some(idx) = self.idx_of(ck) else {
            return;
        };
        let Some(state) = self.calls.get(&idx).map(|c| c.state) else {
            return;
        };
        match (&ck.method, state) {
            (Method::Invite, State::Inviting) => self.fail_call(idx, what.into(), false),
            (Method::Bye, State::Hanging) => {
                self.end_call(idx, self.bye_outcome(idx), Some(format!("bye_{what}")))
            }
            _ => {}
        }
    }

    /// How a call whose BYE failed counts: dropped, unless its hold was cut
    /// short on purpose anyway.
    fn bye_outcome(&self, idx: u64) -> Outcome {
        match self.calls.get(&idx) {
            Some(c) if c.cut_short => Outcome::Unfinished,
            _ => Outcome::Dropped,
        }
    }

    fn on_response(&mut self, key: &ClientKey, response: Message) {
        let Some(idx) = self.idx_of(key) else {
            return;
        };
        let status = response.status().unwrap_or(0);
        match key.method {
            Method::Invite => self.on_invite_response(idx, status, response),
            Method::Bye => {
                if status < 200 || self.calls.get(&idx).map(|c| c.state) != Some(State::Hanging) {
                    return;
                }
                if (200..300).contains(&status) {
                    let cut_short = self.calls.get(&idx).is_some_and(|c| c.cut_short);
                    if cut_short {
                        let reason = if self.interrupted {
                            "interrupted"
                        } else {
                            "drain_deadline"
                        };
                        self.end_call(idx, Outcome::Unfinished, Some(reason.into()));
                    } else {
                        self.end_call(idx, Outcome::Completed, None);
                    }
                } else {
                    self.end_call(idx, self.bye_outcome(idx), Some(format!("bye_{status}")));
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, idx: u64, status: u16, response: Message) {
        let Some(call) = self.calls.get_mut(&idx) else {
            // Only a 2xx of a forgotten call matters: ACK and BYE it.
            if (200..300).contains(&status) {
                self.kill_stray(&response);
            }
            return;
        };
        match (status, call.state) {
            (100..=199, State::Inviting) => call.rang |= status > 100,
            (200..=299, State::Inviting) => self.answered(idx, response),
            (200..=299, State::Up | State::Hanging) => {
                let same = call
                    .dialog
                    .as_ref()
                    .is_some_and(|d| d.matches_response(&response));
                if same {
                    if let Some((target, ack)) = call.ack.clone() {
                        let _ = self.ep.send_raw(target, ack);
                    }
                    self.sip.ok_retransmissions_received += 1;
                } else {
                    self.sip.stray_answers += 1;
                    self.kill_stray(&response);
                }
            }
            (200..=299, State::TimedOut) => {
                // Counted once per late dialog: the first 2xx removes the
                // call, a retransmission then arrives as for a forgotten
                // call (ACK + BYE again, harmless).
                self.sip.late_answers += 1;
                self.remove(idx);
                self.kill_stray(&response);
            }
            (300..=699, State::Inviting) => {
                self.fail_call(idx, format!("status_{status}"), false);
            }
            _ => {}
        }
    }

    fn answered(&mut self, idx: u64, response: Message) {
        let via = self.via(idx);
        let now = Instant::now();
        let since = self.since_start();
        // After an interrupt a call answered late is hung up at once.
        let hold = if self.interrupted {
            Duration::ZERO
        } else {
            self.cfg.hold
        };
        let contact = self.contact.clone();
        let Some(call) = self.calls.get_mut(&idx) else {
            return;
        };
        let dialog = match Dialog::from_uac_response(&call.invite, &response, &contact) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "2xx without what a dialog needs");
                let ack = stray_ack(&response, &via, self.cfg.transport, self.cfg.target);
                if let Some((target, ack)) = ack {
                    let _ = self.ep.send_raw(target, ack);
                }
                let reason = match e {
                    DialogError::Incomplete(what) => format!("bad_2xx: {what}"),
                    other => format!("bad_2xx: {other}"),
                };
                self.fail_call(idx, reason, false);
                return;
            }
        };
        let setup = now.saturating_duration_since(call.sent_at);
        call.record.setup_ms = Some(setup.as_secs_f64() * 1000.0);
        self.latency.record(setup);
        self.counts.answered += 1;
        self.timeline.answered(since);
        let target = sip::uri_target(dialog.next_hop(), self.cfg.transport, self.cfg.target);
        let ack = dialog
            .ack(call.invite.cseq().seq, &via)
            .header("User-Agent", AGENT)
            .build();
        let _ = self.ep.send_raw(target, ack.clone());
        call.ack = Some((target, ack));
        call.dialog = Some(dialog);
        call.state = State::Up;
        if let Some(stream) = &call.stream {
            let remote = sip::remote_media(response.body());
            self.media.activate(stream, remote, Mode::Send);
        }
        if hold.is_zero() {
            call.cut_short = true;
            self.hang_up(idx);
        } else {
            self.timers
                .push(Reverse((now + hold, idx, TimerKind::HoldOver)));
        }
    }

    /// ACKs a 2xx that belongs to no call we keep (or to a second fork)
    /// and hangs its dialog up.
    fn kill_stray(&mut self, response: &Message) {
        let via = sip::via(
            self.cfg.transport,
            self.local,
            &format!("z9hG4bK{}", sip::token()),
        );
        if let Some((target, ack)) = stray_ack(response, &via, self.cfg.transport, self.cfg.target)
        {
            let _ = self.ep.send_raw(target, ack);
        }
        let Ok(mut dialog) = Dialog::from_uac_response(response, response, &self.contact) else {
            return;
        };
        let via = sip::via(
            self.cfg.transport,
            self.local,
            &format!("z9hG4bK{}", sip::token()),
        );
        let bye = dialog
            .request(&Method::Bye, &via)
            .header("User-Agent", AGENT)
            .build();
        let target = sip::uri_target(dialog.next_hop(), self.cfg.transport, self.cfg.target);
        if let Ok(bye) = Message::parse(bye) {
            let _ = self.layer.send_request(bye, target);
        }
    }

    fn on_stray(&mut self, response: Message) {
        let status = response.status().unwrap_or(0);
        if response.cseq().method != Method::Invite || !(200..300).contains(&status) {
            return;
        }
        // A 2xx retransmission after the INVITE transaction ended.
        match self.by_call_id.get(response.call_id()).copied() {
            Some(idx) => self.on_invite_response(idx, status, response),
            None => {
                self.sip.stray_answers += 1;
                self.kill_stray(&response);
            }
        }
    }

    fn on_request(&mut self, key: ServerKey, request: Message, _source: Target) {
        let layer = self.layer.clone();
        let method = request.method().cloned().unwrap_or(Method::Ack);
        let idx = self.by_call_id.get(request.call_id()).copied();
        match method {
            Method::Options => {
                self.sip.options_received += 1;
                sip::reply_options(&layer, &key, &request);
            }
            Method::Bye => {
                self.sip.byes_received += 1;
                let accepted = idx
                    .and_then(|i| self.calls.get_mut(&i))
                    .and_then(|c| c.dialog.as_mut())
                    .is_some_and(|d| d.on_remote_request(&request).is_ok());
                if !accepted {
                    sip::reply(&layer, &key, &request, 481);
                    return;
                }
                sip::reply(&layer, &key, &request, 200);
                let idx = idx.expect("accepted BYE has a call");
                // BYE glare: ours is under way and will end the call.
                if self.calls.get(&idx).map(|c| c.state) == Some(State::Up) {
                    self.end_call(idx, Outcome::Dropped, Some("remote_bye".into()));
                }
            }
            Method::Invite | Method::Update => {
                if method == Method::Invite {
                    self.sip.reinvites_received += 1;
                } else {
                    self.sip.updates_received += 1;
                }
                let Some(idx) = idx else {
                    sip::reply(&layer, &key, &request, 481);
                    return;
                };
                let verdict = self
                    .calls
                    .get_mut(&idx)
                    .and_then(|c| c.dialog.as_mut())
                    .map(|d| d.on_remote_request(&request));
                match verdict {
                    Some(Ok(())) => {}
                    Some(Err(DialogError::CSeqOutOfOrder { .. })) => {
                        sip::reply(&layer, &key, &request, 500);
                        return;
                    }
                    _ => {
                        sip::reply(&layer, &key, &request, 481);
                        return;
                    }
                }
                self.update_remote_media(idx, request.body());
                let contact = self.contact.clone();
                let Some(call) = self.calls.get_mut(&idx) else {
                    return;
                };
                call.sdp_version += 1;
                let media = call
                    .stream
                    .as_ref()
                    .map_or(SocketAddr::new(self.cfg.media_ip, 9), |s| s.local_addr());
                let body = sip::sdp(media, call.sdp_id, call.sdp_version, call.stream.is_some());
                let ok = sip::response(
                    &request,
                    200,
                    "OK",
                    None,
                    &[("Contact", &contact), ("Allow", ALLOW)],
                    Some(body),
                );
                if layer.send_response(&key, ok.clone()).is_ok() && method == Method::Invite {
                    self.unacked.insert(&layer, key, &request, ok);
                }
            }
            Method::Info | Method::Notify => sip::reply(&layer, &key, &request, 200),
            Method::Cancel => sip::reply(&layer, &key, &request, 481),
            _ => sip::reply(&layer, &key, &request, 501),
        }
    }

    fn update_remote_media(&mut self, idx: u64, body: &[u8]) {
        let Some(remote) = sip::remote_media(body) else {
            return;
        };
        if let Some(stream) = self.calls.get(&idx).and_then(|c| c.stream.as_ref()) {
            stream.set_remote(Some(remote));
        }
    }

    // ---- periodic work, failure, end -------------------------------------------

    fn housekeeping(&mut self) {
        self.check_launch_limits();
        for call_id in self.unacked.retransmit_due(&self.layer) {
            tracing::debug!(%call_id, "2xx to a re-INVITE never ACKed");
        }
    }

    fn report_progress(&mut self) {
        let now = Instant::now();
        let since = self.since_start();
        let (then, attempted_then) = self.last_progress;
        let rate = (self.counts.attempted - attempted_then) as f64
            / now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        self.last_progress = (now, self.counts.attempted);
        let c = &self.counts;
        let mut line = format!(
            "{:>6.0}s  {:>6.1} cps  active {:>5}  attempted {}  answered {}  completed {}  failed {}  dropped {}",
            since.as_secs_f64(),
            rate,
            self.active,
            c.attempted,
            c.answered,
            c.completed,
            c.failed,
            c.dropped
        );
        if !c.failures.is_empty() {
            let list: Vec<String> = c.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line.push_str(&format!(" ({})", list.join(", ")));
        }
        if !self.launching {
            line.push_str("  draining");
        }
        self.progress.update(&line);
    }

    fn inject_failure(&mut self) {
        let at = self.since_start();
        let mut up = 0;
        for call in self.calls.values_mut() {
            if call.state == State::Up {
                call.record.up_at_failure = true;
                up += 1;
            }
        }
        let result = self.cfg.fail_cmd.clone().map(|cmd| {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let _ = tx.send(fail::run(&cmd, FAIL_CMD_LIMIT).await);
            });
            rx
        });
        if !self.cfg.quiet {
            self.progress.finish();
            eprintln!(
                "failure injected at {:.1} s with {up} calls up{}",
                at.as_secs_f64(),
                self.cfg
                    .fail_cmd
                    .as_ref()
                    .map(|c| format!(": running `{c}`"))
                    .unwrap_or_default()
            );
        }
        self.failure = Some(Failure { at, result });
    }

    fn interrupt(&mut self) {
        if self.interrupted {
            // Second signal: stop now.
            self.drain_deadline = Some(Instant::now());
            return;
        }
        self.interrupted = true;
        self.stop_launching(INTERRUPT_DRAIN);
        let up: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state == State::Up)
            .map(|(i, _)| *i)
            .collect();
        for idx in up {
            if let Some(c) = self.calls.get_mut(&idx) {
                c.cut_short = true;
            }
            self.hang_up(idx);
        }
    }

    /// The drain deadline passed: whatever is still going is unfinished.
    fn drain_expired(&mut self) {
        let left: Vec<(u64, State)> = self.calls.iter().map(|(i, c)| (*i, c.state)).collect();
        for (idx, state) in left {
            match state {
                State::Inviting => {
                    if let Some(c) = self.calls.get(&idx) {
                        if c.rang {
                            let cancel = build_cancel(&c.invite);
                            let _ = self.layer.send_request(cancel, self.target());
                            self.sip.cancels_sent += 1;
                        }
                    }
                    self.end_unanswered(idx);
                }
                State::Up => {
                    if let Some(c) = self.calls.get_mut(&idx) {
                        c.cut_short = true;
                    }
                    self.hang_up(idx);
                    let reason = if self.interrupted {
                        "interrupted"
                    } else {
                        "drain_deadline"
                    };
                    self.end_call(idx, Outcome::Unfinished, Some(reason.into()));
                }
                State::Hanging => {
                    let outcome = self.bye_outcome(idx);
                    let reason = if outcome == Outcome::Unfinished {
                        "interrupted"
                    } else {
                        "bye_timeout"
                    };
                    self.end_call(idx, outcome, Some(reason.into()));
                }
                State::TimedOut => {
                    self.remove(idx);
                }
            }
        }
    }

    fn end_unanswered(&mut self, idx: u64) {
        let Some(mut call) = self.remove(idx) else {
            return;
        };
        self.active -= 1;
        let mut record = call.record.clone();
        record.outcome = Outcome::Unfinished;
        record.reason = Some(if self.interrupted {
            "interrupted".into()
        } else {
            "drain_deadline".into()
        });
        record.ended_s = self.epoch.elapsed().as_secs_f64();
        if let Some(s) = call.stream.take() {
            s.stop();
        }
        self.finish_record(record);
    }

    async fn finish(mut self, started_unix_ms: u64) -> CallReport {
        let duration = self.since_start();
        let failure = match self.failure.take() {
            Some(f) => Some(self.failure_report(f).await),
            None => None,
        };
        let attempted_per_s = match (self.first_attempt, self.last_attempt) {
            (Some(a), Some(b)) if b > a && self.counts.attempted > 1 => {
                (self.counts.attempted - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => self.counts.attempted as f64,
        };
        self.sip.ok_retransmissions_sent = self.unacked.retransmitted;
        let cfg = &self.cfg;
        CallReport {
            tool: "tandem-load",
            version: env!("CARGO_PKG_VERSION"),
            role: "call",
            settings: CallSettings {
                target: cfg.target.to_string(),
                transport: match cfg.transport {
                    TransportKind::Udp => "udp".into(),
                    TransportKind::Tcp => "tcp".into(),
                    TransportKind::Tls => "tls".into(),
                },
                local: self.local.to_string(),
                rate: cfg.rate,
                concurrency: cfg.concurrency,
                calls: cfg.calls,
                duration_s: cfg.duration.map(|d| d.as_secs_f64()),
                hold_s: cfg.hold.as_secs_f64(),
                setup_timeout_s: cfg.setup_timeout.as_secs_f64(),
                drain_s: cfg.drain.as_secs_f64(),
                rtp: cfg.rtp,
            },
            started_unix_ms,
            duration_s: duration.as_secs_f64(),
            interrupted: self.interrupted,
            calls: self.counts.clone(),
            sip: self.sip.clone(),
            cps: CpsReport {
                target: cfg.rate,
                attempted_per_s,
                peak_answered_per_s: self.timeline.peak_answered(),
            },
            setup_latency_ms: self.latency.dist_ms(),
            rtp: CallReport::rtp_of(&self.records),
            rtp_tick_max_lag_ms: self.media.max_tick_lag().as_secs_f64() * 1000.0,
            failure,
            timeline: self.timeline.seconds().to_vec(),
            per_call: cfg.per_call.then(|| self.records.clone()),
            setup_cdf: self.latency.cdf_ms(),
            records: std::mem::take(&mut self.records),
        }
    }

    async fn failure_report(&self, f: Failure) -> FailureReport {
        let outcome = match f.result {
            Some(rx) => {
                // The command is bounded by FAIL_CMD_LIMIT; a little more
                // for the kill.
                match tokio::time::timeout(FAIL_CMD_LIMIT + Duration::from_secs(2), rx).await {
                    Ok(Ok(o)) => Some(o),
                    _ => Some(CommandOutcome {
                        timed_out: true,
                        ..CommandOutcome::default()
                    }),
                }
            }
            None => None,
        };
        let up: Vec<&CallRecord> = self.records.iter().filter(|r| r.up_at_failure).collect();
        let count = |o: Outcome| up.iter().filter(|r| r.outcome == o).count() as u64;
        let mut report = FailureReport {
            at_s: f.at.as_secs_f64(),
            command: self.cfg.fail_cmd.clone(),
            calls_up: up.len() as u64,
            completed: count(Outcome::Completed),
            dropped: count(Outcome::Dropped),
            unfinished: count(Outcome::Unfinished),
            rtp: CallReport::rtp_of(up.iter().copied()),
            ..FailureReport::default()
        };
        if let Some(o) = outcome {
            report.exit_code = o.exit_code;
            report.timed_out = o.timed_out;
            report.error = o.error;
            report.output = o.output;
        }
        report
    }
}

/// CANCEL for `invite` (§9.1): same Request-URI, Call-ID, From, To, CSeq
/// number and top Via (so the same branch) as the INVITE.
fn build_cancel(invite: &Message) -> Message {
    let bytes = RequestBuilder::new(
        &Method::Cancel,
        invite.request_uri_str().unwrap_or_default(),
    )
    .header("Via", invite.top_via().raw)
    .headers("Route", invite.headers("Route"))
    .header("From", invite.header("From").unwrap_or_default())
    .header("To", invite.header("To").unwrap_or_default())
    .header("Call-ID", invite.call_id())
    .header("CSeq", &format!("{} CANCEL", invite.cseq().seq))
    .header("User-Agent", AGENT)
    .build();
    Message::parse(bytes).expect("a CANCEL we built parses")
}

/// The ACK for a 2xx built from the response alone (for a call we no
/// longer keep): the response has From, To, Call-ID, CSeq and Contact.
fn stray_ack(
    response: &Message,
    via: &str,
    transport: TransportKind,
    fallback: SocketAddr,
) -> Option<(Target, Bytes)> {
    let dialog = Dialog::from_uac_response(response, response, "<sip:tandem-load@invalid>").ok()?;
    let target_uri = dialog.next_hop().to_owned();
    let ack = dialog
        .ack(response.cseq().seq, via)
        .header("User-Agent", AGENT)
        .build();
    let target = sip::uri_target(&target_uri, transport, fallback);
    Some((target, ack))
}
