//! Starting and stopping Tandem: endpoint, relay, metrics, engine, and a
//! graceful shutdown. First SIGTERM/SIGINT: the active node of a pair
//! hands its calls to a healthy standby (a switchover) and exits; a
//! standby exits; a lone node (or an active one without a standby in
//! sync) refuses new calls and ends the calls still up at the drain's
//! deadline. A second signal: stop now.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use media_relay::{MediaRelay, RelayConfig};
use sipcore::endpoint::{Endpoint, EndpointConfig, GateConfig};
use sipcore::transaction::{TimerConfig, TuQueueConfig};
use tokio::sync::watch;

use crate::config::Config;
use crate::driver::{Command, Driver, Heartbeat, Stop};

/// The media quality of every session the relay holds now (the sharded
/// node's task publishes it too: `shard::run`).
pub(crate) fn rtp_quality(relay: &MediaRelay) -> crate::metrics::RtpQuality {
    let mut q = crate::metrics::RtpQuality::default();
    for id in relay.session_ids() {
        // A session that ended since the list was taken is skipped.
        if let Ok(s) = relay.stats(id) {
            q.add(&s.side_a);
            q.add(&s.side_b);
        }
    }
    q
}

/// Raises the open-file limit to its hard limit (the relay's sockets and
/// the SIP TCP connections both need descriptors) and lowers the TCP
/// connection cap to what is left after the relay: every port of the media
/// range can be an open socket (in a session or parked).
fn cap_tcp_to_fd_limit(config: &Config, tcp: &mut sipcore::transport::TcpConfig) {
    let open_files = media_relay::sys::raise_fd_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
        media_relay::sys::fd_limit().unwrap_or(1024)
    });
    let relay_sockets = u64::from(config.media.port_max - config.media.port_min) + 1;
    let wanted = tcp.max_connections;
    let cap = tcp.cap_to_fd_limit(open_files, relay_sockets);
    if cap < wanted {
        tracing::warn!(
            open_files,
            relay_sockets,
            max_connections = cap,
            configured = wanted,
            "sip.tcp.max_connections lowered to fit the open-file limit; raise it (LimitNOFILE=) for more"
        );
    }
}

/// The endpoint's configuration from `[sip]` and `[limits]` (TLS aside),
/// with the HEP tap if there is one.
pub(crate) fn endpoint_config(
    config: &Config,
    tap: Option<Arc<dyn sipcore::tap::MessageTap>>,
) -> EndpointConfig {
    // A pair binds the floating address before it holds it (IP_FREEBIND):
    // the standby is ready the moment the address arrives.
    let freebind = config.ha.is_some();
    let (t1, t2, t4) = config.timers();
    let mut ep_config = EndpointConfig {
        timers: TimerConfig { t1, t2, t4 },
        tu_queue: TuQueueConfig {
            capacity: config.sip.queue_limit,
            retry_after_s: config.sip.overload_retry_after_s,
            stranger_capacity: config.limits.stranger_queue,
            max_server_transactions: config.limits.max_transactions,
            max_stranger_transactions: config.limits.stranger_transactions,
            max_waiting_transactions: config.limits.waiting_transactions,
            max_stranger_waiting_transactions: config.limits.stranger_transactions,
        },
        // The driver keeps the trusted set up to date (reloads, DNS).
        gate: GateConfig {
            trusted: config.trusted_sources(),
            limit: config.rate_limit(),
            stranger_backlog: config.limits.stranger_queue,
        },
        tap,
        ..Default::default()
    };
    ep_config.transport.udp.recv_buffer_size = config.sip.udp_recv_buffer;
    ep_config.transport.udp.freebind = freebind;
    ep_config.transport.tcp.freebind = freebind;
    config.sip.tcp.apply(&mut ep_config.transport.tcp);
    cap_tcp_to_fd_limit(config, &mut ep_config.transport.tcp);
    ep_config
}

/// The media relay's configuration from `[media]` and `[survival]`.
pub(crate) fn relay_config(config: &Config) -> RelayConfig {
    // A pair binds the floating address before it holds it (IP_FREEBIND).
    let freebind = config.ha.is_some();
    RelayConfig {
        local_ip: config.media.ip,
        port_min: config.media.port_min,
        port_max: config.media.port_max,
        workers: config.media.workers,
        freebind,
        session_defaults: media_relay::SessionOptions {
            continuity: config.survival.continuity,
            latching: config.media.latching,
            ..media_relay::SessionOptions::default()
        },
        // The engine never waits for ports: a call that finds none gets
        // 503 at once, and the calls up keep being served.
        release_wait: Duration::ZERO,
        fast_path: config.media.fast_path,
        ..RelayConfig::default()
    }
}

