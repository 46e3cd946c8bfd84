//! A branch-office lab: the branch LAN in one network namespace, the
//! branch's Tandem in the root namespace, and a WAN through a router
//! namespace to the central site (data centre), the way a branch office
//! reaches its headquarters' registrar and PBX:
//!
//! ```text
//!  NAME-br (branch LAN)          root ns (branch Tandem)          NAME-wan (router)             NAME-dc (centre)
//!  eth0 10.79.X.10/24 ──veth──── NAME-b0 10.79.X.1/24
//!                                NAME-w0 10.80.X.1/24 ──veth──── wan0 10.80.X.2/24
//!                                route 10.81.X.0/24 via .2       dc0  10.81.X.2/24 ──veth──── eth0 10.81.X.10/24
//!                                                                nft: forward → cut, loss      default via 10.81.X.2
//! ```
//!
//! Phones and the local gateway run in the branch namespace
//! ([`BranchLab::run_in_branch`]) and talk to Tandem at
//! [`BranchLab::tandem_branch_addr`]. The branch namespace has no route
//! beyond its LAN: like phones on a branch VLAN whose only way out is the
//! branch node, they cannot reach the centre on their own. Tandem reaches
//! the centre ([`BranchLab::dc_addr`], processes started with
//! [`BranchLab::run_in_dc`]) only through the router, whose forward hook
//! is where the WAN fails: [`BranchLab::cut`] drops everything it
//! forwards, [`BranchLab::set_loss`] a random share of it. No NAT: the
//! centre sees Tandem's WAN address, [`BranchLab::tandem_wan_addr`].
//!
//! This kernel has no netem qdisc, so [`BranchLab::set_delay`] delays in
//! user space: the router sends what it forwards into a TUN device
//! (`dly0`, by policy routing on the incoming interface), where a small
//! Python delayer holds each packet for the delay and writes it back; the
//! router then forwards it on by its main table. Cut and loss act once,
//! on the way in, not again on the way out of the delayer.
//!
//! [`BranchLab::new`] builds it under a fresh name; dropping the
//! [`BranchLab`] (also when the test panics) kills every process still
//! running in its namespaces by pid and deletes the links and the
//! namespaces. Needs root, iproute2 and nftables (`scripts/test` installs
//! them); a missing one fails the test loudly rather than skipping it.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::lab::{run, unique_name};

/// Host number of the first phone-side address in the branch LAN.
const BRANCH_HOST: u8 = 10;
/// Host number of the centre's address in its subnet.
const DC_HOST: u8 = 10;
/// The router's TUN device through which delayed packets go.
const DELAY_DEV: &str = "dly0";
/// The router's routing table that sends forwarded packets to the delayer.
const DELAY_TABLE: &str = "100";
/// Router interfaces whose incoming packets are delayed (both directions).
const DELAYED_FROM: [&str; 2] = ["wan0", "dc0"];

/// Packets that may wait in the delayer at once; more are dropped, so a
/// flood cannot grow it without bound (at 300 ms that still carries
/// 60,000 packets/s).
const DELAYER_QUEUE: usize = 20_000;

/// The TUN device's queue toward the delayer (packets). The kernel's
/// default of 500 drops bursts while the delayer is busy writing.
const DELAY_DEV_QUEUE: &str = "10000";

/// The user-space delayer (python3, the testbed's own,
/// deploy/testbed/wan-delay.py): attaches to TUN device `argv[1]`,
/// holds each packet `argv[2]` ms, then writes it back (the kernel
/// forwards it on); at most `argv[3]` packets wait.
///
/// One delay for every packet makes arrival order the release order, so
/// the schedule is a FIFO, and one thread does everything without locks:
/// read what is waiting (a bounded batch, so a flood cannot starve the
/// writes), write what is due, sleep until the next one is due or a
/// packet arrives. (A heap and a second thread behind a condition variable
/// cost a lock and a thread switch per packet: the device's queue
/// overflowed from 5,000 packets/s on.)
const DELAYER: &str = include_str!("../../deploy/testbed/wan-delay.py");

