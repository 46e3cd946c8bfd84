use std::net::UdpSocket;
use std::os::fd::AsFd;

use super::*;

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn any_readable_tells_empty_sockets_from_one_with_a_datagram() {
    let (a, b, tx) = (socket(), socket(), socket());
    assert!(!any_readable([a.as_fd(), b.as_fd()]).unwrap());
    assert!(!any_readable([]).unwrap());
    // Loopback delivers at once: the datagram waits on `b` now.
    tx.send_to(b"stray", b.local_addr().unwrap()).unwrap();
    assert!(any_readable([a.as_fd(), b.as_fd()]).unwrap());
    assert!(!any_readable([a.as_fd()]).unwrap());
    let mut buf = [0u8; 16];
    b.recv(&mut buf).unwrap();
    assert!(!any_readable([a.as_fd(), b.as_fd()]).unwrap());
}
