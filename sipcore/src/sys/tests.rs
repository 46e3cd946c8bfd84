use std::net::UdpSocket;
use std::os::fd::AsFd;

use udp_batch::RecvBatch;

use super::*;

fn pair() -> (UdpSocket, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    (rx, tx)
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
    let mut batch = RecvBatch::with_size(8, 16);
    let from = Some(tx.local_addr().unwrap());
    assert_eq!(batch.recv(rx1.as_fd()).unwrap(), 2);
    assert_eq!((batch.packet(0), batch.source(0)), (&b"one"[..], from));
    assert_eq!((batch.packet(1), batch.source(1)), (&b"three"[..], from));
    assert_eq!(batch.recv(rx2.as_fd()).unwrap(), 1);
    assert_eq!((batch.packet(0), batch.source(0)), (&b"two"[..], from));
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
    let mut batch = RecvBatch::with_size(8, 16);
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 2);
    assert_eq!(batch.packet(0), b"one");
    assert_eq!(batch.packet(1), b"two");
}