/// A running branch lab; torn down on drop.
#[derive(Debug)]
pub struct BranchLab {
    name: String,
    /// X in the lab's subnets 10.79.X.0/24 (branch LAN), 10.80.X.0/24
    /// (root–router) and 10.81.X.0/24 (router–centre).
    subnet: u8,
    /// The running delayer, while [`BranchLab::set_delay`] holds one.
    delayer: Mutex<Option<Child>>,
    /// Holds X for this lab (see [`reserve_subnet`]); released on drop,
    /// or by the kernel when the test process dies.
    _subnet_lock: std::fs::File,
}

/// The router's nftables table, the testbed's own: the forward chain
/// jumps to `cut` (empty, or one drop rule while the WAN is cut) and
/// `loss` (empty, or one random drop rule).
const ROUTER_RULES: &str = include_str!("../../deploy/testbed/wan.nft");

impl BranchLab {
    /// Builds a lab: namespaces, links, addresses, routes, forwarding in
    /// the router and its (empty) WAN-failure rules.
    pub fn new() -> anyhow::Result<BranchLab> {
        let name = unique_name("br");
        let (subnet, subnet_lock) = reserve_subnet(&name)?;
        // From here on the guard exists, so a half-built lab is torn down.
        let lab = BranchLab {
            name,
            subnet,
            delayer: Mutex::new(None),
            _subnet_lock: subnet_lock,
        };
        lab.build()
            .with_context(|| format!("build branch lab {}", lab.name))?;
        Ok(lab)
    }

