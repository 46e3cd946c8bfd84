//! Gratuitous ARP frames, as bytes: pure, so they are unit-tested field by
//! field. Sending them is [`super::sys`]'s job.

use std::net::Ipv4Addr;

/// Length of a frame built by [`garp_frame`]: the 14-byte Ethernet header
/// and 28-byte ARP packet, padded with zeros to Ethernet's 60-byte minimum
/// (without FCS), as a NIC would.
pub const ARP_FRAME_LEN: usize = 60;

const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const HTYPE_ETHERNET: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// The two forms of gratuitous ARP; announcing with both is common
/// practice, since neighbours differ in which one they honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarpKind {
    /// An ARP request for our own address (RFC 5227 "ARP announcement"):
    /// target hardware address all zeros.
    Request,
    /// An unsolicited ARP reply (`arping -A`): target hardware address is
    /// our own, which Linux requires to take a reply as gratuitous.
    Reply,
}

/// The gratuitous ARP frame announcing that `ip` is at `mac`: Ethernet
/// broadcast destination, sender and target protocol address both `ip`.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr, kind: GarpKind) -> [u8; ARP_FRAME_LEN] {
    let (op, target_mac) = match kind {
        GarpKind::Request => (OP_REQUEST, [0; 6]),
        GarpKind::Reply => (OP_REPLY, mac),
    };
    let mut f = [0u8; ARP_FRAME_LEN];
    // Ethernet header.
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // ARP packet.
    f[14..16].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f[18] = 6; // hardware address length
    f[19] = 4; // protocol address length
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// `aa:bb:cc:dd:ee:ff`, as `ip link` prints it.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
