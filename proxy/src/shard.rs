//! `sip.shards = N` (N > 1): signalling on N threads, each a shard with
//! its own current-thread runtime, endpoint (sockets, transaction layer,
//! timers) and call engine holding only its own calls.
//!
//! Every shard binds the SIP port with `SO_REUSEPORT`; an SK_REUSEPORT
//! program ([`steer`]) delivers each UDP datagram to the shard of its
//! Call-ID, so a call's requests and the answers to it all reach one
//! shard, and leg-B Call-IDs are made to hash back to the shard that made
//! them. TCP connections all go to shard 0 (a connection carries many
//! calls). What the shards share: the media relay (thread-safe, its own
//! workers), the metrics registry, the admin API (its commands are sent
//! to every shard and the answers merged, the status page's too), the stop signal, the CDR
//! writer (a sender per shard), the call caps ([`tally`]) and the
//! members' health (shard 0 probes, the others follow: [`health`]) and
//! the node's SIP endpoint figures (each shard's, summed: [`sip_stats`];
//! the relay's RTP quality is published once, by the node's task). What
//! one shard alone cannot do for the node — the pair's replication, the
//! registrar, WAN state, TLS — is refused at config load
//! (`Config::validate_shards`).

pub mod health;
pub mod sip_stats;
pub mod steer;
pub mod tally;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use media_relay::MediaRelay;
use sipcore::endpoint::Endpoint;
use sipcore::transport::{BindHook, TransportKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::driver::{Command, Driver, Heartbeat, Stop, COMMAND_QUEUE};
use steer::{CallIdSteering, Steering};

/// Most shards (the steering program's socket array).
pub const MAX_SHARDS: usize = 64;

/// One running shard, as the node's thread sees it.
struct ShardHandle {
    commands: mpsc::Sender<Command>,
    /// Fires when the shard's engine and endpoint have stopped.
    done: oneshot::Receiver<()>,
}

pub async fn run(config: Config, router: crate::routing::Router) -> anyhow::Result<()> {
    let crate::server::Shared {
        prometheus,
        hep_counters,
        ep_config,
        relay,
        branch_key,
        cdr,
    } = crate::server::Shared::start(&config)?;
    let config = Arc::new(config);
    let shards = config.sip.shards as u32;
    let key: u64 = rand::random();
    let steering = Arc::new(Mutex::new(
        Steering::load(key, shards).context("sip.shards")?,
    ));
    let (cdr_sink, cdr_writer) = cdr.unzip();
    let tally = Arc::new(tally::CallTally::default());
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let mut listen = config.sip.listen[0];
    let mut handles = Vec::new();
    let mut heartbeat0 = None;
    let mut health_shares = health::HealthShare::for_shards(shards).into_iter();
    let sip_stats = Arc::new(sip_stats::EndpointSlots::new(shards));
    // One after the other: shard 0 binds first (it attaches the program
    // to the group) and a port 0 becomes the port every shard binds.
    for shard in 0..shards {
        let mut ep_config = ep_config.clone();
        ep_config.transport.udp.reuse_port = true;
        ep_config.transport.tcp.reuse_port = true;
        let hook_steering = steering.clone();
        ep_config.transport.on_bind = Some(BindHook(Arc::new(move |kind, fd| {
            let mut steering = hook_steering
                .lock()
                .map_err(|_| std::io::Error::other("steering lock poisoned"))?;
            match kind {
                TransportKind::Udp => steering.add_udp(shard, fd),
                TransportKind::Tcp => steering.add_tcp(shard, fd),
                _ => Ok(()),
            }
            .map_err(std::io::Error::other)
        })));
        let spec = ShardSpec {
            shard,
            listen,
            ep_config,
            config: config.clone(),
            router: router.clone(),
            relay: relay.clone(),
            branch_key: branch_key.clone(),
            steering: CallIdSteering { key, shards, shard },
            stop: stop_rx.clone(),
            cdr: cdr_sink.clone(),
            tally: tally.clone(),
            sip_stats: sip_stats.clone(),
            health: health_shares
                .next()
                .context("a health share for every shard")?,
        };
        let (bound, handle) = start_shard(spec)
            .await
            .with_context(|| format!("starting shard {shard}"))?;
        listen = bound.local;
        heartbeat0.get_or_insert(bound.heartbeat);
        handles.push(handle);
    }
    // The shards hold the only senders now: the writer ends with them.
    drop(cdr_sink);
    tracing::info!(sip = %listen, shards, media = %config.media.ip, admin = ?config.admin.listen, "tandem running (sharded)");
    let (admin_tx, admin_rx) = mpsc::channel(COMMAND_QUEUE);
    crate::admin::serve(
        &config.admin,
        crate::admin::Admin {
            metrics: prometheus,
            sync: None,
            engine: admin_tx,
        },
    )
    .await?;
    let shard_commands: Vec<_> = handles.iter().map(|h| h.commands.clone()).collect();
    tokio::spawn(fan_out(admin_rx, shard_commands));
    let steer_counts = steering.clone();
    let counts = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for second in 0u64.. {
            tick.tick().await;
            // Each shard's last second, summed: the node's SIP figures.
            let sip = sip_stats.sum();
            crate::metrics::endpoint(&sip.stats);
            crate::metrics::unverified_responses(sip.unverified_responses);
            // The relay is the node's, not a shard's: its media quality
            // once, here, every 5 s as `server::run` does (it locks each
            // session once, and Prometheus scrapes no faster).
            if second % 5 == 0 {
                crate::metrics::rtp_quality(&crate::server::rtp_quality(&relay));
            }
            let (steered, unparsed) = match steer_counts.lock() {
                Ok(s) => s.counts(),
                Err(_) => return,
            };
            metrics::counter!("tandem_shard_steered_total", "by" => "call_id").absolute(steered);
            metrics::counter!("tandem_shard_steered_total", "by" => "default").absolute(unparsed);
            if let Some(hep) = &hep_counters {
                crate::metrics::hep(&hep.snapshot());
            }
        }
    });
    let mut panicked = crate::server::exit_on_any_panic();
    if let Some(heartbeat) = heartbeat0 {
        crate::server::notify_systemd(None, heartbeat);
    }
    let all_done = futures::future::join_all(handles.into_iter().map(|h| h.done));
    tokio::pin!(all_done);
    // Whether every shard ended (its CDR sink gone with it).
    let ended = tokio::select! {
        _ = &mut all_done => true,
        _ = panicked.changed() => {
            let reason = panicked.borrow().clone().unwrap_or_default();
            tracing::error!(%reason, "a task of this node panicked; stopping");
            return Err(anyhow::anyhow!("a task panicked: {reason}"));
        }
        _ = crate::server::shutdown_signal() => {
            crate::systemd::stopping("draining: new calls refused");
            tracing::info!("shutdown requested: every shard refuses new calls; the calls up end by shutdown.drain_s (signal again to stop now)");
            let _ = stop_tx.send(Stop::Drain);
            tokio::select! {
                _ = &mut all_done => true,
                _ = crate::server::shutdown_signal() => {
                    tracing::warn!("stopping now, with the calls in progress");
                    false
                }
            }
        }
    };
    if ended {
        // Every call's line is in the writer's queue: to the file with it.
        crate::server::finish_cdrs(cdr_writer).await;
    }
    counts.abort();
    Ok(())
}