    fn build(&self) -> anyhow::Result<()> {
        let (br, wan, dc) = (self.branch_ns(), self.router_ns(), self.dc_ns());
        let (b0, w0) = (self.root_branch_link(), self.root_wan_link());
        let x = self.subnet;
        let ip = |args: &[&str]| run(Command::new("ip").args(args)).map(drop);
        for ns in [&br, &wan, &dc] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link", "add", &b0, "type", "veth", "peer", "name", "eth0", "netns", &br,
        ])?;
        ip(&[
            "link", "add", &w0, "type", "veth", "peer", "name", "wan0", "netns", &wan,
        ])?;
        ip(&[
            "link", "add", "dc0", "netns", &wan, "type", "veth", "peer", "name", "eth0", "netns",
            &dc,
        ])?;
        let addr = |ns: Option<&str>, cidr: String, dev: &str| -> anyhow::Result<()> {
            match ns {
                Some(ns) => {
                    ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
                    ip(&["-n", ns, "link", "set", dev, "up"])
                }
                None => {
                    ip(&["addr", "add", &cidr, "dev", dev])?;
                    ip(&["link", "set", dev, "up"])
                }
            }
        };
        addr(None, format!("10.79.{x}.1/24"), &b0)?;
        addr(None, format!("10.80.{x}.1/24"), &w0)?;
        addr(Some(&br), format!("10.79.{x}.{BRANCH_HOST}/24"), "eth0")?;
        addr(Some(&wan), format!("10.80.{x}.2/24"), "wan0")?;
        addr(Some(&wan), format!("10.81.{x}.2/24"), "dc0")?;
        addr(Some(&dc), format!("10.81.{x}.{DC_HOST}/24"), "eth0")?;
        // Root reaches the centre only through the router; the centre
        // answers through it too.
        ip(&[
            "route",
            "add",
            &format!("10.81.{x}.0/24"),
            "via",
            &format!("10.80.{x}.2"),
            "dev",
            &w0,
        ])?;
        ip(&[
            "-n",
            &dc,
            "route",
            "add",
            "default",
            "via",
            &format!("10.81.{x}.2"),
        ])?;
        // The delayer's device, unused until set_delay: packets it writes
        // back come in on it, from addresses routed elsewhere, so reverse
        // path filtering must not drop them.
        ip(&["-n", &wan, "tuntap", "add", "dev", DELAY_DEV, "mode", "tun"])?;
        ip(&[
            "-n",
            &wan,
            "link",
            "set",
            DELAY_DEV,
            "txqueuelen",
            DELAY_DEV_QUEUE,
            "up",
        ])?;
        ip(&[
            "-n",
            &wan,
            "route",
            "add",
            "default",
            "dev",
            DELAY_DEV,
            "table",
            DELAY_TABLE,
        ])?;
        run(self.command("wan", "sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            &format!("net.ipv4.conf.{DELAY_DEV}.rp_filter=0"),
        ]))?;
        self.nft(ROUTER_RULES)
            .context("nft (is Debian's nftables installed?)")
    }

    /// Loads `rules` (an nftables script) into the router.
    fn nft(&self, rules: &str) -> anyhow::Result<()> {
        let file = crate::work_dir("branchlab nft");
        let path = file.path().join("wan.nft");
        std::fs::write(&path, rules)?;
        run(self.command("wan", "nft").arg("-f").arg(&path)).map(drop)
    }

    /// Replaces the content of the router's chain `chain` by `rule`
    /// (none when empty), in one nftables transaction.
    fn set_chain(&self, chain: &str, rule: &str) -> anyhow::Result<()> {
        let mut rules = format!("flush chain inet wan {chain}\n");
        if !rule.is_empty() {
            rules.push_str(&format!("add rule inet wan {chain} {rule}\n"));
        }
        self.nft(&rules)
            .with_context(|| format!("set the WAN's {chain} rule of lab {}", self.name))
    }

    /// Cuts the WAN: the router drops every packet it would forward, in
    /// both directions, established flows included. The links stay up,
    /// as when a provider's network fails beyond the branch's own router:
    /// nothing tells Tandem but silence.
    pub fn cut(&self) -> anyhow::Result<()> {
        self.set_chain("cut", "counter drop")
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&self) -> anyhow::Result<()> {
        self.set_chain("cut", "")
    }

    /// Drops `percent` % of the packets the router forwards, each one
    /// independently and in each direction (a round trip survives with
    /// (1 − p)²); 0 removes the loss. Independent of [`cut`](Self::cut).
    pub fn set_loss(&self, percent: u8) -> anyhow::Result<()> {
        anyhow::ensure!(percent <= 100, "loss {percent} % is over 100 %");
        if percent == 0 {
            self.set_chain("loss", "")
        } else {
            self.set_chain(
                "loss",
                &format!("numgen random mod 100 < {percent} counter drop"),
            )
        }
    }

    /// Delays every packet the router forwards by `ms` milliseconds, in
    /// each direction (a round trip takes 2 × `ms` more); 0 removes the
    /// delay. Replaces an earlier delay; independent of cut and loss.
    pub fn set_delay(&self, ms: u32) -> anyhow::Result<()> {
        let mut delayer = self.delayer.lock().unwrap_or_else(|e| e.into_inner());
        let wan = self.router_ns();
        for dev in DELAYED_FROM {
            // Absent when there was no delay: nothing to undo.
            let _ = Command::new("ip")
                .args(["-n", &wan, "rule", "del", "iif", dev, "lookup", DELAY_TABLE])
                .output();
        }
        if let Some(mut old) = delayer.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        if ms == 0 {
            return Ok(());
        }
        let child = self
            .command("wan", "python3")
            .args([
                "-c",
                DELAYER,
                DELAY_DEV,
                &ms.to_string(),
                &DELAYER_QUEUE.to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .context("start the delayer (python3) in the router")?;
        let child = delayer.insert(child);
        self.wait_delayer_attached(child)?;
        for dev in DELAYED_FROM {
            run(Command::new("ip").args([
                "-n",
                &wan,
                "rule",
                "add",
                "iif",
                dev,
                "lookup",
                DELAY_TABLE,
            ]))?;
        }
        Ok(())
    }

    /// Waits (up to 5 s) until the delayer holds its TUN device: until
    /// then the kernel would drop what is routed there.
    fn wait_delayer_attached(&self, delayer: &mut Child) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = delayer.try_wait()? {
                anyhow::bail!("the delayer exited at start ({status})");
            }
            let out = run(Command::new("ip").args([
                "-n",
                &self.router_ns(),
                "link",
                "show",
                "dev",
                DELAY_DEV,
            ]))?;
            // A TUN device has a carrier only while a process holds it.
            if !String::from_utf8_lossy(&out.stdout).contains("NO-CARRIER") {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "the delayer did not attach to {DELAY_DEV} within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds 10.79.X.`host`/24 to the branch LAN's interface (another phone,
    /// or the local gateway, with an address of its own) and returns it.
    pub fn add_branch_addr(&self, host: u8) -> anyhow::Result<Ipv4Addr> {
        anyhow::ensure!(
            (2..=254).contains(&host) && host != BRANCH_HOST,
            "branch host number {host}: 1 is Tandem's, {BRANCH_HOST} the first phone's, 0 and 255 are not hosts"
        );
        let addr = Ipv4Addr::new(10, 79, self.subnet, host);
        run(Command::new("ip").args([
            "-n",
            &self.branch_ns(),
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]))?;
        Ok(addr)
    }

    /// The lab's name (its namespaces are `NAME-br`, `NAME-wan`, `NAME-dc`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The branch LAN's namespace (phones, the local gateway).
    pub fn branch_ns(&self) -> String {
        format!("{}-br", self.name)
    }

    /// The WAN router's namespace.
    pub fn router_ns(&self) -> String {
        format!("{}-wan", self.name)
    }

    /// The central site's namespace (registrar, PBX).
    pub fn dc_ns(&self) -> String {
        format!("{}-dc", self.name)
    }

    /// The root namespace's end of the branch LAN.
    fn root_branch_link(&self) -> String {
        format!("{}-b0", self.name)
    }

    /// The root namespace's end of the WAN.
    fn root_wan_link(&self) -> String {
        format!("{}-w0", self.name)
    }

    /// The first address in the branch LAN (a phone, or the gateway).
    pub fn branch_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 79, self.subnet, BRANCH_HOST)
    }

    /// Tandem's address on the branch LAN, in the root namespace: what
    /// phones register with and call through.
    pub fn tandem_branch_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 79, self.subnet, 1)
    }

    /// Tandem's address on the WAN, in the root namespace: where its
    /// traffic to the centre comes from.
    pub fn tandem_wan_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 80, self.subnet, 1)
    }

    /// The central site's address (registrar, PBX), behind the router.
    pub fn dc_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 81, self.subnet, DC_HOST)
    }

    /// `program` to be run in the branch LAN's namespace; add arguments.
    pub fn run_in_branch(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command("br", program)
    }

    /// `program` to be run in the central site's namespace; add arguments.
    pub fn run_in_dc(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command("dc", program)
    }

    /// `program` to be run in the router's namespace; add arguments.
    pub fn run_in_router(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command("wan", program)
    }

    fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-{node}", self.name)])
            .arg(program);
        cmd
    }

    fn namespaces(&self) -> [String; 3] {
        [self.branch_ns(), self.router_ns(), self.dc_ns()]
    }
}

