//! `tandem-load answer`: the UAS, usable as a stand-in media server.
//!
//! * INVITE: `180 Ringing`, then `200 OK` with an SDP naming a fresh RTP
//!   port; the 2xx is sent again until the ACK comes (§13.3.1.4). RTP is
//!   echoed back to its source or an own stream is sent to the offer's
//!   address.
//! * re-INVITE / UPDATE: `200 OK` with our SDP (version + 1); the stream
//!   follows the new offer.
//! * BYE: `200 OK` (or 481 for an unknown dialog); the call's RTP figures
//!   are kept for the report.
//! * OPTIONS: `200 OK` (health checks), CANCEL: 200 (the INVITE was
//!   answered already) or 481, INFO: 200, anything else: 501.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipcore::dialog::{Dialog, DialogError, DialogState};
use sipcore::message::{Message, Method};
use sipcore::transaction::{ServerKey, TransactionLayer, TuEvent};
use sipcore::transport::Target;
use tokio::time::Instant;

use crate::cli::{AnswerConfig, RtpMode};
use crate::error::{Error, Result};
use crate::media::{MediaEngine, Mode, Stream, StreamReport};
use crate::progress::Progress;
use crate::report::{AnswerReport, RtpReport};
use crate::sip::{self, Unacked, ALLOW};

struct UasCall {
    dialog: Dialog,
    stream: Option<Arc<Stream>>,
    started: Instant,
    sdp_id: u64,
    sdp_version: u64,
    contact: String,
    /// The first ACK was ignored (--lose-first-ack).
    ack_lost: bool,
}

struct Uas {
    cfg: AnswerConfig,
    layer: TransactionLayer,
    local: SocketAddr,
    media: MediaEngine,
    calls: HashMap<String, UasCall>,
    unacked: Unacked,
    ended: Vec<StreamReport>,
    report: AnswerReport,
    progress: Progress,
    last_expiry_check: Instant,
}

