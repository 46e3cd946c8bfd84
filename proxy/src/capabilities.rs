//! What the configuration needs of the kernel, checked at start: a node
//! that lacks CAP_NET_RAW would otherwise start, fail every fencing ping
//! (logged at debug) and quietly never take over. Each missing capability
//! is named with the key that needs it and why, and the process exits.

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::Config;

/// One capability the configuration needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub capability: Capability,
    /// The configuration key that needs it.
    pub key: String,
    /// What for, in words.
    pub why: &'static str,
}

/// Ports below this need CAP_NET_BIND_SERVICE (Linux's default; the host's
/// `net.ipv4.ip_unprivileged_port_start` is read at start).
pub const PRIVILEGED_PORTS_BELOW: u16 = 1024;

/// The capabilities `config` needs, each with its key, given the first
/// unprivileged port of the host.
pub fn needs(config: &Config, unprivileged_port_start: u16) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut need = |capability, key: &str, why| {
        needs.push(Need {
            capability,
            key: key.to_owned(),
            why,
        })
    };
    let mut ports: Vec<(&str, u16)> = vec![
        ("sip.listen", config.sip.listen[0].port()),
        ("media.port_min", config.media.port_min),
    ];
    if let Some(tls) = &config.sip.tls {
        ports.push(("sip.tls.port", tls.port));
    }
    if let Some(admin) = config.admin.listen {
        ports.push(("admin.listen", admin.port()));
    }
    if let Some(ha) = &config.ha {
        ports.push(("ha.link.listen", ha.link.listen.port()));
        if let Some(aux) = &ha.aux {
            ports.push(("ha.aux.listen", aux.listen.port()));
        }
    }
    for (key, port) in ports {
        // Port 0: the kernel picks one (tests); never privileged.
        if port != 0 && port < unprivileged_port_start {
            need(
                Capability::CAP_NET_BIND_SERVICE,
                key,
                "to bind a port below net.ipv4.ip_unprivileged_port_start",
            );
        }
    }
    // "auto" does without (the user-space relay); "on" must not start
    // without the kernel fast path.
    if config.media.fast_path == media_relay::FastPathMode::On {
        need(
            Capability::CAP_BPF,
            "media.fast_path",
            "to load the RTP fast path's BPF program (\"on\"; \"auto\" falls back to the user-space relay)",
        );
        need(
            Capability::CAP_NET_ADMIN,
            "media.fast_path",
            "to attach the RTP fast path at tc ingress of the relay's interface",
        );
    }
    if config.sip.shards > 1 {
        need(
            Capability::CAP_BPF,
            "sip.shards",
            "to load the program that steers each SIP datagram to the shard of its call",
        );
        need(
            Capability::CAP_PERFMON,
            "sip.shards",
            "for the kernel to verify that program as written (without it the verifier adds Spectre checks to its loops and finds it too complex)",
        );
    }
    let Some(ha) = &config.ha else {
        return needs;
    };
    if !ha.external_role && ha.vip.as_ref().is_some_and(|v| !v.addresses.is_empty()) {
        need(
            Capability::CAP_NET_ADMIN,
            "ha.vip",
            "to add and remove the floating address",
        );
        need(
            Capability::CAP_NET_RAW,
            "ha.vip",
            "for gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) at a takeover",
        );
    }
    if !ha.external_role && !ha.fencing.probe_hosts.is_empty() {
        need(
            Capability::CAP_NET_RAW,
            "ha.fencing.probe_hosts",
            "for the ICMP echo that tells a node it is not the one cut off (without it the node never takes over)",
        );
    }
    if ha.realtime_priority > 0 {
        need(
            Capability::CAP_SYS_NICE,
            "ha.realtime_priority",
            "to run the heartbeat thread under SCHED_FIFO (set it to 0 to run without)",
        );
    }
    needs
}

/// The needs not met by `effective`, in order.
pub fn missing<'a>(needs: &'a [Need], effective: &CapsHashSet) -> Vec<&'a Need> {
    needs
        .iter()
        .filter(|n| !effective.contains(&n.capability))
        .collect()
}

/// The error for what is missing: one line per need, then how to grant
/// them.
pub fn explain(missing: &[&Need]) -> String {
    let mut lines: Vec<String> = missing
        .iter()
        .map(|n| format!("{} needs {} {}", n.key, n.capability, n.why))
        .collect();
    let mut names: Vec<String> = missing.iter().map(|n| n.capability.to_string()).collect();
    names.sort();
    names.dedup();
    lines.push(format!(
        "run as root or with AmbientCapabilities={} (deploy/systemd/tandem.service), or change the configuration",
        names.join(" ")
    ));
    format!("missing capabilities:\n  {}", lines.join("\n  "))
}

/// The first unprivileged port of this host (1024 when unreadable).
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PRIVILEGED_PORTS_BELOW)
}

/// Checks this process's effective set against what `config` needs; Err
/// names every missing capability.
pub fn check(config: &Config) -> Result<(), String> {
    let needs = needs(config, unprivileged_port_start());
    if needs.is_empty() {
        return Ok(());
    }
    let effective = caps::read(None, CapSet::Effective)
        .map_err(|e| format!("cannot read this process's capabilities: {e}"))?;
    let missing = missing(&needs, &effective);
    if missing.is_empty() {
        let held: Vec<String> = needs.iter().map(|n| n.capability.to_string()).collect();
        tracing::info!(capabilities = %held.join(" "), "the capabilities the configuration needs are held");
        return Ok(());
    }
    Err(explain(&missing))
}

#[cfg(test)]
mod tests;