/// Reserves a subnet number X for which no interface of the root
/// namespace has an address in 10.79.X.0/24, 10.80.X.0/24 or
/// 10.81.X.0/24 yet, starting from one the lab's name picks. Checking the
/// addresses alone races: two labs built at once (tests run in parallel)
/// could both find X free, and Linux lets both add 10.79.X.1 — their
/// traffic would then cross. So each X is also taken with an exclusive
/// lock on a file of its own, which the kernel releases when the holder
/// dies, even by SIGKILL.
fn reserve_subnet(name: &str) -> anyhow::Result<(u8, std::fs::File)> {
    let start = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    'candidates: for i in 0..250u32 {
        let x = ((start + i) % 250 + 1) as u8;
        let path = std::env::temp_dir().join(format!("testkit-branchlab-{x}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        if lock.try_lock().is_err() {
            continue;
        }
        for net in [79, 80, 81] {
            let out = run(Command::new("ip").args([
                "-o",
                "addr",
                "show",
                "to",
                &format!("10.{net}.{x}.0/24"),
            ]))?;
            if !out.stdout.is_empty() {
                continue 'candidates;
            }
        }
        return Ok((x, lock));
    }
    anyhow::bail!("no free 10.79-81.X.0/24 for a branch lab")
}

impl Drop for BranchLab {
    fn drop(&mut self) {
        // Reaped here; the loop below would kill it too, but not wait.
        let delayer = self.delayer.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut delayer) = delayer.take() {
            let _ = delayer.kill();
            let _ = delayer.wait();
        }
        for ns in self.namespaces() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        // The root ends first: deleting a namespace frees its links only
        // later, and the next lab may want the names. The route via the
        // WAN link goes with it.
        for link in [self.root_branch_link(), self.root_wan_link()] {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
        for ns in self.namespaces() {
            if let Err(e) = run(Command::new("ip").args(["netns", "del", &ns])) {
                eprintln!("testkit: tearing down branch lab {}: {e:#}", self.name);
            }
        }
    }
}
