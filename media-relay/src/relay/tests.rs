use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::SockRef;

use super::bind_socket;
use crate::RelayConfig;

#[test]
fn sockets_get_the_configured_options() {
    let config = RelayConfig {
        freebind: true,
        recv_buffer_bytes: 1 << 20,
        ..RelayConfig::default()
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 77, 1)), 0);
    let sock = bind_socket(&config, addr).unwrap();
    let r = SockRef::from(&sock);
    assert!(r.freebind().unwrap());
    assert!(r.nonblocking().unwrap_or(true));
    assert!(r.recv_buffer_size().unwrap() >= 1 << 20);

    let plain = bind_socket(&RelayConfig::default(), addr).unwrap();
    assert!(!SockRef::from(&plain).freebind().unwrap());
}

#[test]
fn config_errors_name_the_key() {
    let bad = |c: RelayConfig| c.validate().unwrap_err().to_string();
    let base = RelayConfig::default();
    assert!(bad(RelayConfig {
        port_min: 100,
        port_max: 99,
        ..base.clone()
    })
    .contains("port_max"));
    assert!(bad(RelayConfig {
        port_min: 101,
        port_max: 102,
        ..base.clone()
    })
    .contains("port_max"));
    assert!(bad(RelayConfig {
        batch_size: 0,
        ..base.clone()
    })
    .contains("batch_size"));
    let mut c = base.clone();
    c.session_defaults.clock_rate = 0;
    assert!(bad(c).contains("clock_rate"));
    assert!(base.validate().is_ok());
}

#[test]
fn config_from_toml_rejects_unknown_keys() {
    let c: RelayConfig =
        serde_json::from_str(r#"{"local_ip":"127.0.0.2","port_min":20000}"#).unwrap();
    assert_eq!(c.port_min, 20000);
    assert_eq!(c.batch_size, 32);
    let e = serde_json::from_str::<RelayConfig>(r#"{"port_mni":20000}"#).unwrap_err();
    assert!(e.to_string().contains("port_mni"));
}

#[test]
fn relay_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<crate::MediaRelay>();
    shareable::<crate::RelaySnapshot>();
    shareable::<crate::SessionStats>();
}
