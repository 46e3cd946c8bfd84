use super::*;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// The fields every gratuitous ARP frame shares, checked byte by byte.
fn check_common(f: &[u8; ARP_FRAME_LEN]) {
    assert_eq!(&f[0..6], &[0xff; 6], "Ethernet destination: broadcast");
    assert_eq!(&f[6..12], &MAC, "Ethernet source: our MAC");
    assert_eq!(&f[12..14], &[0x08, 0x06], "EtherType ARP");
    assert_eq!(&f[14..16], &[0x00, 0x01], "hardware type Ethernet");
    assert_eq!(&f[16..18], &[0x08, 0x00], "protocol type IPv4");
    assert_eq!(f[18], 6, "hardware address length");
    assert_eq!(f[19], 4, "protocol address length");
    assert_eq!(&f[22..28], &MAC, "sender hardware address");
    assert_eq!(&f[28..32], &[10, 77, 0, 100], "sender protocol address");
    assert_eq!(&f[38..42], &[10, 77, 0, 100], "target protocol address");
    assert!(f[42..].iter().all(|b| *b == 0), "zero padding to 60 bytes");
}

#[test]
fn garp_request_frame() {
    let f = garp_frame(MAC, VIP, GarpKind::Request);
    check_common(&f);
    assert_eq!(&f[20..22], &[0x00, 0x01], "opcode request");
    assert_eq!(&f[32..38], &[0; 6], "target hardware address zero");
}

#[test]
fn garp_reply_frame() {
    let f = garp_frame(MAC, VIP, GarpKind::Reply);
    check_common(&f);
    assert_eq!(&f[20..22], &[0x00, 0x02], "opcode reply");
    assert_eq!(&f[32..38], &MAC, "target hardware address = sender's");
}

#[test]
fn frame_is_ethernet_minimum() {
    assert_eq!(ARP_FRAME_LEN, 60);
    assert_eq!(garp_frame(MAC, VIP, GarpKind::Request).len(), 60);
}

const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x100);

#[test]
fn unsolicited_na_fields() {
    let m = unsolicited_na(MAC, VIP6);
    assert_eq!(NA_LEN, 32);
    assert_eq!(m.len(), 32, "24-byte advertisement + 8-byte option");
    assert_eq!(m[0], 136, "ICMPv6 type: neighbour advertisement");
    assert_eq!(m[1], 0, "code");
    assert_eq!(&m[2..4], &[0, 0], "checksum left to the kernel");
    assert_eq!(m[4], 0b0010_0000, "flags: R=0, S=0, O=1");
    assert_eq!(&m[5..8], &[0, 0, 0], "reserved");
    assert_eq!(
        &m[8..24],
        &[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00],
        "target address: the VIP"
    );
    assert_eq!(m[24], 2, "option type: target link-layer address");
    assert_eq!(m[25], 1, "option length: 1 × 8 bytes");
    assert_eq!(&m[26..32], &MAC, "option: our MAC");
}

#[test]
fn unsolicited_na_goes_to_all_nodes() {
    assert_eq!(ALL_NODES, "ff02::1".parse::<Ipv6Addr>().unwrap());
    assert!(ALL_NODES.is_multicast());
}

#[test]
fn mac_formats_like_ip_link() {
    assert_eq!(arp::format_mac(&MAC), "02:11:22:33:44:55");
}

#[test]
fn config_defaults_and_strictness() {
    let cfg: VipConfig = toml::from_str(
        r#"
        addresses = ["10.77.0.100/24", "fd00::100/64"]
        interface = "eth0"
        "#,
    )
    .expect("parse");
    assert_eq!(cfg.garp_count, 3);
    assert_eq!(cfg.garp_interval_ms, 200);
    assert_eq!(cfg.interface, "eth0");
    assert_eq!(
        cfg.addresses,
        vec![
            "10.77.0.100/24".parse::<IpNet>().unwrap(),
            "fd00::100/64".parse::<IpNet>().unwrap()
        ]
    );
    assert_eq!(VipConfig::default().garp_count, 3);
    let unknown = toml::from_str::<VipConfig>("interface = \"eth0\"\ngarp = 1\n");
    assert!(unknown.is_err(), "unknown fields are rejected");
}

fn msg(attrs: Vec<AddressAttribute>) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.attributes = attrs;
    m
}

#[test]
fn carries_prefers_local_over_peer_address() {
    let vip = IpAddr::V4(VIP);
    let other = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    assert!(carries(
        &msg(vec![
            AddressAttribute::Address(vip),
            AddressAttribute::Local(vip)
        ]),
        vip
    ));
    // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    assert!(!carries(
        &msg(vec![
            AddressAttribute::Address(vip),
            AddressAttribute::Local(other)
        ]),
        vip
    ));
    // IPv6 has only IFA_ADDRESS.
    let v6: IpAddr = "fd00::100".parse().unwrap();
    assert!(carries(&msg(vec![AddressAttribute::Address(v6)]), v6));
    assert!(!carries(&msg(vec![]), vip));
}

#[tokio::test]
async fn missing_interface_is_named() {
    let err = FloatingIp::new(VipConfig {
        interface: "nosuch0".into(),
        ..VipConfig::default()
    })
    .await
    .expect_err("no such interface");
    assert!(err.to_string().contains("\"nosuch0\""), "{err}");
    assert!(matches!(err, VipError::InterfaceMissing { .. }), "{err:?}");
    let err = FloatingIp::new(VipConfig::default())
        .await
        .expect_err("no interface");
    assert!(matches!(err, VipError::NoInterface), "{err:?}");
}
