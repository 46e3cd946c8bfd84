use std::path::Path;

use super::*;

const EXAMPLE: &str = include_str!("../../../deploy/tandem.example.toml");

/// The example config (SIP on 5060, admin on loopback 8080, no pair),
/// with `ha` as its `[ha]` table (not validated: no secret file needed).
fn config(ha: Option<&str>) -> Config {
    let mut c = Config::parse(EXAMPLE, Path::new("tandem.toml")).unwrap();
    c.ha = ha.map(|t| toml::from_str(t).unwrap());
    c
}

const PAIR: &str = r#"
node = "a"
secret_file = "/etc/tandem/pair.secret"
link = { listen = "10.77.1.1:7480", peer = "10.77.1.2:7480" }
[fencing]
probe_hosts = ["10.77.0.10"]
[vip]
addresses = ["10.77.0.100/24"]
interface = "eth0"
"#;

fn named(needs: &[Need]) -> Vec<(String, String)> {
    needs
        .iter()
        .map(|n| (n.capability.to_string(), n.key.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, k)| (c.to_string(), k.to_string()))
        .collect()
}

#[test]
fn a_lone_node_on_high_ports_needs_nothing() {
    assert_eq!(needs(&config(None), 1024), []);
}

#[test]
fn the_kernel_fast_path_on_needs_bpf_and_net_admin_auto_needs_nothing() {
    let mut c = config(None);
    c.media.fast_path = media_relay::FastPathMode::On;
    assert_eq!(
        named(&needs(&c, 1024)),
        pairs(&[
            ("CAP_BPF", "media.fast_path"),
            ("CAP_NET_ADMIN", "media.fast_path")
        ])
    );
    c.media.fast_path = media_relay::FastPathMode::Auto;
    assert_eq!(needs(&c, 1024), []);
}

#[test]
fn shards_need_bpf() {
    let mut c = config(None);
    c.sip.shards = 2;
    assert_eq!(
        named(&needs(&c, 1024)),
        pairs(&[("CAP_BPF", "sip.shards"), ("CAP_PERFMON", "sip.shards")])
    );
}

#[test]
fn a_port_below_the_unprivileged_start_needs_net_bind_service() {
    let mut c = config(None);
    c.sip.listen[0].set_port(506);
    assert_eq!(
        named(&needs(&c, 1024)),
        pairs(&[("CAP_NET_BIND_SERVICE", "sip.listen")])
    );
    // A host that lowered net.ipv4.ip_unprivileged_port_start.
    assert_eq!(needs(&c, 0), []);
}

#[test]
fn a_pair_with_a_floating_address_and_fencing_needs_admin_raw_and_nice() {
    assert_eq!(
        named(&needs(&config(Some(PAIR)), 1024)),
        pairs(&[
            ("CAP_NET_ADMIN", "ha.vip"),
            ("CAP_NET_RAW", "ha.vip"),
            ("CAP_NET_RAW", "ha.fencing.probe_hosts"),
            ("CAP_SYS_NICE", "ha.realtime_priority"),
        ])
    );
    // No realtime heartbeats, no CAP_SYS_NICE.
    let c = config(Some(
        &PAIR.replace("node = \"a\"", "node = \"a\"\nrealtime_priority = 0"),
    ));
    assert!(
        !named(&needs(&c, 1024)).contains(&("CAP_SYS_NICE".into(), "ha.realtime_priority".into()))
    );
    // keepalived moves the address and decides: no address, no fencing.
    let c = config(Some(&PAIR.replace(
        "node = \"a\"",
        "node = \"a\"\nexternal_role = true\nrealtime_priority = 0",
    )));
    assert_eq!(needs(&c, 1024), []);
}

#[test]
fn the_error_names_each_missing_capability_its_key_and_the_fix() {
    let needs = needs(&config(Some(PAIR)), 1024);
    let held: CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_SYS_NICE]
        .into_iter()
        .collect();
    let missing = missing(&needs, &held);
    assert_eq!(missing.len(), 2);
    let text = explain(&missing);
    assert!(
        text.contains("ha.vip needs CAP_NET_RAW for gratuitous ARP"),
        "{text}"
    );
    assert!(
        text.contains("ha.fencing.probe_hosts needs CAP_NET_RAW"),
        "{text}"
    );
    assert!(text.contains("AmbientCapabilities=CAP_NET_RAW "), "{text}");
    assert!(!text.contains("CAP_NET_ADMIN"), "{text}");
}
