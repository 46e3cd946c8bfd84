//! Prometheus metrics (`/metrics` on the admin address). Names follow
//! Prometheus conventions: `tandem_` prefix, units in the name, `_total`
//! for counters.

use std::time::Duration;

use media_relay::RelayCounters;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sipcore::endpoint::EndpointStats;
use sipcore::gate::DropReason;
use sipcore::message::Method;

/// Installs the recorder; its handle renders `/metrics` for the admin
/// server.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tandem_call_setup_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tandem_resume_seconds".into()),
            &[
                0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("tandem_replication_ack_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))
}

/// The method as a label: the RFC methods Tandem knows by name, every
/// extension method as `other`. A label value is a time series kept
/// forever: one from the network would let anyone grow the process (and
/// every scrape) without bound by sending made-up methods.
fn method_label(method: Option<&Method>) -> &'static str {
    method.and_then(Method::standard_name).unwrap_or("other")
}

fn class_label(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

thread_local! {
    /// Handles of the SIP message counters, made on first use (after
    /// `install`, which comes before any engine) by this thread: `counter!`
    /// with labels builds its key, label strings and all, and looks it up
    /// in the registry each time, ~1,000 instructions for each message
    /// received or sent (issue 15). The labels are static (methods by
    /// name, classes), so the set is small and bounded.
    static SIP_COUNTERS: std::cell::RefCell<Vec<(SipSeries, metrics::Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One series of `tandem_sip_requests_total` (responses: false) or
/// `tandem_sip_responses_total` (true): direction and method or class.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SipSeries {
    responses: bool,
    direction: &'static str,
    label: &'static str,
}

fn count_sip(series: SipSeries) {
    let make = || {
        let SipSeries {
            responses,
            direction,
            label,
        } = series;
        if responses {
            counter!("tandem_sip_responses_total", "direction" => direction, "class" => label)
        } else {
            counter!("tandem_sip_requests_total", "direction" => direction, "method" => label)
        }
    };
    let counted = SIP_COUNTERS.try_with(|cell| {
        let mut handles = cell.borrow_mut();
        match handles.iter().find(|(s, _)| *s == series) {
            Some((_, c)) => c.increment(1),
            None => {
                let c = make();
                c.increment(1);
                handles.push((series, c));
            }
        }
    });
    // A thread being torn down counts the slow way.
    if counted.is_err() {
        make().increment(1);
    }
}

pub fn sip_in_request(method: Option<&Method>) {
    count_sip(SipSeries {
        responses: false,
        direction: "in",
        label: method_label(method),
    });
}

pub fn sip_out_request(method: Option<&Method>) {
    count_sip(SipSeries {
        responses: false,
        direction: "out",
        label: method_label(method),
    });
}

pub fn sip_in_response(status: u16) {
    count_sip(SipSeries {
        responses: true,
        direction: "in",
        label: class_label(status),
    });
}

pub fn sip_out_response(status: u16) {
    count_sip(SipSeries {
        responses: true,
        direction: "out",
        label: class_label(status),
    });
}

pub fn call_rejected(status: u16) {
    counter!("tandem_calls_total", "outcome" => "rejected", "status" => status_label(status))
        .increment(1);
}

/// A final status as a label: the code itself within 300..=699 (at most
/// 400 series, and only members and our own configuration choose it),
/// anything else `other`.
fn status_label(status: u16) -> String {
    if (300..=699).contains(&status) {
        status.to_string()
    } else {
        "other".to_owned()
    }
}

/// A message refused or dropped for who sent it (`reason`: one of
/// `Refusal`'s fixed names).
pub fn sip_refused(reason: &'static str) {
    counter!("tandem_sip_refused_total", "reason" => reason).increment(1);
}

/// Responses the transaction layer dropped: they matched no transaction
/// and their branch is not one we made.
pub fn unverified_responses(dropped: u64) {
    counter!("tandem_sip_refused_total", "reason" => "unverified_response").absolute(dropped);
}

pub fn call_answered() {
    counter!("tandem_calls_answered_total").increment(1);
}

pub fn call_ended(reason: &str, answered: bool) {
    let outcome = if answered { "completed" } else { "failed" };
    counter!("tandem_calls_total", "outcome" => outcome, "reason" => reason.to_owned())
        .increment(1);
}

/// Calls up on each shard (`sip.shards`; slot 0 alone): the gauge is
/// the node's, their sum.
static SHARD_CALLS: [std::sync::atomic::AtomicUsize; crate::shard::MAX_SHARDS] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; crate::shard::MAX_SHARDS];

thread_local! {
    /// The shard this thread runs (0 without shards).
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Called once by each shard's thread.
pub fn set_thread_shard(shard: usize) {
    SHARD.with(|s| s.set(shard.min(crate::shard::MAX_SHARDS - 1)));
}

pub fn calls_active(n: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    SHARD_CALLS[SHARD.with(|s| s.get())].store(n, Relaxed);
    let total: usize = SHARD_CALLS.iter().map(|c| c.load(Relaxed)).sum();
    gauge!("tandem_calls_active").set(total as f64);
}

pub fn setup_latency(d: Duration) {
    histogram!("tandem_call_setup_seconds").record(d.as_secs_f64());
}

pub fn member_health(member: &str, up: bool) {
    gauge!("tandem_media_server_up", "member" => member.to_owned()).set(if up { 1.0 } else { 0.0 });
    member_state(member, if up { "up" } else { "down" });
}

/// A member's state for operators: `up`, `suspect` (media silence seen,
/// probe outstanding) or `down`; one series per state, 1 for the current.
pub fn member_state(member: &str, state: &str) {
    for s in ["up", "suspect", "down"] {
        gauge!("tandem_media_server_state", "member" => member.to_owned(), "state" => s)
            .set(if s == state { 1.0 } else { 0.0 });
    }
}

/// Which group a member is in (`tandem_media_server_group{member, group}`,
/// 1; 0 for the old group after a reload moved or removed it). An info
/// series: alerts join `tandem_media_server_up` with it to see a group whose
/// members are all down.
pub fn member_group(member: &str, group: &str, in_group: bool) {
    gauge!("tandem_media_server_group", "member" => member.to_owned(), "group" => group.to_owned())
        .set(if in_group { 1.0 } else { 0.0 });
}

/// Whether the operator drains a member (`tandem drain member`): 1 while
/// no new calls go to it.
pub fn member_draining(member: &str, draining: bool) {
    gauge!("tandem_media_server_draining", "member" => member.to_owned()).set(if draining {
        1.0
    } else {
        0.0
    });
}

/// One attempt of a move the operator asked for (`tandem move`), outcomes
/// as for [`call_resumed`]; kept apart so that resumes count failures
/// only.
pub fn call_moved(from: &str, to: &str, outcome: &str) {
    counter!("tandem_calls_moved_total", "from" => from.to_owned(), "to" => to.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

/// One resume attempt's end: `ok`, `failed` (that member refused or did
/// not answer; the next is tried), `no_server`, `gave_up` (hold expired).
pub fn call_resumed(from: &str, to: &str, outcome: &str) {
    counter!("tandem_calls_resumed_total", "from" => from.to_owned(), "to" => to.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

/// Failure detected → the new leg B answered.
/// A SIGHUP reload, applied or refused.
pub fn config_reloaded(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    counter!("tandem_config_reloads_total", "result" => result).increment(1);
}

/// A routing rule matched a new call.
pub fn route_matched(rule: &str) {
    counter!("tandem_route_matches_total", "rule" => rule.to_owned()).increment(1);
}

pub fn resume_latency(d: Duration) {
    histogram!("tandem_resume_seconds").record(d.as_secs_f64());
}

pub fn relay(c: &RelayCounters) {
    gauge!("tandem_media_sessions_active").set(c.sessions_active as f64);
    counter!("tandem_rtp_packets_relayed_total").absolute(c.packets_relayed);
    counter!("tandem_rtp_bytes_relayed_total").absolute(c.bytes_relayed);
    // Forwarded in the kernel (`media.fast_path`): not in the two above.
    counter!("tandem_rtp_fast_path_packets_total").absolute(c.fast_path_packets);
    counter!("tandem_rtp_fast_path_bytes_total").absolute(c.fast_path_bytes);
    counter!("tandem_rtp_packets_dropped_total", "reason" => "wrong_source")
        .absolute(c.dropped_wrong_source);
    counter!("tandem_rtp_packets_dropped_total", "reason" => "malformed")
        .absolute(c.dropped_malformed);
    counter!("tandem_rtp_packets_dropped_total", "reason" => "no_destination")
        .absolute(c.dropped_no_destination);
    counter!("tandem_rtp_packets_dropped_total", "reason" => "send_error")
        .absolute(c.dropped_send_error);
    // Packets from sources `media.latching` does not let latch: strangers
    // (a port-range spray shows here), or a server a call moved away from.
    counter!("tandem_relay_rejected_packets_total").absolute(c.dropped_rejected_source);
    counter!("tandem_rtp_packets_dropped_total", "reason" => "rejected_source")
        .absolute(c.dropped_rejected_source);
    gauge!("tandem_media_port_pairs_free").set(c.port_pairs_free as f64);
}

/// The node's SIP endpoint figures: its one endpoint's, or with shards
/// every shard's summed (`shard/sip_stats.rs`), never one shard's alone.
pub fn endpoint(s: &EndpointStats) {
    counter!("tandem_sip_rejected_total", "status" => "400").absolute(s.rejected_400);
    counter!("tandem_sip_rejected_total", "status" => "505").absolute(s.rejected_505);
    counter!("tandem_sip_overload_total", "action" => "rejected_503").absolute(s.overload.rejected);
    counter!("tandem_sip_overload_total", "action" => "dropped").absolute(s.overload.dropped);
    // Live ones count against limits.max_transactions; waiting ones (only
    // absorbing retransmissions) against limits.waiting_transactions.
    gauge!("tandem_sip_server_transactions", "state" => "live").set(s.transactions.live as f64);
    gauge!("tandem_sip_server_transactions", "state" => "waiting")
        .set(s.transactions.waiting as f64);
    counter!("tandem_sip_server_transactions_evicted_total").absolute(s.transactions.evicted);
    for reason in DropReason::ALL {
        counter!("tandem_sip_dropped_total", "reason" => reason.as_str())
            .absolute(s.gate_dropped.get(reason));
    }
    counter!("tandem_sip_stranger_messages_total").absolute(s.strangers);
    counter!("tandem_sip_garbage_dropped_total")
        .absolute(s.dropped + s.transport.udp.garbage_dropped + s.transport.tcp.garbage_dropped);
    counter!("tandem_sip_messages_received_total", "transport" => "udp")
        .absolute(s.transport.udp.messages_received);
    counter!("tandem_sip_messages_received_total", "transport" => "tcp")
        .absolute(s.transport.tcp.messages_received);
    counter!("tandem_sip_messages_sent_total", "transport" => "udp")
        .absolute(s.transport.udp.messages_sent);
    counter!("tandem_sip_messages_sent_total", "transport" => "tcp")
        .absolute(s.transport.tcp.messages_sent);
    counter!("tandem_sip_messages_received_total", "transport" => "tls")
        .absolute(s.transport.tls.messages_received);
    counter!("tandem_sip_messages_sent_total", "transport" => "tls")
        .absolute(s.transport.tls.messages_sent);
    counter!("tandem_sip_tls_handshake_failures_total")
        .absolute(s.transport.tls.handshake_failures);
    tcp_connections(&s.transport.tcp);
}

/// The SIP TCP listener's connections: open now, refused and closed by
/// reason (fixed label sets).
fn tcp_connections(tcp: &sipcore::transport::StatsSnapshot) {
    gauge!("tandem_sip_tcp_connections_open").set(tcp.connections_open() as f64);
    counter!("tandem_sip_tcp_connections_refused_total", "reason" => "table_full")
        .absolute(tcp.connections_rejected);
    counter!("tandem_sip_tcp_connections_refused_total", "reason" => "per_ip_limit")
        .absolute(tcp.connections_rejected_per_ip);
    let timed = [
        ("first_message_timeout", tcp.closed_first_message_timeout),
        ("message_timeout", tcp.closed_message_timeout),
        ("idle", tcp.closed_idle),
    ];
    let mut other = tcp.connections_closed;
    for (reason, n) in timed {
        counter!("tandem_sip_tcp_connections_closed_total", "reason" => reason).absolute(n);
        other = other.saturating_sub(n);
    }
    // Peer closed, framing error, write error, shutdown.
    counter!("tandem_sip_tcp_connections_closed_total", "reason" => "other").absolute(other);
    counter!("tandem_sip_tcp_accept_errors_total").absolute(tcp.accept_errors);
}

/// A REGISTER's outcome (`ok`, `challenged`, `auth_failed`, `ignored`,
/// `refused`, `forbidden`).
pub fn register_result(result: &str) {
    counter!("tandem_register_total", "result" => result.to_owned()).increment(1);
}

/// Failed digest authentications (REGISTER or INVITE); the counter
/// exists from the first REGISTER on, 0 included.
pub fn auth_failed(n: u64) {
    counter!("tandem_auth_failures_total").increment(n);
}

/// Bindings held by the registrar.
pub fn registrations_active(n: usize) {
    gauge!("tandem_registrations_active").set(n as f64);
}

/// A WAN's state: 1 up, 0 down (`tandem_wan_state{wan}`).
pub fn wan_state(wan: &str, down: bool) {
    gauge!("tandem_wan_state", "wan" => wan.to_owned()).set(if down { 0.0 } else { 1.0 });
}

/// A WAN changed state: the gauge, and the change counted in
/// `tandem_wan_transitions_total{wan, to}`.
pub fn wan_transition(wan: &str, down: bool) {
    wan_state(wan, down);
    counter!("tandem_wan_transitions_total", "wan" => wan.to_owned(), "to" => if down { "down" } else { "up" })
        .increment(1);
}

/// A WAN's total time down so far (`tandem_wan_fallback_seconds_total`):
/// how long the branch has run on its fallback routes.
pub fn wan_fallback_time(wan: &str, total: std::time::Duration) {
    counter!("tandem_wan_fallback_seconds_total", "wan" => wan.to_owned())
        .absolute(total.as_secs());
}

/// Upstream registrations per state (`tandem_upstream_registrations{state}`).
pub fn upstream_states(counts: [usize; 5]) {
    for (state, n) in crate::upstream::STATE_LABELS.iter().zip(counts) {
        gauge!("tandem_upstream_registrations", "state" => *state).set(n as f64);
    }
}

/// An answer to an upstream REGISTER (`registered`, `removed`,
/// `challenged`, `failed`, `stale`) or `timeout`.
pub fn upstream_register(result: &str) {
    counter!("tandem_upstream_register_total", "result" => result.to_owned()).increment(1);
}

/// Media quality of the calls up now, summed over the streams the relay
/// receives (RFC 3550 receive statistics of each stream since its call
/// started): the dashboard's RTP loss and jitter. Plain data, filled by
/// [`RtpQuality::add`] and published by [`rtp_quality`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RtpQuality {
    /// Streams that have received at least one RTP packet.
    pub streams: u64,
    /// Packets expected from the sequence numbers, and lost of them.
    pub expected: u64,
    pub lost: u64,
    /// Interarrival jitter, summed (for the mean) and the worst stream's.
    pub jitter_sum_s: f64,
    pub jitter_max_s: f64,
}

impl RtpQuality {
    pub fn add(&mut self, s: &media_relay::StreamStats) {
        if s.packets == 0 {
            return;
        }
        self.streams += 1;
        self.expected += s.expected;
        // Duplicates make a stream's loss negative: count it as none
        // rather than let it hide another stream's loss.
        self.lost += u64::try_from(s.lost).unwrap_or(0);
        let jitter_s = s.jitter_ms / 1000.0;
        self.jitter_sum_s += jitter_s;
        self.jitter_max_s = self.jitter_max_s.max(jitter_s);
    }

    /// Lost / expected over every stream (0 with nothing expected).
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 / self.expected as f64
        }
    }

    pub fn jitter_mean_s(&self) -> f64 {
        if self.streams == 0 {
            0.0
        } else {
            self.jitter_sum_s / self.streams as f64
        }
    }
}

/// `tandem_rtp_streams_receiving`, `tandem_rtp_loss_ratio`,
/// `tandem_rtp_jitter_mean_seconds` and `tandem_rtp_jitter_max_seconds`
/// (gauges over the calls up now; 0 without calls).
pub fn rtp_quality(q: &RtpQuality) {
    gauge!("tandem_rtp_streams_receiving").set(q.streams as f64);
    gauge!("tandem_rtp_loss_ratio").set(q.loss_ratio());
    gauge!("tandem_rtp_jitter_mean_seconds").set(q.jitter_mean_s());
    gauge!("tandem_rtp_jitter_max_seconds").set(q.jitter_max_s);
}

/// The HEP export (`[hep]`): packets sent, messages dropped by reason.
pub fn hep(s: &crate::hep::HepStats) {
    counter!("tandem_hep_sent_total").absolute(s.sent);
    counter!("tandem_hep_dropped_total", "reason" => "queue_full").absolute(s.queue_full);
    counter!("tandem_hep_dropped_total", "reason" => "too_large").absolute(s.too_large);
    counter!("tandem_hep_dropped_total", "reason" => "send_error").absolute(s.send_errors);
}

/// The CDR file's counters, at 0 from the start (alerts on them must see
/// a series before the first error).
pub fn cdr_register() {
    counter!("tandem_cdr_records_total").increment(0);
    counter!("tandem_cdr_dropped_total").increment(0);
    counter!("tandem_cdr_write_errors_total").increment(0);
    gauge!("tandem_cdr_backlog").set(0.0);
}

/// CDR lines now in the file.
pub fn cdr_written(lines: u64) {
    counter!("tandem_cdr_records_total").increment(lines);
}

/// CDR lines dropped: the queue to the writer or its backlog was full.
pub fn cdr_dropped(lines: u64) {
    counter!("tandem_cdr_dropped_total").increment(lines);
}

/// A write, fsync, rotation or reopen of the CDR file failed.
pub fn cdr_write_error() {
    counter!("tandem_cdr_write_errors_total").increment(1);
}

/// CDR lines waiting for the file (non-zero for long: the disk is full).
pub fn cdr_backlog(lines: usize) {
    gauge!("tandem_cdr_backlog").set(lines as f64);
}

#[cfg(test)]
mod tests;
