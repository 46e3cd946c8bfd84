//! Two nodes on loopback, each on its own thread as in Tandem: roles,
//! replication, resync after a restart under churn, takeover, refusal of
//! a peer without the secret, of strangers and of replays, and no call
//! data readable on the wire. No floating address here (see vip.rs for
//! the testbed); the owner's probe of it is a flag the test sets.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use state_sync::config::{HeartbeatConfig, LinkConfig};
use state_sync::{Change, NodeEvent, Record, Role, SyncConfig, SyncHandle, SyncNode, VipProbe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

const SCHEMA: u32 = 1 << 16;

/// A file holding `content`, with `mode`.
fn secret_file(content: &str, mode: u32) -> tempfile::TempPath {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{content}").unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f.into_temp_path()
}

/// A random secret, as an operator would generate it.
fn random_secret() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The pair's secret file (one per test process).
static SECRET: LazyLock<tempfile::TempPath> =
    LazyLock::new(|| secret_file(&random_secret(), 0o600));

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    // The TCP side must be free too.
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(|_| port)
        .unwrap_or_else(|_| free_port())
}

struct Pair {
    a: SocketAddr,
    b: SocketAddr,
}

fn pair() -> Pair {
    Pair {
        a: SocketAddr::from(([127, 0, 0, 1], free_port())),
        b: SocketAddr::from(([127, 0, 0, 1], free_port())),
    }
}

fn config(node: &str, listen: SocketAddr, peer: SocketAddr, secret: &Path) -> SyncConfig {
    SyncConfig {
        node: node.into(),
        priority: 100,
        secret_file: secret.to_path_buf(),
        secret: None,
        link: LinkConfig { listen, peer },
        aux: None,
        heartbeat: HeartbeatConfig {
            interval_ms: 50,
            timeout_ms: 250,
            failures: 3,
            retry_delay_ms: 200,
            reconnect_attempts: 5,
            reconnect_interval_ms: 50,
            start_wait_ms: 300,
        },
        fencing: Default::default(),
        vip: None,
        external_role: false,
        realtime_priority: 0,
        journal_capacity: 100,
    }
}

/// The probe of the floating address: answers while the flag is set.
fn probe(flag: Arc<AtomicBool>) -> VipProbe {
    Arc::new(move |_| {
        let v = flag.load(Ordering::SeqCst);
        Box::pin(async move { v })
    })
}

/// A node with its owner's view: the records as its events built them.
struct Node {
    handle: SyncHandle,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    copy: BTreeMap<String, u64>,
    activated: Option<u64>,
    stepped_down: bool,
}

impl Node {
    fn start(cfg: SyncConfig, vip: Arc<AtomicBool>) -> Node {
        Node::with_schema(cfg, SCHEMA, vip)
    }

    /// A node speaking record schema `schema`.
    fn with_schema(cfg: SyncConfig, schema: u32, vip: Arc<AtomicBool>) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (handle, events) = SyncNode::start(cfg, schema, 0, probe(vip)).unwrap();
        Node {
            handle,
            events,
            copy: BTreeMap::new(),
            activated: None,
            stepped_down: false,
        }
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                NodeEvent::Applied(Change::Upsert(r)) => {
                    self.copy.insert(r.key, r.version);
                }
                NodeEvent::Applied(Change::Delete(id)) => {
                    self.copy.remove(&id.key);
                }
                NodeEvent::Resynced(all) => {
                    self.copy = all.into_iter().map(|r| (r.key, r.version)).collect();
                }
                NodeEvent::Activate { epoch, .. } => self.activated = Some(epoch),
                NodeEvent::StepDown { .. } => self.stepped_down = true,
            }
        }
    }

    fn role(&self) -> Role {
        self.handle.status().role
    }
}

async fn until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// "a" alone and active; the floating address answers from then on.
async fn lone_active() -> (Pair, Arc<AtomicBool>, Node) {
    let p = pair();
    let vip = Arc::new(AtomicBool::new(false));
    let a = Node::start(config("a", p.a, p.b, &SECRET), vip.clone());
    until("a active alone", Duration::from_secs(5), || {
        a.role() == Role::Active
    })
    .await;
    vip.store(true, Ordering::SeqCst);
    (p, vip, a)
}

