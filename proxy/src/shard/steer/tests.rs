use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::*;

/// A UDP socket on 127.0.0.1:`port` in a reuseport group.
fn reuseport_socket(port: u16) -> UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket.into()
}

fn request(call_id_line: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n{call_id_line}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Same Call-IDs, all the spellings steer.c must read alike.
const SPELLINGS: &[&str] = &[
    "Call-ID: {}",
    "call-id:{}",
    "CALL-ID  :  {}",
    "i: {}",
    "I:\t{}",
    "Call-Id: {} ",
];

#[test]
fn find_call_id_reads_every_spelling() {
    for spelling in SPELLINGS {
        let datagram = request(&spelling.replace("{}", "abc@host"));
        let value = find_call_id(&datagram).expect(spelling);
        assert!(value.starts_with(b"abc@host"), "{spelling}");
    }
    // Call-Info is not Call-ID; a value-less header is nothing.
    assert_eq!(find_call_id(&request("Call-Info: <x>")), None);
    assert_eq!(find_call_id(&request("Call-ID:")), None);
}

#[test]
fn call_ids_made_for_a_shard_hash_to_it() {
    let steering = CallIdSteering {
        key: 0x1234_5678_9abc_def0,
        shards: 2,
        shard: 1,
    };
    // The hash spreads: of 1,000 Call-IDs, each shard gets a fair share.
    let ones = (0..1000)
        .filter(|i| steering.shard_of(&format!("call{i}@tandem")) == 1)
        .count();
    assert!((400..600).contains(&ones), "{ones} of 1000 on shard 1");
    // The key matters: another key sends Call-IDs elsewhere.
    let other = CallIdSteering { key: 7, ..steering };
    let moved = (0..1000)
        .filter(|i| {
            let c = format!("call{i}@tandem");
            steering.shard_of(&c) != other.shard_of(&c)
        })
        .count();
    assert!(moved > 300, "{moved}");
    assert_eq!(
        call_id_hash(1, b"abc@host\r\nCSeq"),
        call_id_hash(1, b"abc@host")
    );
}

/// The kernel program and the Rust hash agree: every datagram reaches the
/// socket of the shard `CallIdSteering::shard_of` names, whatever its
/// spelling of the header; one without a Call-ID reaches shard 0.
#[test]
fn kernel_steers_each_datagram_to_the_shard_of_its_call_id() {
    const SHARDS: u32 = 3;
    let key = 0x0bad_cafe_dead_beef;
    let mut steering = match Steering::load(key, SHARDS) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: BPF unavailable here: {e:#}");
            return;
        }
    };
    let first = reuseport_socket(0);
    let port = first.local_addr().unwrap().port();
    let mut sockets = vec![first];
    for _ in 1..SHARDS {
        sockets.push(reuseport_socket(port));
    }
    for (shard, socket) in sockets.iter().enumerate() {
        steering.add_udp(shard as u32, socket.as_fd()).unwrap();
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let calc = |shard| CallIdSteering {
        key,
        shards: SHARDS,
        shard,
    };
    let mut seen = [0usize; SHARDS as usize];
    for i in 0..60 {
        let call_id = format!("c{i}-{}@10.0.0.{}", i * 7919, i % 5);
        let spelling = SPELLINGS[i % SPELLINGS.len()];
        let datagram = request(&spelling.replace("{}", &call_id));
        let expected = calc(0).shard_of(&call_id) as usize;
        sender.send_to(&datagram, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        let n = sockets[expected]
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{call_id} ({spelling}) not on shard {expected}: {e}"));
        assert_eq!(&buf[..n], &datagram[..]);
        seen[expected] += 1;
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "every shard got some: {seen:?}"
    );
    // No Call-ID: shard 0, every time.
    for _ in 0..5 {
        sender
            .send_to(&request("X-Nothing: here"), ("127.0.0.1", port))
            .unwrap();
        let mut buf = [0u8; 2048];
        sockets[0].recv(&mut buf).expect("no Call-ID: shard 0");
    }
    let (steered, unparsed) = steering.counts();
    assert_eq!((steered, unparsed), (60, 5));
}