/// What every engine of the node shares, started once before any engine:
/// the metrics registry, the HEP export, the endpoint's settings, the
/// media relay, the branch key and the CDR writer. One node engine uses
/// it as shards do (`crate::shard`), so the two start the same way.
pub(crate) struct Shared {
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
    pub hep_counters: Option<Arc<crate::hep::HepCounters>>,
    pub ep_config: EndpointConfig,
    pub relay: Arc<MediaRelay>,
    pub branch_key: sipcore::transaction::BranchKey,
    /// Each engine gets a clone of the sink; the writer is finished once
    /// every engine has ended.
    pub cdr: Option<(crate::cdr::CdrSink, crate::cdr::CdrWriter)>,
}

impl Shared {
    /// Before anything is bound: a node without the capabilities its
    /// configuration needs must not start and look healthy.
    pub(crate) fn start(config: &Config) -> anyhow::Result<Shared> {
        crate::capabilities::check(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let prometheus = crate::metrics::install()?;
        let hep = config
            .hep
            .as_ref()
            .map(|hep| crate::hep::start(&hep.settings()))
            .transpose()
            .context("starting the HEP export (hep.collector)")?;
        let ep_config = endpoint_config(
            config,
            hep.as_ref()
                .map(|hep| hep.tap.clone() as Arc<dyn sipcore::tap::MessageTap>),
        );
        let relay =
            Arc::new(MediaRelay::new(relay_config(config)).context("starting the media relay")?);
        if config.media.fast_path != media_relay::FastPathMode::Off {
            tracing::info!(
                active = relay.fast_path_active(),
                "media.fast_path: RTP kernel fast path"
            );
        }
        let branch_key = config.branch_key().map_err(|e| anyhow::anyhow!(e))?;
        // The CDR counters exist (at 0) with or without [cdr]: alerts and
        // dashboards name them either way.
        crate::metrics::cdr_register();
        let cdr = match &config.cdr {
            Some(cdr) => {
                let (sink, writer) = crate::cdr::CdrWriter::start(cdr)?;
                reopen_on_sigusr1(Some(writer.reopen_flag()))?;
                Some((sink, writer))
            }
            None => {
                reopen_on_sigusr1(None)?;
                None
            }
        };
        Ok(Shared {
            prometheus,
            hep_counters: hep.map(|hep| hep.counters),
            ep_config,
            relay,
            branch_key,
            cdr,
        })
    }
}

pub async fn run(config: Config, router: crate::routing::Router) -> anyhow::Result<()> {
    if config.sip.shards > 1 {
        return crate::shard::run(config, router).await;
    }
    let config = Arc::new(config);
    let Shared {
        prometheus,
        hep_counters,
        mut ep_config,
        relay,
        branch_key,
        cdr,
    } = Shared::start(&config)?;
    let tls_identity = match &config.sip.tls {
        Some(tls) => {
            let configs = tls
                .server_configs(&config.trunks)
                .map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
            let identity = sipcore::transport::ServerIdentity::new(configs);
            // Members over TLS are verified against ca_file, by IP
            // address (members are configured by address).
            let client = tls
                .ca_file
                .as_deref()
                .map(sipcore::transport::tls::client_config)
                .transpose()
                .context("sip.tls.ca_file")?;
            ep_config.transport.tls = Some(sipcore::transport::TlsConfig {
                port: tls.port,
                server: Some(identity.clone()),
                client,
            });
            Some(identity)
        }
        None => None,
    };
    let listen = config.sip.listen[0];
    let (endpoint, events) =
        Endpoint::bind(listen, &ep_config).with_context(|| format!("binding SIP on {listen}"))?;
    tracing::info!(sip = %endpoint.local_addr(), media = %config.media.ip, admin = ?config.admin.listen, "tandem running");

    let (sync, node_events) = match &config.ha {
        Some(ha) => {
            let probe = crate::ha::vip_probe(config.sip.listen[0], branch_key.clone());
            let (handle, events) =
                state_sync::SyncNode::start(ha.clone(), crate::driver::RECORD_SCHEMA, 0, probe)
                    .map_err(|e| anyhow::anyhow!("ha: {e}"))?;
            (Some(handle), Some(events))
        }
        None => (None, None),
    };
    let (admin_tx, admin_rx) = tokio::sync::mpsc::channel(crate::driver::COMMAND_QUEUE);
    // SIGTERM on the active node asks the engine for a switchover too.
    let commands = admin_tx.clone();
    crate::admin::serve(
        &config.admin,
        crate::admin::Admin {
            metrics: prometheus,
            sync: sync.clone(),
            engine: admin_tx,
        },
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let engine = Driver::new(
        &config,
        router,
        endpoint.clone(),
        relay.clone(),
        sync.clone().map(crate::driver::Replication::new),
        branch_key,
    );
    let heartbeat = Arc::new(Heartbeat::default());
    let mut engine = engine
        .with_tls_identity(tls_identity)
        .with_heartbeat(heartbeat.clone());
    engine.set_registrar(crate::registrar::Registrar::from_config(
        &config,
        crate::driver::now_millis(),
    )?);
    let cdr_writer = cdr.map(|(sink, writer)| {
        engine.set_cdr(sink, config.cdr.as_ref().is_some_and(|c| c.start_records));
        writer
    });
    let stats_ep = endpoint.clone();
    let stats_relay = relay.clone();
    let stats = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for second in 0u64.. {
            tick.tick().await;
            crate::metrics::endpoint(&stats_ep.stats());
            crate::metrics::unverified_responses(stats_ep.layer().unverified_responses());
            // Every 5 s: it locks each session once, and Prometheus
            // scrapes no faster.
            if second % 5 == 0 {
                crate::metrics::rtp_quality(&rtp_quality(&stats_relay));
            }
            if let Some(hep) = &hep_counters {
                crate::metrics::hep(&hep.snapshot());
            }
        }
    });
    let mut engine_task = tokio::spawn(engine.run(events, stop_rx, node_events, admin_rx));
    let mut panicked = exit_on_any_panic();
    #[cfg(debug_assertions)]
    test_panic();
    notify_systemd(sync.clone(), heartbeat);
    let ended = tokio::select! {
        ended = &mut engine_task => Some(ended),
        _ = panicked.changed() => {
            let reason = panicked.borrow().clone().unwrap_or_default();
            tracing::error!(%reason, "a task of this node panicked; stopping so that a supervisor restarts it and the standby takes over");
            if let Some(sync) = &sync {
                sync.stop().await;
            }
            return Err(anyhow::anyhow!("a task panicked: {reason}"));
        }
        _ = shutdown_signal() => {
            tokio::select! {
                ended = stop(&sync, &commands, &stop_tx, &mut engine_task) => ended,
                _ = shutdown_signal() => {
                    tracing::warn!("stopping now, with the calls in progress");
                    None
                }
            }
        }
    };
    stats.abort();
    // The engine ended (also by a panic; not when a second signal stops
    // it in the middle): its CDR queue is closed, and what the writer
    // holds goes to the file before the process ends (after the floating
    // address is let go: a slow disk must not delay a takeover).
    let cdr_writer = cdr_writer.filter(|_| ended.is_some());
    // A panic in the engine ends every call: the process must say so with
    // its exit status, so that a supervisor restarts it and a standby
    // takes over, instead of a quiet exit 0 that looks like a clean stop.
    if let Some(Err(failure)) = ended {
        if let Some(sync) = &sync {
            sync.stop().await;
        }
        finish_cdrs(cdr_writer).await;
        return Err(engine_failure(failure));
    }
    if let Some(sync) = &sync {
        // An active node lets go of the floating address on the way out.
        sync.stop().await;
    }
    endpoint.shutdown().await;
    finish_cdrs(cdr_writer).await;
    Ok(())
}

