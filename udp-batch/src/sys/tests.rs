use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::*;

/// A socket on 127.0.0.1 that does not block.
fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Receives into `batch` until `want` datagrams came in one call or the
/// deadline passed (loopback delivery is immediate, but not promised).
fn recv_at_least(batch: &mut RecvBatch, s: &UdpSocket, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match batch.recv(s.as_fd()) {
            Ok(n) if n >= want => return n,
            Ok(n) => panic!("{n} of {want} datagrams in one call"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no datagram in 5 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("recvmmsg: {e}"),
        }
    }
}

#[test]
fn one_call_receives_several_datagrams_with_their_sources() {
    let rx = socket();
    let tx = socket();
    for i in 0..3u8 {
        tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let mut batch = RecvBatch::new(8);
    assert_eq!(recv_at_least(&mut batch, &rx, 3), 3);
    assert_eq!(batch.len(), 3);
    for i in 0..3 {
        assert_eq!(batch.packet(i), &[i as u8; 10]);
        assert_eq!(batch.source(i), Some(tx.local_addr().unwrap()));
        assert!(!batch.truncated(i));
        assert_eq!(batch.timestamp(i), None, "timestamps not asked for");
    }
    // Empty queue: WouldBlock, not 0.
    let e = batch.recv(rx.as_fd()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn a_datagram_longer_than_the_size_is_cut_and_said_so() {
    let rx = socket();
    let tx = socket();
    tx.send_to(&[7; 100], rx.local_addr().unwrap()).unwrap();
    tx.send_to(&[8; 16], rx.local_addr().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut batch = RecvBatch::with_size(4, 16);
    assert_eq!(recv_at_least(&mut batch, &rx, 2), 2);
    assert_eq!(batch.packet(0), &[7; 16]);
    assert!(batch.truncated(0));
    assert_eq!(batch.packet(1), &[8; 16]);
    assert!(!batch.truncated(1), "exactly the size is whole");
    // Written in place (the relay rewrites headers).
    batch.packet_mut(1)[0] = 9;
    assert_eq!(batch.packet(1)[0], 9);
}

#[test]
fn receive_timestamps_come_with_the_datagrams_when_asked_for() {
    let rx = socket();
    set_rx_timestamps(rx.as_fd(), true).unwrap();
    let tx = socket();
    tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut batch = RecvBatch::new(2).with_timestamps();
    recv_at_least(&mut batch, &rx, 1);
    let stamp = batch.timestamp(0).expect("SO_TIMESTAMPNS");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        stamp <= now && now - stamp < Duration::from_secs(60),
        "{stamp:?}"
    );
}

/// The SIP receive loop relies on these two: a full batch leaves the rest
/// queued for the next call, and a call on an empty queue is WouldBlock
/// with nothing left filled from before.
#[test]
fn a_full_batch_leaves_the_rest_queued_and_an_empty_queue_would_block() {
    let (rx, tx) = (socket(), socket());
    let to = rx.local_addr().unwrap();
    for m in [&b"a"[..], b"b", b"c"] {
        tx.send_to(m, to).unwrap();
    }
    let mut batch = RecvBatch::with_size(2, 16);
    assert_eq!(recv_at_least(&mut batch, &rx, 2), 2);
    assert_eq!((batch.packet(0), batch.packet(1)), (&b"a"[..], &b"b"[..]));
    assert_eq!(recv_at_least(&mut batch, &rx, 1), 1);
    assert_eq!(batch.packet(0), b"c");
    let e = batch.recv(rx.as_fd()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(batch.len(), 0);
}