/// "a" active (the floating address answering from then on), "b" its
/// standby in sync.
async fn active_and_standby() -> (Pair, Arc<AtomicBool>, Node, Node) {
    let (p, vip, a) = lone_active().await;
    let mut b = Node::start(config("b", p.b, p.a, &SECRET), vip.clone());
    until("b in sync", Duration::from_secs(5), || {
        b.drain();
        b.role() == Role::Standby && a.handle.status().standby_connected
    })
    .await;
    (p, vip, a, b)
}

fn record(key: &str, version: u64) -> Change {
    Change::Upsert(Record {
        kind: "call".into(),
        key: key.into(),
        version,
        data: Bytes::from(vec![7u8; 600]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_takes_over_a_dead_active_and_a_restarted_one_follows_it() {
    let (p, vip, mut a) = lone_active().await;
    a.drain();
    assert_eq!(a.activated, Some(1), "first epoch");
    for i in 0..300 {
        a.handle.publish(record(&format!("c{i}"), 1));
    }
    let mut b = Node::start(config("b", p.b, p.a, &SECRET), vip.clone());
    until("b in sync", Duration::from_secs(5), || {
        b.drain();
        b.role() == Role::Standby && b.copy.len() == 300
    })
    .await;
    // Live changes after the snapshot.
    for i in 0..100 {
        a.handle.publish(record(&format!("c{i}"), 2));
    }
    a.handle.publish(Change::Delete(state_sync::RecordId {
        kind: "call".into(),
        key: "c299".into(),
    }));
    until("b level with a", Duration::from_secs(5), || {
        b.drain();
        b.copy.len() == 299 && b.copy.get("c0") == Some(&2) && b.copy.get("c99") == Some(&2)
    })
    .await;
    until("acks reach a", Duration::from_secs(5), || {
        let s = a.handle.status();
        s.standby_connected && s.lag_records == 0 && s.records.get("call") == Some(&299)
    })
    .await;

    // The active node dies (its thread ends with its handle): b checks,
    // nobody answers on the floating address, b takes over.
    a.handle.stop().await;
    drop(a);
    vip.store(false, Ordering::SeqCst);
    until("b takes over", Duration::from_secs(5), || {
        b.drain();
        b.activated.is_some()
    })
    .await;
    assert_eq!(b.activated, Some(2), "epoch raised");
    until("b's status", Duration::from_secs(2), || {
        let s = b.handle.status();
        s.role == Role::Active && s.takeovers == 1 && s.records.get("call") == Some(&299)
    })
    .await;
    vip.store(true, Ordering::SeqCst);

    // The old node comes back empty: it follows b and gets every record.
    let mut a = Node::start(config("a", p.a, p.b, &SECRET), vip.clone());
    until(
        "a follows b with every record",
        Duration::from_secs(5),
        || {
            a.drain();
            a.role() == Role::Standby && a.copy.len() == 299
        },
    )
    .await;
    assert!(a.activated.is_none(), "no fail-back");
    assert_eq!(b.role(), Role::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_restarted_under_churn_ends_with_exactly_the_active_set() {
    let (p, vip, a, mut b) = active_and_standby().await;
    // Calls come and go while b is restarted twice (the journal holds 100
    // changes: the second restart needs a snapshot).
    let mut expected = BTreeMap::new();
    let mut version = 0;
    for round in 0..3 {
        for i in 0..400u64 {
            version += 1;
            let key = format!("c{}", (i * 7 + round) % 250);
            if i % 5 == 4 {
                expected.remove(&key);
                a.handle.publish(Change::Delete(state_sync::RecordId {
                    kind: "call".into(),
                    key,
                }));
            } else {
                expected.insert(key.clone(), version);
                a.handle.publish(record(&key, version));
            }
            if i == 200 && round < 2 {
                b.handle.stop().await;
                b = Node::start(config("b", p.b, p.a, &SECRET), vip.clone());
            }
        }
    }
    until(
        "b ends with exactly a's set",
        Duration::from_secs(10),
        || {
            b.drain();
            b.copy == expected
        },
    )
    .await;
    until("a's status", Duration::from_secs(2), || {
        a.handle.status().records.get("call").copied().unwrap_or(0) == expected.len()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_pair_link_with_the_active_still_serving_is_no_takeover() {
    let (p, vip, a) = lone_active().await;
    // b is configured with a peer address where nothing answers: as if
    // the pair link were cut. The floating address still answers.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut b = Node::start(config("b", p.b, dead, &SECRET), vip.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.drain();
    assert!(b.activated.is_none(), "never two actives");
    assert_ne!(b.role(), Role::Active);
    assert_eq!(a.role(), Role::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_secret_is_refused_and_never_followed() {
    let (p, vip, a) = lone_active().await;
    a.handle.publish(record("secret-call", 1));
    let other = secret_file(&random_secret(), 0o600);
    let mut b = Node::start(config("b", p.b, p.a, &other), vip);
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.drain();
    let s = b.handle.status();
    assert_eq!(s.peer_role, None, "a's heartbeats do not authenticate");
    assert!(b.copy.is_empty());
    assert_ne!(s.role, Role::Active, "the flag says the address answers");
    assert!(!a.handle.status().standby_connected);
    // b never hears an active peer, so never dials; a drops b's
    // heartbeats, which do not open.
    assert!(a.handle.status().refused.auth > 0, "counted");
    assert_eq!(a.handle.status().standby_connects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_hands_every_record_over_and_swaps_roles() {
    let (_, _, mut a, mut b) = active_and_standby().await;
    for i in 0..200 {
        a.handle.publish(record(&format!("c{i}"), 1));
    }
    // No wait for the acks: the handover follows the changes in order.
    a.handle.switchover(false).await.unwrap();
    until("roles swapped", Duration::from_secs(5), || {
        a.drain();
        b.drain();
        b.activated.is_some() && a.stepped_down
    })
    .await;
    assert_eq!(b.copy.len(), 200, "every change before the handover");
    until("a follows b", Duration::from_secs(5), || {
        a.drain();
        a.role() == Role::Standby && a.copy.len() == 200
    })
    .await;
    assert_eq!(b.role(), Role::Active);
    assert!(b.handle.status().epoch > 1);
    assert!(
        a.handle.switchover(false).await.is_err(),
        "only the active node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_external_owner_of_the_address_roles_follow_its_notifications() {
    let p = pair();
    let nobody = Arc::new(AtomicBool::new(false));
    let external = |node, listen, peer| SyncConfig {
        external_role: true,
        ..config(node, listen, peer, &SECRET)
    };
    let mut a = Node::start(external("a", p.a, p.b), nobody.clone());
    let mut b = Node::start(external("b", p.b, p.a), nobody.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        a.role(),
        Role::Starting,
        "no role of its own: {:?}",
        a.handle.status()
    );
    a.handle.notify(true);
    until("a active, b its standby", Duration::from_secs(5), || {
        a.drain();
        b.drain();
        a.role() == Role::Active && b.role() == Role::Standby
    })
    .await;
    a.handle.publish(record("c1", 1));
    until("b has the record", Duration::from_secs(5), || {
        b.drain();
        b.copy.len() == 1
    })
    .await;
    // a dies; nothing answers on the address: still no takeover of b's own.
    a.handle.stop().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.drain();
    assert!(b.activated.is_none());
    b.handle.notify(true);
    until("b active", Duration::from_secs(5), || {
        b.drain();
        b.activated == Some(2)
    })
    .await;
    b.handle.notify(false);
    until("b backup", Duration::from_secs(5), || {
        b.drain();
        b.stepped_down
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_standby_gets_no_records_and_only_a_forced_switchover() {
    let (p, vip, a) = lone_active().await;
    a.handle.publish(record("c1", 1));
    // b runs a newer version whose records a cannot share.
    let mut b = Node::with_schema(config("b", p.b, p.a, &SECRET), 2 << 16, vip.clone());
    until("b in the upgrade state", Duration::from_secs(5), || {
        b.role() == Role::Upgrade { peer_newer: false }
    })
    .await;
    // Heartbeats flow, records do not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.drain();
    assert!(b.copy.is_empty(), "no records across incompatible schemas");
    let refused = a.handle.switchover(false).await.unwrap_err();
    assert!(refused.contains("upgrade state"), "{refused}");
    a.handle.switchover(true).await.unwrap();
    until("b active", Duration::from_secs(5), || {
        b.drain();
        b.activated.is_some()
    })
    .await;
    until("a follows", Duration::from_secs(5), || {
        a.role() == Role::Upgrade { peer_newer: true }
    })
    .await;
}

/// A man in the middle on loopback: forwards the TCP connections and the
/// UDP datagrams that reach `addr` to `target`, keeping a copy of every
/// byte, as an attacker on the pair link would.
struct Relay {
    addr: SocketAddr,
    /// Per TCP connection, in order: what the connecting side sent.
    to_target: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Everything the target sent back, over all connections.
    from_target: Arc<Mutex<Vec<u8>>>,
    /// Every datagram forwarded.
    datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    udp: Arc<UdpSocket>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listener = TcpListener::bind(addr).await.unwrap();
        let udp = Arc::new(UdpSocket::bind(addr).await.unwrap());
        let to_target = Arc::new(Mutex::new(Vec::new()));
        let from_target = Arc::new(Mutex::new(Vec::new()));
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_target.clone(), from_target.clone());
        let tcp = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let index = {
                    let mut up = up.lock().unwrap();
                    up.push(Vec::new());
                    up.len() - 1
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = up.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        up.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let down = down.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        down.lock().unwrap().extend_from_slice(&buf[..n]);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let (sock, seen) = (udp.clone(), datagrams.clone());
        let dgram = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                seen.lock().unwrap().push(buf[..n].to_vec());
                let _ = sock.send_to(&buf[..n], target).await;
            }
        });
        Relay {
            addr,
            to_target,
            from_target,
            datagrams,
            udp,
            tasks: vec![tcp, dgram],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads what `stream` gets until it is closed or `deadline` passes.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, bool) {
    let end = tokio::time::Instant::now() + deadline;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_connecting_never_displace_the_standby_and_are_closed() {
    let (p, _vip, a, mut b) = active_and_standby().await;
    until("a counts b", Duration::from_secs(5), || {
        a.handle.status().standby_connected
    })
    .await;
    let connects = a.handle.status().standby_connects;
    assert_eq!(connects, 1);
    // A silent connect, one that starts a handshake with a made-up proof,
    // and one from an address that is not the peer's.
    let mut silent = TcpStream::connect(p.a).await.unwrap();
    let mut liar = TcpStream::connect(p.a).await.unwrap();
    let mut hello = b"TSYN\x02\xa1".to_vec();
    hello.extend_from_slice(&[7u8; 32]);
    liar.write_all(&hello).await.unwrap();
    let mut challenge = [0u8; 38];
    liar.read_exact(&mut challenge).await.unwrap();
    let mut proof = b"TSYN\x02\xa3".to_vec();
    proof.extend_from_slice(&[9u8; 32]);
    liar.write_all(&proof).await.unwrap();
    let from_elsewhere = tokio::net::TcpSocket::new_v4().unwrap();
    from_elsewhere.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut elsewhere = from_elsewhere.connect(p.a).await.unwrap();

    // The standby keeps receiving while they hang on.
    a.handle.publish(record("during-strangers", 1));
    until("b still follows", Duration::from_secs(5), || {
        b.drain();
        b.copy.contains_key("during-strangers")
    })
    .await;
    // Each is closed: the silent one by the handshake deadline.
    for (name, s) in [
        ("liar", &mut liar),
        ("elsewhere", &mut elsewhere),
        ("silent", &mut silent),
    ] {
        let (got, closed) = read_until_closed(s, Duration::from_secs(4)).await;
        assert!(closed, "{name} still open");
        assert!(got.len() <= 38, "{name} was sent {} bytes", got.len());
    }
    until("the strangers counted", Duration::from_secs(2), || {
        let r = a.handle.status().refused;
        r.handshake >= 2 && r.source >= 1
    })
    .await;
    let s = a.handle.status();
    assert!(s.standby_connected);
    assert_eq!(s.standby_connects, connects, "no stranger replaced b");
    a.handle.publish(record("after-strangers", 1));
    until("b still follows after", Duration::from_secs(5), || {
        b.drain();
        b.copy.contains_key("after-strangers")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_unreadable_on_the_wire_and_a_replayed_hello_gets_nothing() {
    let (p, vip, a) = lone_active().await;
    // Call data as it would be: numbers and SDP.
    let secret_call = "sip:+4930555123@carrier.example";
    a.handle.publish(Change::Upsert(Record {
        kind: "call".into(),
        key: secret_call.into(),
        version: 1,
        data: Bytes::from("c=IN IP4 198.51.100.7\r\nm=audio 40000 RTP/AVP 8"),
    }));
    // b reaches a through the relay (stream and heartbeats).
    let relay = Relay::start(p.a).await;
    let mut b = Node::start(config("b", p.b, relay.addr, &SECRET), vip);
    until(
        "b has the call through the relay",
        Duration::from_secs(5),
        || {
            b.drain();
            b.copy.contains_key(secret_call)
        },
    )
    .await;
    until("a counts b", Duration::from_secs(5), || {
        a.handle.status().standby_connects == 1
    })
    .await;
    let wire = relay.from_target.lock().unwrap().clone();
    assert!(wire.len() > 100, "the snapshot went through the relay");
    for plain in [&b"+4930555123"[..], b"198.51.100.7", b"m=audio"] {
        assert!(
            !wire.windows(plain.len()).any(|w| w == plain),
            "{} readable on the wire",
            String::from_utf8_lossy(plain)
        );
    }

    // Everything b sent on its connection (handshake, Hello, acks),
    // replayed on a new connection of the attacker's.
    let recorded = relay.to_target.lock().unwrap()[0].clone();
    assert!(recorded.len() > 38 * 2);
    let mut replay = TcpStream::connect(p.a).await.unwrap();
    replay.write_all(&recorded).await.unwrap();
    let (got, closed) = read_until_closed(&mut replay, Duration::from_secs(4)).await;
    assert!(closed, "the replayed connection is closed");
    assert!(
        got.len() <= 38,
        "a replayed Hello got {} bytes (a snapshot?)",
        got.len()
    );
    until("the replay counted", Duration::from_secs(2), || {
        a.handle.status().refused.handshake >= 1
    })
    .await;
    assert_eq!(
        a.handle.status().standby_connects,
        1,
        "the replay replaced nothing"
    );
    a.handle.publish(record("after-replay", 1));
    until("b still follows", Duration::from_secs(5), || {
        b.drain();
        b.copy.contains_key("after-replay")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_heartbeats_of_a_dead_active_do_not_block_the_takeover() {
    let p = pair();
    let vip = Arc::new(AtomicBool::new(false));
    // a's heartbeats reach b through the relay, which records them.
    let relay = Relay::start(p.b).await;
    let a = Node::start(config("a", p.a, relay.addr, &SECRET), vip.clone());
    until("a active alone", Duration::from_secs(5), || {
        a.role() == Role::Active
    })
    .await;
    vip.store(true, Ordering::SeqCst);
    let mut b = Node::start(config("b", p.b, p.a, &SECRET), vip.clone());
    until("b in sync", Duration::from_secs(5), || {
        b.drain();
        b.role() == Role::Standby
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.handle.stop().await;
    drop(a);
    vip.store(false, Ordering::SeqCst);
    // The latest ones, sent while a was active (the first ones say it was
    // starting, which would not hold b back anyway).
    let recorded = relay.datagrams.lock().unwrap().clone();
    assert!(
        recorded.len() >= 5,
        "{} heartbeats recorded",
        recorded.len()
    );
    let recorded = recorded[recorded.len() - 5..].to_vec();
    // Replay a's heartbeats to b from a's address, over and over, as if a
    // were alive.
    let (sock, target) = (relay.udp.clone(), p.b);
    let replayer = tokio::spawn(async move {
        for d in recorded.iter().cycle() {
            let _ = sock.send_to(d, target).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    until("b takes over", Duration::from_secs(5), || {
        b.drain();
        b.activated.is_some()
    })
    .await;
    replayer.abort();
    assert!(b.handle.status().refused.replayed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_file_others_can_read_or_an_example_secret_is_refused() {
    let p = pair();
    let readable = secret_file(&random_secret(), 0o644);
    let e = SyncNode::start(
        config("a", p.a, p.b, &readable),
        SCHEMA,
        0,
        probe(Arc::new(AtomicBool::new(false))),
    )
    .err()
    .expect("refused");
    assert!(
        e.starts_with("secret_file: ") && e.contains(&readable.display().to_string()),
        "{e}"
    );
    assert!(e.contains("0644"), "{e}");
    for example in [
        "testbed pair secret, change me",
        "a shared secret of the pair",
    ] {
        let f = secret_file(example, 0o600);
        let e = SyncNode::start(
            config("a", p.a, p.b, &f),
            SCHEMA,
            0,
            probe(Arc::new(AtomicBool::new(false))),
        )
        .err()
        .expect("refused");
        assert!(e.contains("published example"), "{e}");
    }
}