/// Lets the CDR writer write what it holds (at most 5 s).
pub(crate) async fn finish_cdrs(writer: Option<crate::cdr::CdrWriter>) {
    if let Some(writer) = writer {
        let _ = tokio::task::spawn_blocking(move || writer.finish(Duration::from_secs(5))).await;
    }
}

/// SIGUSR1 reopens the CDR file by name (logrotate's `postrotate`).
/// Without `[cdr]` it is taken too, and only logged: a logrotate stanza
/// left behind must not end an active node (its default action).
fn reopen_on_sigusr1(
    flag: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1()).context("listening for SIGUSR1")?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            match &flag {
                Some(flag) => {
                    tracing::info!("SIGUSR1: reopening the CDR file");
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                None => tracing::info!("SIGUSR1: no [cdr] file to reopen; ignored"),
            }
        }
    });
    Ok(())
}

/// The first SIGTERM: how this node stops (see the module's comment);
/// the engine's end, once it has stopped.
async fn stop(
    sync: &Option<state_sync::SyncHandle>,
    commands: &tokio::sync::mpsc::Sender<Command>,
    stop_tx: &watch::Sender<Stop>,
    engine_task: &mut tokio::task::JoinHandle<()>,
) -> Option<Result<(), tokio::task::JoinError>> {
    let how = match sync.as_ref().map(|s| s.status().role) {
        None => Stop::Drain,
        Some(state_sync::Role::Active) => {
            crate::systemd::stopping("active: handing the calls over to the standby");
            match hand_over(commands).await {
                Ok(()) => {
                    tracing::info!("shutdown: the calls were handed over to the standby; stopping");
                    Stop::Now
                }
                Err(why) => {
                    tracing::warn!(%why, "shutdown: no standby took the calls; draining them as a lone node");
                    Stop::Drain
                }
            }
        }
        Some(role) => {
            tracing::info!(
                role = role.name(),
                "shutdown: not the active node; stopping"
            );
            Stop::Now
        }
    };
    if how == Stop::Drain {
        crate::systemd::stopping("draining: new calls refused");
        tracing::info!("shutdown requested: refusing new calls; the calls up end by shutdown.drain_s (signal again to stop now)");
    } else {
        crate::systemd::stopping("stopping");
    }
    let _ = stop_tx.send(how);
    Some(engine_task.await)
}