/// Answers calls until SIGINT / SIGTERM or the configured duration.
pub async fn run(cfg: AnswerConfig) -> Result<AnswerReport> {
    let (ep, mut events) = sip::bind(cfg.listen, cfg.media_ip)?;
    let local = ep.local_addr();
    let epoch = Instant::now();
    let mode = match cfg.rtp {
        RtpMode::Echo => "echo",
        RtpMode::Send => "send",
        RtpMode::Off => "off",
    };
    // Always on stderr, also with --quiet: whoever started us waits for it.
    eprintln!("tandem-load answer: listening on {local} (udp+tcp), rtp {mode}");
    let mut uas = Uas {
        layer: ep.layer().clone(),
        local,
        media: MediaEngine::start(cfg.media_ip, epoch),
        calls: HashMap::new(),
        unacked: Unacked::default(),
        ended: Vec::new(),
        report: AnswerReport {
            tool: "tandem-load",
            version: env!("CARGO_PKG_VERSION"),
            role: "answer",
            listen: local.to_string(),
            rtp_mode: mode.into(),
            ..AnswerReport::default()
        },
        progress: Progress::new(cfg.quiet),
        last_expiry_check: epoch,
        cfg,
    };
    let end = uas.cfg.duration.map(|d| epoch + d);
    let mut housekeeping = tokio::time::interval(Duration::from_millis(20));
    let mut progress =
        tokio::time::interval_at(epoch + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_answered = 0;
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::io("installing the SIGINT handler", e))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::io("installing the SIGTERM handler", e))?;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => uas.on_event(ev),
                None => break,
            },
            _ = housekeeping.tick() => uas.housekeeping(),
            _ = progress.tick() => {
                let r = &uas.report;
                let line = format!(
                    "{:>6.0}s  {:>5} answered/s  active {:>5}  answered {}  byes {}  options {}  re-INVITEs {}",
                    epoch.elapsed().as_secs_f64(),
                    r.answered - last_answered,
                    uas.calls.len(),
                    r.answered,
                    r.byes,
                    r.options,
                    r.reinvites
                );
                last_answered = r.answered;
                uas.progress.update(&line);
            }
            _ = async {
                match end {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    uas.progress.finish();
    let mut report = std::mem::take(&mut uas.report);
    report.duration_s = epoch.elapsed().as_secs_f64();
    report.active_at_end = uas.calls.len() as u64;
    report.ok_retransmissions = uas.unacked.retransmitted;
    for (_, call) in uas.calls.drain() {
        if let Some(s) = call.stream {
            uas.ended.push(s.stop());
        }
    }
    report.rtp = RtpReport::of(uas.ended.iter().map(|r| (&r.rx, r.sent)));
    ep.shutdown().await;
    Ok(report)
}

impl Uas {
    fn on_event(&mut self, ev: TuEvent) {
        match ev {
            TuEvent::Request {
                key,
                request,
                source,
            } => self.on_request(key, request, source),
            TuEvent::Ack { ack, .. } => {
                if self.cfg.lose_first_ack {
                    if let Some(call) = self.calls.get_mut(ack.call_id()) {
                        if !call.ack_lost {
                            call.ack_lost = true;
                            self.report.acks_ignored += 1;
                            return;
                        }
                    }
                }
                self.unacked.ack(&ack);
                // An offer in the 2xx is answered in the ACK.
                if let Some(remote) = sip::remote_media(ack.body()) {
                    if let Some(s) = self
                        .calls
                        .get(ack.call_id())
                        .and_then(|c| c.stream.as_ref())
                    {
                        s.set_remote(Some(remote));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_request(&mut self, key: ServerKey, request: Message, source: Target) {
        let layer = self.layer.clone();
        match request.method().cloned().unwrap_or(Method::Ack) {
            Method::Invite if request.to_tag().is_none() => self.on_invite(key, request, source),
            m @ (Method::Invite | Method::Update) => self.on_refresh(&m, key, request),
            Method::Bye => {
                let accepted = self
                    .calls
                    .get_mut(request.call_id())
                    .is_some_and(|c| c.dialog.on_remote_request(&request).is_ok());
                if !accepted {
                    self.report.unknown_dialog += 1;
                    sip::reply(&layer, &key, &request, 481);
                    return;
                }
                sip::reply(&layer, &key, &request, 200);
                self.report.byes += 1;
                self.end(request.call_id());
            }
            Method::Options => {
                self.report.options += 1;
                sip::reply_options(&layer, &key, &request);
            }
            Method::Cancel => {
                self.report.cancels += 1;
                let status = if layer.find_invite_for_cancel(&key).is_some() {
                    200
                } else {
                    481
                };
                sip::reply(&layer, &key, &request, status);
            }
            Method::Info | Method::Notify => sip::reply(&layer, &key, &request, 200),
            _ => sip::reply(&layer, &key, &request, 501),
        }
    }

    fn on_invite(&mut self, key: ServerKey, request: Message, source: Target) {
        let layer = self.layer.clone();
        self.report.invites += 1;
        if request.header("X-Tandem-Resumed").is_some() {
            self.report.resumed += 1;
        }
        let tag = sip::token();
        let contact = format!("<{}>", sip::contact_uri(source.transport, self.local));
        let dialog =
            match Dialog::from_uas_request(&request, &tag, &contact, DialogState::Confirmed) {
                Ok(d) => d,
                Err(e) => {
                    self.report.rejected += 1;
                    let reason = match e {
                        DialogError::Incomplete(what) => what.to_owned(),
                        other => other.to_string(),
                    };
                    let resp = sip::response(
                        &request,
                        400,
                        &format!("Bad Request ({reason})"),
                        None,
                        &[],
                        None,
                    );
                    let _ = layer.send_response(&key, resp);
                    return;
                }
            };
        let stream = match self.cfg.rtp {
            RtpMode::Off => None,
            _ => match self.media.bind() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind an RTP socket");
                    self.report.rejected += 1;
                    sip::reply(&layer, &key, &request, 503);
                    return;
                }
            },
        };
        let ringing = sip::response(
            &request,
            180,
            "Ringing",
            Some(&tag),
            &[("Contact", &contact)],
            None,
        );
        let _ = layer.send_response(&key, ringing);
        let sdp_id = u64::from(rand::random::<u32>());
        let media = stream
            .as_ref()
            .map_or(SocketAddr::new(self.cfg.media_ip, 9), |s| s.local_addr());
        let ok = sip::response(
            &request,
            200,
            "OK",
            Some(&tag),
            &[("Contact", &contact), ("Allow", ALLOW)],
            Some(sip::sdp(media, sdp_id, 1, stream.is_some())),
        );
        if let Err(e) = layer.send_response(&key, ok.clone()) {
            tracing::debug!(error = %e, "200 not sent");
            if let Some(s) = stream {
                s.stop();
            }
            return;
        }
        self.unacked.insert(&layer, key, &request, ok);
        self.report.answered += 1;
        if let Some(s) = &stream {
            let mode = match self.cfg.rtp {
                RtpMode::Send => Mode::Send,
                _ => Mode::Echo,
            };
            self.media
                .activate(s, sip::remote_media(request.body()), mode);
        }
        let call = UasCall {
            dialog,
            stream,
            started: Instant::now(),
            sdp_id,
            sdp_version: 1,
            contact,
            ack_lost: false,
        };
        // A new INVITE reusing a Call-ID replaces the old call.
        if let Some(old) = self.calls.insert(request.call_id().to_owned(), call) {
            if let Some(s) = old.stream {
                self.ended.push(s.stop());
            }
        }
    }

    /// re-INVITE or UPDATE in a dialog.
    fn on_refresh(&mut self, method: &Method, key: ServerKey, request: Message) {
        let layer = self.layer.clone();
        let Some(call) = self.calls.get_mut(request.call_id()) else {
            self.report.unknown_dialog += 1;
            sip::reply(&layer, &key, &request, 481);
            return;
        };
        match call.dialog.on_remote_request(&request) {
            Ok(()) => {}
            Err(DialogError::CSeqOutOfOrder { .. }) => {
                sip::reply(&layer, &key, &request, 500);
                return;
            }
            Err(_) => {
                self.report.unknown_dialog += 1;
                sip::reply(&layer, &key, &request, 481);
                return;
            }
        }
        if *method == Method::Invite {
            self.report.reinvites += 1;
        } else {
            self.report.updates += 1;
        }
        if let (Some(remote), Some(s)) = (sip::remote_media(request.body()), &call.stream) {
            s.set_remote(Some(remote));
        }
        call.sdp_version += 1;
        let media = call
            .stream
            .as_ref()
            .map_or(SocketAddr::new(self.cfg.media_ip, 9), |s| s.local_addr());
        let ok = sip::response(
            &request,
            200,
            "OK",
            None,
            &[("Contact", &call.contact), ("Allow", ALLOW)],
            Some(sip::sdp(
                media,
                call.sdp_id,
                call.sdp_version,
                call.stream.is_some(),
            )),
        );
        if layer.send_response(&key, ok.clone()).is_ok() && *method == Method::Invite {
            self.unacked.insert(&layer, key, &request, ok);
        }
    }

    fn end(&mut self, call_id: &str) {
        self.unacked.forget_call(call_id);
        if let Some(call) = self.calls.remove(call_id) {
            if let Some(s) = call.stream {
                self.ended.push(s.stop());
            }
        }
    }

    fn housekeeping(&mut self) {
        for call_id in self.unacked.retransmit_due(&self.layer) {
            // §13.3.1.4: no ACK for the 2xx: the call is over.
            self.report.never_acked += 1;
            self.end(&call_id);
        }
        if self.last_expiry_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_expiry_check = Instant::now();
        let max = self.cfg.max_call;
        let expired: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.started.elapsed() > max)
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in expired {
            self.report.expired += 1;
            self.end(&call_id);
        }
    }
}
