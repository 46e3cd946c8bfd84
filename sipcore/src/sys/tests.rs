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

#[test]
fn one_sendmmsg_sends_each_datagram_to_its_own_address_in_order() {
    let (rx1, tx) = pair();
    let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx2.set_nonblocking(true).unwrap();
    let (to1, to2) = (rx1.local_addr().unwrap(), rx2.local_addr().unwrap());
    let datagrams = [(&b"one"[..], to1), (b"two", to2), (b"three", to1)];
    let mut send = SendBatch::default();
    assert_eq!(send.send(tx.as_fd(), &datagrams).unwrap(), 3);
    assert_eq!(send.send(tx.as_fd(), &datagrams[..0]).unwrap(), 0);
    let mut batch = RecvBatch::new(8, 16);
    let from = Some(tx.local_addr().unwrap());
    assert_eq!(batch.recv(rx1.as_fd()).unwrap(), 2);
    assert_eq!(batch.datagram(0), (&b"one"[..], from));
    assert_eq!(batch.datagram(1), (&b"three"[..], from));
    assert_eq!(batch.recv(rx2.as_fd()).unwrap(), 1);
    assert_eq!(batch.datagram(0), (&b"two"[..], from));
}

#[test]
fn sendmmsg_stops_short_of_a_failing_datagram_and_the_next_call_reports_it() {
    let (rx, tx) = pair();
    let to = rx.local_addr().unwrap();
    // An IPv4 socket cannot send to an IPv6 address.
    let v6: SocketAddr = "[::1]:5060".parse().unwrap();
    let datagrams = [(&b"one"[..], to), (b"lost", v6), (b"two", to)];
    let mut send = SendBatch::default();
    assert_eq!(send.send(tx.as_fd(), &datagrams).unwrap(), 1);
    assert!(send.send(tx.as_fd(), &datagrams[1..]).is_err());
    assert_eq!(send.send(tx.as_fd(), &datagrams[2..]).unwrap(), 1);
    let mut batch = RecvBatch::new(8, 16);
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 2);
    assert_eq!(batch.datagram(0).0, b"one");
    assert_eq!(batch.datagram(1).0, b"two");
}
