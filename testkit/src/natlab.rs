//! A NAT lab: a phone in its own network namespace behind a masquerading
//! router namespace, the way a desk phone sits behind a home or office
//! router. The server side (the registrar under test) runs in the root
//! namespace and is reached at [`NatLab::server_addr`]:
//!
//! ```text
//!  root ns                       NAME-rt (router)                 NAME-ph (phone)
//!  NAME-r0 10.78.X.1/24 ──veth── pub0 10.78.X.2/24
//!                                priv0 192.168.X.1/24 ──veth──── eth0 192.168.X.2/24
//!                                nft: oifname pub0, saddr 192.168.X.0/24 → masquerade
//! ```
//!
//! The root namespace has no route to 192.168.X.0/24: the phone's own
//! address (its Contact) is unreachable from the server, which sees its
//! traffic coming from the router's public address and a port the router
//! chose. Only answers on a flow the phone opened get back in (conntrack).
//!
//! [`NatLab::new`] builds it under a fresh name; dropping the [`NatLab`]
//! (also when the test panics) kills every process still running in its
//! namespaces by pid and deletes the link and the namespaces. Needs root,
//! iproute2 and nftables (`scripts/test` installs them); a missing one
//! fails the test loudly rather than skipping it.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Context;

use crate::lab::{run, unique_name};

/// A running NAT lab; torn down on drop.
#[derive(Debug)]
pub struct NatLab {
    name: String,
    /// X in the lab's subnets, 10.78.X.0/24 and 192.168.X.0/24.
    subnet: u8,
}

impl NatLab {
    /// Builds a lab: namespaces, links, addresses, routes, forwarding and
    /// the masquerade rule.
    pub fn new() -> anyhow::Result<NatLab> {
        let name = unique_name("nat");
        let subnet = free_subnet(&name)?;
        // From here on the guard exists, so a half-built lab is torn down.
        let lab = NatLab { name, subnet };
        lab.build()
            .with_context(|| format!("build NAT lab {}", lab.name))?;
        Ok(lab)
    }

    fn build(&self) -> anyhow::Result<()> {
        let (rt, ph, r0) = (self.router_ns(), self.phone_ns(), self.root_link());
        let x = self.subnet;
        let ip = |args: &[&str]| run(Command::new("ip").args(args)).map(drop);
        ip(&["netns", "add", &rt])?;
        ip(&["netns", "add", &ph])?;
        ip(&[
            "link", "add", &r0, "type", "veth", "peer", "name", "pub0", "netns", &rt,
        ])?;
        ip(&[
            "link", "add", "priv0", "netns", &rt, "type", "veth", "peer", "name", "eth0", "netns",
            &ph,
        ])?;
        ip(&["addr", "add", &format!("10.78.{x}.1/24"), "dev", &r0])?;
        ip(&["link", "set", &r0, "up"])?;
        ip(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("10.78.{x}.2/24"),
            "dev",
            "pub0",
        ])?;
        ip(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("192.168.{x}.1/24"),
            "dev",
            "priv0",
        ])?;
        for dev in ["lo", "pub0", "priv0"] {
            ip(&["-n", &rt, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            &ph,
            "addr",
            "add",
            &format!("192.168.{x}.2/24"),
            "dev",
            "eth0",
        ])?;
        for dev in ["lo", "eth0"] {
            ip(&["-n", &ph, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            &ph,
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{x}.1"),
        ])?;
        run(self
            .command("rt", "sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]))?;
        let rules = format!(
            "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             oifname \"pub0\" ip saddr 192.168.{x}.0/24 masquerade\n  }}\n}}\n"
        );
        let file = crate::work_dir("natlab nft");
        let path = file.path().join("nat.nft");
        std::fs::write(&path, rules)?;
        run(self.command("rt", "nft").arg("-f").arg(&path))
            .context("nft (is Debian's nftables installed?)")?;
        Ok(())
    }

    /// The lab's name (its namespaces are `NAME-rt` and `NAME-ph`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The phone's namespace.
    pub fn phone_ns(&self) -> String {
        format!("{}-ph", self.name)
    }

    /// The router's namespace.
    pub fn router_ns(&self) -> String {
        format!("{}-rt", self.name)
    }

    /// The root namespace's end of the link to the router.
    fn root_link(&self) -> String {
        format!("{}-r0", self.name)
    }

    /// The server side's address, in the root namespace: bind the
    /// registrar here (the phone reaches it through the router).
    pub fn server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.subnet, 1)
    }

    /// The router's public address: where the phone's traffic comes from,
    /// as the server sees it.
    pub fn public_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.subnet, 2)
    }

    /// The phone's private address (unreachable from the root namespace).
    pub fn phone_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, self.subnet, 2)
    }

    /// `program` to be run in the phone's namespace; add arguments.
    pub fn run_in_phone(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command("ph", program)
    }

    /// `program` to be run in the router's namespace; add arguments.
    pub fn run_in_router(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command("rt", program)
    }

    fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-{node}", self.name)])
            .arg(program);
        cmd
    }
}

/// A subnet number whose 10.78.X.0/24 no interface of the root namespace
/// has yet, starting from one the lab's name picks (concurrent tests then
/// rarely even try the same one).
fn free_subnet(name: &str) -> anyhow::Result<u8> {
    let start = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    for i in 0..250u32 {
        let x = ((start + i) % 250 + 1) as u8;
        let out =
            run(Command::new("ip").args(["-o", "addr", "show", "to", &format!("10.78.{x}.0/24")]))?;
        if out.stdout.is_empty() {
            return Ok(x);
        }
    }
    anyhow::bail!("no free 10.78.X.0/24 for a NAT lab")
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for ns in [self.phone_ns(), self.router_ns()] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        // The root end first: deleting a namespace frees its links only
        // later, and the next lab may want the name.
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_link()])
            .output();
        for ns in [self.phone_ns(), self.router_ns()] {
            if let Err(e) = run(Command::new("ip").args(["netns", "del", &ns])) {
                eprintln!("testkit: tearing down NAT lab {}: {e:#}", self.name);
            }
        }
    }
}
