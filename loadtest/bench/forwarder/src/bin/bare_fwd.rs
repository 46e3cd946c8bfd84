//! A bare batched UDP forwarder: the floor under any user-space relay.
//!
//! One socket, no sessions, no per-stream state, no statistics: it waits
//! with poll(2), drains the socket with recvmmsg(2) (batches of `--batch`)
//! and sends every datagram on with sendmmsg(2) from the same socket, to
//! `--b` if it came from `--a` and to `--a` otherwise. Its CPU time per
//! packet is close to what the kernel's UDP path alone costs (one receive
//! and one send per packet, amortised system calls): a relay cannot do
//! less work per packet than this.
//!
//! Writes a destinations file for `rtpgen` (every session's streams go to
//! the one socket), prints `ready` and forwards until killed.
//!
//! ```text
//! bare-fwd --listen 127.0.61.1:20000 --a 127.0.61.2:40000 --b 127.0.61.3:40002
//!          --sessions 1500 --dests-out FILE [--batch 64]
//! ```

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use media_relay::sys::{RecvBatch, SendBatch};
use socket2::{SockAddr, SockRef};
use tandem_bench_media::{die, Opts};

fn main() {
    let o = Opts::parse(&[
        "--listen",
        "--a",
        "--b",
        "--sessions",
        "--dests-out",
        "--batch",
    ]);
    let listen: SocketAddr = o.req("--listen");
    let a: SocketAddr = o.req("--a");
    let b: SocketAddr = o.req("--b");
    let sessions: usize = o.req("--sessions");
    let out: String = o.req("--dests-out");
    let batch: usize = o.get("--batch", 64);

    let sock = UdpSocket::bind(listen).unwrap_or_else(|e| die(&format!("bind {listen}: {e}")));
    sock.set_nonblocking(true).unwrap();
    let r = SockRef::from(&sock);
    // Every stream shares this socket: give it the largest buffer allowed.
    r.set_recv_buffer_size(8 << 20).unwrap();
    r.set_send_buffer_size(8 << 20).unwrap();
    let text: String = (0..sessions)
        .map(|_| format!("{listen} {listen}\n"))
        .collect();
    std::fs::write(&out, text).unwrap_or_else(|e| die(&format!("{out}: {e}")));
    println!("ready {sessions} sessions");
    std::io::stdout().flush().ok();

    let (to_a, to_b) = (SockAddr::from(a), SockAddr::from(b));
    let mut recv = RecvBatch::new(batch);
    let mut send = SendBatch::new();
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one pollfd we own, count 1.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            die(&format!("poll: {e}"));
        }
        while let Ok(n) = recv.recv(sock.as_fd()) {
            let recv = &recv;
            send.send(
                sock.as_fd(),
                (0..n).map(|k| {
                    let dest = if recv.source(k) == Some(a) {
                        &to_b
                    } else {
                        &to_a
                    };
                    (recv.packet(k), Some(dest))
                }),
            );
            if n < recv.capacity() {
                break;
            }
        }
    }
}
