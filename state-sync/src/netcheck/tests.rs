use super::*;

#[test]
fn checksum_of_rfc1071_example() {
    // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum(&data), !0xddf2);
    // An odd trailing byte is padded with zero.
    assert_eq!(checksum(&[0x01]), !0x0100);
    assert_eq!(checksum(&[]), 0xffff);
}

#[test]
fn echo_request_v4_layout_and_checksum() {
    let p = echo_request(true, 0x1234, 0xabcd, b"xyz");
    assert_eq!(p[0], 8, "type echo request");
    assert_eq!(p[1], 0, "code");
    assert_eq!(&p[4..6], &[0x12, 0x34], "identifier");
    assert_eq!(&p[6..8], &[0xab, 0xcd], "sequence");
    assert_eq!(&p[8..], b"xyz");
    assert_eq!(checksum(&p), 0, "a correct checksum makes the sum verify");
    assert_ne!(&p[2..4], &[0, 0]);
}

#[test]
fn echo_request_v6_leaves_checksum_to_kernel() {
    let p = echo_request(false, 1, 2, b"");
    assert_eq!(p, vec![128, 0, 0, 0, 0, 1, 0, 2]);
}

/// An IPv4 header (20 bytes, or more with options) carrying `icmp`.
fn ipv4(icmp: &[u8], options: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + options];
    p[0] = 0x40 | ((20 + options) / 4) as u8;
    p[9] = 1; // ICMP
    p.extend_from_slice(icmp);
    p
}

fn reply(reply_type: u8, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = echo_request(true, ident, seq, b"abc");
    p[0] = reply_type;
    p
}

#[test]
fn reply_matching_by_ident_and_seq() {
    let ok = reply(0, 7, 9);
    assert!(is_echo_reply_v4(&ipv4(&ok, 0), 7, 9));
    assert!(is_echo_reply_v4(&ipv4(&ok, 8), 7, 9), "with IP options");
    assert!(!is_echo_reply_v4(&ipv4(&ok, 0), 8, 9), "other identifier");
    assert!(!is_echo_reply_v4(&ipv4(&ok, 0), 7, 10), "other sequence");
    assert!(
        !is_echo_reply_v4(&ipv4(&reply(8, 7, 9), 0), 7, 9),
        "our own request"
    );
    assert!(
        !is_echo_reply_v4(&ipv4(&reply(3, 7, 9), 0), 7, 9),
        "unreachable"
    );
    let mut not_icmp = ipv4(&ok, 0);
    not_icmp[9] = 17;
    assert!(!is_echo_reply_v4(&not_icmp, 7, 9));
    assert!(!is_echo_reply_v4(&[], 7, 9));
    assert!(!is_echo_reply_v4(&[0x45; 10], 7, 9), "truncated");
    assert!(!is_echo_reply_v4(&ipv4(&ok[..7], 0), 7, 9), "short ICMP");
    assert!(is_echo_reply(&reply(129, 7, 9), 129, 7, 9));
}

#[tokio::test]
async fn empty_probe_list_is_reachable() {
    assert!(any_reachable(&[], Duration::from_millis(10)).await);
}

#[tokio::test]
async fn loopback_answers() {
    // Needs root (raw socket), like the whole integration suite.
    let lo = IpAddr::from([127, 0, 0, 1]);
    assert!(ping(lo, Duration::from_secs(2)).await);
    assert!(any_reachable(&[IpAddr::from([192, 0, 2, 1]), lo], Duration::from_secs(2)).await);
}