/// What a shard's thread is given.
struct ShardSpec {
    shard: u32,
    listen: std::net::SocketAddr,
    ep_config: sipcore::endpoint::EndpointConfig,
    config: Arc<Config>,
    router: crate::routing::Router,
    relay: Arc<MediaRelay>,
    branch_key: sipcore::transaction::BranchKey,
    steering: CallIdSteering,
    stop: watch::Receiver<Stop>,
    cdr: Option<crate::cdr::CdrSink>,
    /// The node's calls, for the caps.
    tally: Arc<tally::CallTally>,
    /// Where the shard puts its endpoint's figures for the node's sum.
    sip_stats: Arc<sip_stats::EndpointSlots>,
    /// Shard 0 probes the members; the others follow it.
    health: health::HealthShare,
}

/// What a shard reports once its sockets are bound.
struct Bound {
    local: std::net::SocketAddr,
    heartbeat: Arc<Heartbeat>,
}

/// Starts shard `spec.shard` on its own thread and runtime; returns once
/// its sockets are bound (or failed to bind).
async fn start_shard(spec: ShardSpec) -> anyhow::Result<(Bound, ShardHandle)> {
    let (bound_tx, bound_rx) = oneshot::channel::<anyhow::Result<Bound>>();
    let (done_tx, done) = oneshot::channel();
    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let name = format!("tandem-shard-{}", spec.shard);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            crate::metrics::set_thread_shard(spec.shard as usize);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = bound_tx.send(Err(anyhow::anyhow!("runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(serve_shard(spec, bound_tx, commands_rx));
            let _ = done_tx.send(());
        })
        .context("spawning the shard's thread")?;
    let bound = bound_rx
        .await
        .map_err(|_| anyhow::anyhow!("the shard's thread ended before binding"))??;
    Ok((bound, ShardHandle { commands, done }))
}

/// One shard's life: bind, run the engine until it stops, shut down.
async fn serve_shard(
    spec: ShardSpec,
    bound: oneshot::Sender<anyhow::Result<Bound>>,
    commands: mpsc::Receiver<Command>,
) {
    let listen = spec.listen;
    let (endpoint, events) = match Endpoint::bind(listen, &spec.ep_config) {
        Ok(bound) => bound,
        Err(e) => {
            let _ = bound.send(Err(anyhow::anyhow!("binding SIP on {listen}: {e}")));
            return;
        }
    };
    let heartbeat = Arc::new(Heartbeat::default());
    let _ = bound.send(Ok(Bound {
        local: endpoint.local_addr(),
        heartbeat: heartbeat.clone(),
    }));
    let mut engine = Driver::new(
        &spec.config,
        spec.router,
        endpoint.clone(),
        spec.relay,
        None,
        spec.branch_key,
    )
    .with_call_id_steering(spec.steering)
    .with_call_tally(spec.tally)
    .with_health_share(spec.health)
    .with_heartbeat(heartbeat.clone());
    if let Some(sink) = spec.cdr {
        let start_records = spec.config.cdr.as_ref().is_some_and(|c| c.start_records);
        engine.set_cdr(sink, start_records);
    }
    let stats = tokio::spawn(shard_stats(
        spec.shard,
        endpoint.clone(),
        heartbeat,
        spec.sip_stats,
    ));
    engine.run(events, spec.stop, None, commands).await;
    stats.abort();
    endpoint.shutdown().await;
}

/// Each second: the shard's own figures (`shard` label), and its
/// endpoint's snapshot into its slot of `node`, which the node's task in
/// [`run`] sums over every shard for the node-wide SIP series.
async fn shard_stats(
    shard: u32,
    endpoint: Endpoint,
    heartbeat: Arc<Heartbeat>,
    node: Arc<sip_stats::EndpointSlots>,
) {
    let label = shard.to_string();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let stats = endpoint.stats();
        node.publish(
            shard,
            sip_stats::EndpointFigures {
                stats,
                unverified_responses: endpoint.layer().unverified_responses(),
            },
        );
        let received =
            stats.transport.udp.messages_received + stats.transport.tcp.messages_received;
        metrics::counter!("tandem_shard_messages_received_total", "shard" => label.clone())
            .absolute(received);
        metrics::gauge!("tandem_shard_calls", "shard" => label.clone())
            .set(heartbeat.calls.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
}

/// The admin API's commands, sent to every shard; their answers merged
/// into the one answer a single engine would give.
async fn fan_out(mut admin: mpsc::Receiver<Command>, shards: Vec<mpsc::Sender<Command>>) {
    while let Some(command) = admin.recv().await {
        match command {
            Command::Calls {
                member,
                limit,
                reply,
            } => {
                let answers = ask_all(&shards, |reply| Command::Calls {
                    member: member.clone(),
                    limit,
                    reply,
                })
                .await;
                let _ = reply.send(merge::calls(answers, limit));
            }
            Command::Members { reply } => {
                let answers = ask_all(&shards, |reply| Command::Members { reply }).await;
                let _ = reply.send(merge::members(answers));
            }
            Command::DrainMember { member, on, reply } => {
                let answers = ask_all(&shards, |reply| Command::DrainMember {
                    member: member.clone(),
                    on,
                    reply,
                })
                .await;
                let _ = reply.send(merge::first(answers));
            }
            Command::MoveCalls {
                from,
                to,
                max,
                reply,
            } => {
                let answers = ask_all(&shards, |reply| Command::MoveCalls {
                    from: from.clone(),
                    to: to.clone(),
                    max,
                    reply,
                })
                .await;
                let _ = reply.send(merge::moves(answers));
            }
            Command::Overview { reply } => {
                let answers = ask_all(&shards, |reply| Command::Overview { reply }).await;
                let _ = reply.send(merge::overview(answers));
            }
            // The rest are about the node's pair, WANs and registrar
            // (refused with shards): shard 0 answers.
            other => {
                if let Some(shard0) = shards.first() {
                    let _ = shard0.send(other).await;
                }
            }
        }
    }
}

/// Sends `make(reply)` to every shard; the answers of those that answer.
async fn ask_all<T>(
    shards: &[mpsc::Sender<Command>],
    make: impl Fn(oneshot::Sender<T>) -> Command,
) -> Vec<T> {
    let mut waiting = Vec::with_capacity(shards.len());
    for shard in shards {
        let (tx, rx) = oneshot::channel();
        if shard.send(make(tx)).await.is_ok() {
            waiting.push(rx);
        }
    }
    let mut answers = Vec::with_capacity(waiting.len());
    for rx in waiting {
        if let Ok(answer) = rx.await {
            answers.push(answer);
        }
    }
    answers
}

mod merge;
