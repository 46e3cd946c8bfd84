//! The RTP side of many calls at once.
//!
//! Each call has one UDP socket ([`Stream`]), used in both directions
//! (symmetric RTP, so that a relay that latches onto the source address
//! sends back to the port we listen on).
//!
//! * Sending: one tokio task ([`MediaEngine`]'s ticker) wakes every 20 ms
//!   and sends the next packet of every sending stream. Missed ticks are
//!   made up in a burst (the rate stays 50 packets per second) and the
//!   lateness of the ticker is recorded: a loaded generator shows up in the
//!   report ([`MediaEngine::max_tick_lag`]) instead of as a fake audio gap
//!   of the system under test.
//! * Receiving: one small tokio task per stream awaits its socket, stamps
//!   each packet on arrival and feeds the [`RtpReceiver`]; in echo mode it
//!   sends the packet straight back to its source.
//!
//! A few thousand calls mean a few thousand sockets and tasks, which tokio
//! handles on two threads; no call has a thread of its own.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::rtp::{RtpGenerator, RtpReceiver, RtpStats, PACKET_INTERVAL};

/// What a stream does with RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send an own PCMA stream to the remote address; measure what comes.
    Send,
    /// Send every RTP packet received back to where it came from; measure.
    Echo,
    /// Measure only.
    Receive,
}

/// The RTP socket and counters of one call.
#[derive(Debug)]
pub struct Stream {
    socket: UdpSocket,
    local: SocketAddr,
    remote: Mutex<Option<SocketAddr>>,
    stats: Mutex<RtpReceiver>,
    sent: AtomicU64,
    send_errors: AtomicU64,
    stop: CancellationToken,
    epoch: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stream {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where our packets go (a re-INVITE or a new answer may move it).
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        *lock(&self.remote) = remote;
    }

    pub fn remote(&self) -> Option<SocketAddr> {
        *lock(&self.remote)
    }

    /// Packets sent so far (own stream or echoed).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Packets received so far.
    pub fn received(&self) -> u64 {
        lock(&self.stats).packets()
    }

    /// Stops sending and receiving; returns the receive statistics with the
    /// end of the media now.
    pub fn stop(&self) -> StreamReport {
        self.stop.cancel();
        let end = self.epoch.elapsed();
        StreamReport {
            sent: self.sent(),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            rx: lock(&self.stats).stats(end),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// What a stream did, at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamReport {
    pub sent: u64,
    /// Sends the socket refused (full buffer, unreachable).
    pub send_errors: u64,
    pub rx: RtpStats,
}

/// Binds and runs the streams of one process.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    ip: IpAddr,
    epoch: Instant,
    add: mpsc::UnboundedSender<(Arc<Stream>, RtpGenerator)>,
    max_lag_us: Arc<AtomicU64>,
}

impl MediaEngine {
    /// Starts the 20 ms ticker on the current runtime. Streams bind on `ip`;
    /// statistics count time from `epoch`.
    pub fn start(ip: IpAddr, epoch: Instant) -> MediaEngine {
        let (add, rx) = mpsc::unbounded_channel();
        let max_lag_us = Arc::new(AtomicU64::new(0));
        tokio::spawn(ticker(rx, max_lag_us.clone()));
        MediaEngine {
            ip,
            epoch,
            add,
            max_lag_us,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Binds a new stream's socket on an ephemeral port; it does nothing
    /// until [`Self::activate`].
    pub fn bind(&self) -> io::Result<Arc<Stream>> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(self.ip, 0))?;
        std_socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let local = socket.local_addr()?;
        Ok(Arc::new(Stream {
            socket,
            local,
            remote: Mutex::new(None),
            stats: Mutex::new(RtpReceiver::new(self.epoch.elapsed())),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            stop: CancellationToken::new(),
            epoch: self.epoch,
        }))
    }

    /// Starts the media of `stream` now: the receive statistics count from
    /// here, packets go to `remote` (when known) every 20 ms in
    /// [`Mode::Send`].
    pub fn activate(&self, stream: &Arc<Stream>, remote: Option<SocketAddr>, mode: Mode) {
        stream.set_remote(remote);
        *lock(&stream.stats) = RtpReceiver::new(self.epoch.elapsed());
        tokio::spawn(receive(stream.clone(), mode == Mode::Echo));
        if mode == Mode::Send {
            // The ticker ends only when every engine handle is gone.
            let _ = self.add.send((stream.clone(), RtpGenerator::random()));
        }
    }

    /// The latest the ticker has woken after its due time so far: above a
    /// few milliseconds the generator itself was overloaded and its gap
    /// figures are suspect.
    pub fn max_tick_lag(&self) -> Duration {
        Duration::from_micros(self.max_lag_us.load(Ordering::Relaxed))
    }
}

async fn ticker(
    mut add: mpsc::UnboundedReceiver<(Arc<Stream>, RtpGenerator)>,
    max_lag_us: Arc<AtomicU64>,
) {
    let mut interval = tokio::time::interval(PACKET_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut streams: Vec<(Arc<Stream>, RtpGenerator)> = Vec::new();
    loop {
        tokio::select! {
            biased;
            added = add.recv() => match added {
                Some(s) => streams.push(s),
                None => return,
            },
            due = interval.tick() => {
                let lag = Instant::now().saturating_duration_since(due);
                let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
                max_lag_us.fetch_max(lag_us, Ordering::Relaxed);
                streams.retain_mut(|(stream, generator)| send_one(stream, generator));
            }
        }
    }
}

/// Sends the next packet of `stream` if it has a remote address; `false`
/// when the stream is stopped (the ticker then forgets it).
fn send_one(stream: &Stream, generator: &mut RtpGenerator) -> bool {
    if stream.is_stopped() {
        return false;
    }
    let Some(remote) = stream.remote() else {
        return true;
    };
    match stream.socket.try_send_to(generator.next_packet(), remote) {
        Ok(_) => stream.sent.fetch_add(1, Ordering::Relaxed),
        Err(_) => stream.send_errors.fetch_add(1, Ordering::Relaxed),
    };
    true
}

async fn receive(stream: Arc<Stream>, echo: bool) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = stream.stop.cancelled() => return,
            r = stream.socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    let arrival = stream.epoch.elapsed();
                    let packet = &buf[..n];
                    let is_rtp = lock(&stream.stats).on_datagram(packet, arrival);
                    if is_rtp && echo {
                        match stream.socket.try_send_to(packet, source) {
                            Ok(_) => stream.sent.fetch_add(1, Ordering::Relaxed),
                            Err(_) => stream.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
                // ICMP errors reported on the socket (port unreachable):
                // nothing to do but not to spin on them.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}