/// The switchover `tandem switchover` asks for: every change reaches the
/// standby, which takes over; Err: no standby in sync took over.
async fn hand_over(commands: &tokio::sync::mpsc::Sender<Command>) -> Result<(), String> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    commands
        .send(Command::Switchover {
            force: false,
            reply,
        })
        .await
        .map_err(|_| "the call engine has stopped".to_string())?;
    answer
        .await
        .map_err(|_| "the call engine has stopped".to_string())?
}

/// systemd (`Type=notify`): READY=1 once the role is settled (the
/// listeners are bound by now), then STATUS= and the watchdog from the
/// notifier's thread. Nothing without NOTIFY_SOCKET.
pub(crate) fn notify_systemd(sync: Option<state_sync::SyncHandle>, heartbeat: Arc<Heartbeat>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let role = move || match &sync {
        Some(s) => s.status().role.name().to_owned(),
        None => "lone".to_owned(),
    };
    let settled = role.clone();
    tokio::spawn(async move {
        // A pair's node listens for its peer before it decides
        // (`ha.heartbeat.start_wait_ms`); systemd's TimeoutStartSec
        // bounds this wait.
        while settled() == state_sync::Role::Starting.name() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::systemd::ready(&crate::systemd::status_line(&settled(), 0));
    });
    crate::systemd::spawn_notifier(heartbeat, Box::new(role));
}

/// A panic in any task or thread, not only the engine: a receive loop or
/// a relay worker that died leaves a node that looks alive (its pid, its
/// heartbeats) but serves nothing, so the standby never takes over. The
/// hook reports the panic to `run`, which stops the node with a non-zero
/// status after letting go of the floating address; if that has not
/// happened within a few seconds (the runtime itself is stuck), the hook's
/// thread ends the process.
pub(crate) fn exit_on_any_panic() -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let _ = tx.send(Some(info.to_string()));
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(5));
            std::process::exit(101);
        });
    }));
    rx
}

/// Debug builds only: `TANDEM_TEST_PANIC_MS=N` panics a task other than
/// the engine N ms after start, so that a test can check that such a
/// panic stops the node.
#[cfg(debug_assertions)]
fn test_panic() {
    if let Some(ms) = std::env::var("TANDEM_TEST_PANIC_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            panic!("TANDEM_TEST_PANIC_MS: a planted panic outside the engine");
        });
    }
}

/// What a failed engine task leaves behind: the panic's message, logged
/// and returned as the process's error.
pub(crate) fn engine_failure(failure: tokio::task::JoinError) -> anyhow::Error {
    let reason = if failure.is_panic() {
        let payload = failure.into_panic();
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    } else {
        failure.to_string()
    };
    tracing::error!(reason = %reason, "the call engine failed; every call on this node is lost");
    anyhow::anyhow!("call engine failed: {reason}")
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests;
