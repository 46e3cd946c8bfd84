use std::net::UdpSocket;
use std::os::fd::AsFd;

use super::*;

fn pair() -> (UdpSocket, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    (rx, tx)
}

#[test]
fn one_call_takes_all_queued_datagrams_and_a_short_batch_means_empty() {
    let (rx, tx) = pair();
    let to = rx.local_addr().unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        tx.send_to(m, to).unwrap();
    }
    let mut batch = RecvBatch::new(8, 16);
    // Loopback delivers synchronously: all three are queued already.
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 3);
    let got: Vec<_> = (0..batch.len()).map(|i| batch.datagram(i)).collect();
    let from = Some(tx.local_addr().unwrap());
    assert_eq!(
        got,
        vec![(&b"one"[..], from), (b"two", from), (b"three", from)]
    );
    let e = batch.recv(rx.as_fd()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(batch.len(), 0);
}

#[test]
fn a_full_batch_leaves_the_rest_queued_and_long_datagrams_are_cut() {
    let (rx, tx) = pair();
    let to = rx.local_addr().unwrap();
    for m in [&b"aaaaaaaaaa"[..], b"b", b"c"] {
        tx.send_to(m, to).unwrap();
    }
    let mut batch = RecvBatch::new(2, 4);
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 2);
    assert_eq!(batch.datagram(0).0, b"aaaa");
    assert_eq!(batch.datagram(1).0, b"b");
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 1);
    assert_eq!(batch.datagram(0).0, b"c");
}
