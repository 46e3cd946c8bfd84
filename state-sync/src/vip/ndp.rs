//! Unsolicited neighbour advertisements (RFC 4861 §7.2.6), as bytes: pure,
//! so they are unit-tested field by field. The IP header is the kernel's
//! (a raw ICMPv6 socket), and so is the checksum, which covers an IPv6
//! pseudo-header and is left zero here.

use std::net::Ipv6Addr;

/// Length of a message built by [`unsolicited_na`]: the 24-byte neighbour
/// advertisement and one 8-byte Target Link-Layer Address option.
pub const NA_LEN: usize = 32;

/// Where unsolicited advertisements go: the link-local all-nodes group.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Flags word: Router (bit 31), Solicited (bit 30), Override (bit 29).
const FLAG_OVERRIDE: u32 = 1 << 29;
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// The unsolicited neighbour advertisement announcing that `target` is at
/// `mac`: Override set (neighbours replace the link-layer address they
/// hold), Solicited and Router clear, with a Target Link-Layer Address
/// option carrying `mac`.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> [u8; NA_LEN] {
    let mut m = [0u8; NA_LEN];
    m[0] = TYPE_NEIGHBOR_ADVERTISEMENT;
    m[1] = 0; // code
              // m[2..4]: checksum, filled in by the kernel.
    m[4..8].copy_from_slice(&FLAG_OVERRIDE.to_be_bytes());
    m[8..24].copy_from_slice(&target.octets());
    m[24] = OPTION_TARGET_LINK_LAYER_ADDRESS;
    m[25] = 1; // option length, in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}
