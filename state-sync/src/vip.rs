//! The floating (virtual) IP address: the active Tandem adds it to its
//! service interface and announces it; the node giving up the role removes
//! it.
//!
//! Addresses are added, removed and listed over rtnetlink (the same calls
//! as `ip address add/del/show`), in the network namespace the process runs
//! in; IPv6 ones with `IFA_F_NODAD`, so they are usable at once. After
//! adding, [`FloatingIp::announce`] tells the neighbours which already have
//! an entry for an address (the SIP trunk, the media servers) to move it to
//! this node's MAC address at once rather than after their entry goes stale
//! and fails:
//!
//! * for every IPv4 address, gratuitous ARP broadcast on the interface.
//!   Linux updates an *existing* neighbour entry from a gratuitous ARP
//!   whatever `arp_accept` says (that sysctl only governs creating new
//!   entries from one);
//! * for every IPv6 address, an unsolicited neighbour advertisement
//!   (RFC 4861 §7.2.6: Override set, Solicited clear, with the Target
//!   Link-Layer Address option) to the all-nodes group ff02::1, sent from
//!   the address itself over a raw ICMPv6 socket. Linux updates an
//!   existing entry from it (to `STALE` with the new MAC); it creates none
//!   unless `accept_untracked_na` says so.
//!
//! A neighbour without an entry resolves the address normally on its next
//! packet.
//!
//! The only traffic sent from here is that burst, on the configured
//! interface, about the configured addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

mod arp;
mod ndp;

pub use arp::{garp_frame, GarpKind, ARP_FRAME_LEN};
pub use ndp::{unsolicited_na, ALL_NODES, NA_LEN};

/// Where the floating address lives and how it is announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VipConfig {
    /// The floating addresses with their prefix, e.g. `10.77.0.100/24`.
    pub addresses: Vec<IpNet>,
    /// The service interface they are added to, e.g. `eth0`.
    pub interface: String,
    /// Announcement rounds sent by [`FloatingIp::announce`] (each round
    /// sends a gratuitous ARP request and reply form per IPv4 address and
    /// an unsolicited neighbour advertisement per IPv6 one). Several rounds
    /// cover a lost frame and the neighbour's ARP lock time (1 s by
    /// default on Linux: updates closer together than that are ignored).
    pub garp_count: u32,
    /// Pause between two rounds, in milliseconds.
    pub garp_interval_ms: u64,
}

impl Default for VipConfig {
    fn default() -> VipConfig {
        VipConfig {
            addresses: Vec::new(),
            interface: String::new(),
            garp_count: 3,
            garp_interval_ms: 200,
        }
    }
}

/// What went wrong with the floating address; every message names the
/// interface (and address) concerned and, where there is one, the OS error.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("floating IP: no interface configured")]
    NoInterface,
    #[error("floating IP: cannot open a netlink socket: {0}")]
    Netlink(#[source] io::Error),
    #[error("floating IP: interface {interface:?} not found")]
    InterfaceMissing { interface: String },
    #[error("floating IP: cannot look up interface {interface:?}: {source}")]
    Interface {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("floating IP: interface {interface:?} has no Ethernet (6-byte) hardware address")]
    NoMac { interface: String },
    #[error("floating IP: cannot list the addresses of {interface:?}: {source}")]
    List {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("floating IP: cannot add {address} to {interface:?}: {source}")]
    Add {
        address: IpNet,
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("floating IP: cannot remove {address} from {interface:?}: {source}")]
    Remove {
        address: IpNet,
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("floating IP: cannot send gratuitous ARP for {address} on {interface:?}: {source}")]
    Arp {
        address: Ipv4Addr,
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "floating IP: cannot send an unsolicited neighbour advertisement for {address} on {interface:?}: {source}"
    )]
    Na {
        address: Ipv6Addr,
        interface: String,
        #[source]
        source: io::Error,
    },
}

/// The floating address(es) of one interface, managed over rtnetlink.
pub struct FloatingIp {
    cfg: VipConfig,
    index: u32,
    mac: [u8; 6],
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FloatingIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatingIp")
            .field("cfg", &self.cfg)
            .field("index", &self.index)
            .field("mac", &arp::format_mac(&self.mac))
            .finish_non_exhaustive()
    }
}

impl Drop for FloatingIp {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The OS error behind a netlink failure (the kernel's errno when it
/// answered with one).
fn os_error(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

impl FloatingIp {
    /// Opens a netlink connection (its task runs on the current tokio
    /// runtime until this value is dropped) and looks up the interface's
    /// index and MAC address.
    pub async fn new(cfg: VipConfig) -> Result<FloatingIp, VipError> {
        if cfg.interface.is_empty() {
            return Err(VipError::NoInterface);
        }
        let (connection, handle, _) = rtnetlink::new_connection().map_err(VipError::Netlink)?;
        let connection = tokio::spawn(connection);
        let found = handle
            .link()
            .get()
            .match_name(cfg.interface.clone())
            .execute()
            .try_next()
            .await;
        let link = match found {
            Ok(Some(link)) => link,
            Ok(None) => {
                connection.abort();
                return Err(VipError::InterfaceMissing {
                    interface: cfg.interface,
                });
            }
            Err(e) => {
                connection.abort();
                let source = os_error(e);
                return Err(if source.raw_os_error() == Some(libc::ENODEV) {
                    VipError::InterfaceMissing {
                        interface: cfg.interface,
                    }
                } else {
                    VipError::Interface {
                        interface: cfg.interface,
                        source,
                    }
                });
            }
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        let Some(mac) = mac else {
            connection.abort();
            return Err(VipError::NoMac {
                interface: cfg.interface,
            });
        };
        Ok(FloatingIp {
            index: link.header.index,
            mac,
            cfg,
            handle,
            connection,
        })
    }

    pub fn config(&self) -> &VipConfig {
        &self.cfg
    }

    /// The interface's MAC address, the one announced.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Adds every address (one already present is fine), then
    /// [`announce`](Self::announce)s them.
    pub async fn acquire(&self) -> Result<(), VipError> {
        for net in &self.cfg.addresses {
            let mut req = self
                .handle
                .address()
                .add(self.index, net.addr(), net.prefix_len());
            if net.addr().is_ipv6() {
                // Usable at once: no duplicate address detection delay.
                let msg = req.message_mut();
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            match req.execute().await.map_err(os_error) {
                Ok(()) => {
                    tracing::info!(address = %net, interface = %self.cfg.interface, "floating IP added")
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    tracing::debug!(address = %net, interface = %self.cfg.interface, "floating IP already present")
                }
                Err(source) => {
                    return Err(VipError::Add {
                        address: *net,
                        interface: self.cfg.interface.clone(),
                        source,
                    })
                }
            }
        }
        self.announce().await
    }

    /// Announces every address on the interface: `garp_count` rounds,
    /// `garp_interval_ms` apart, each a gratuitous ARP request and reply
    /// (to the Ethernet broadcast address) per IPv4 address and an
    /// unsolicited neighbour advertisement (to ff02::1, from the address
    /// itself) per IPv6 address. The first round goes out before this
    /// returns; the others follow from a task, so that a takeover is not
    /// held up by the spacing of the burst.
    pub async fn announce(&self) -> Result<(), VipError> {
        if self.cfg.garp_count == 0 {
            return Ok(());
        }
        let Some(burst) = Burst::open(self)? else {
            return Ok(());
        };
        burst.send_round()?;
        let (rounds, interval) = (self.cfg.garp_count, self.cfg.garp_interval_ms);
        tokio::spawn(async move {
            for _ in 1..rounds {
                tokio::time::sleep(Duration::from_millis(interval)).await;
                if let Err(e) = burst.send_round() {
                    tracing::warn!(error = %e, "announcement round not sent");
                    return;
                }
            }
            tracing::info!(interface = %burst.interface, rounds, "floating IP announced");
        });
        Ok(())
    }

    /// Removes every address (one already absent is fine).
    pub async fn release(&self) -> Result<(), VipError> {
        let present = self.addresses().await?;
        for net in &self.cfg.addresses {
            let Some(msg) = present.iter().find(|m| carries(m, net.addr())) else {
                continue;
            };
            match self
                .handle
                .address()
                .del(msg.clone())
                .execute()
                .await
                .map_err(os_error)
            {
                Ok(()) => {
                    tracing::info!(address = %net, interface = %self.cfg.interface, "floating IP removed")
                }
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                Err(source) => {
                    return Err(VipError::Remove {
                        address: *net,
                        interface: self.cfg.interface.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether every configured address is on the interface (whatever its
    /// prefix length there). `true` when none is configured.
    pub async fn held(&self) -> Result<bool, VipError> {
        let present = self.addresses().await?;
        Ok(self
            .cfg
            .addresses
            .iter()
            .all(|net| present.iter().any(|m| carries(m, net.addr()))))
    }

    /// The addresses on the interface now.
    async fn addresses(&self) -> Result<Vec<AddressMessage>, VipError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| VipError::List {
                interface: self.cfg.interface.clone(),
                source: os_error(e),
            })
    }
}

/// The open sockets of one announcement burst, moved into the task that
/// sends its later rounds.
struct Burst {
    interface: String,
    index: u32,
    mac: [u8; 6],
    /// The IPv4 addresses and the packet socket their ARP goes out on.
    arp: Option<(Vec<Ipv4Addr>, crate::sys::PacketSocket)>,
    /// Each IPv6 address with a raw ICMPv6 socket bound to it.
    na: Vec<(Ipv6Addr, Socket)>,
}

impl Burst {
    /// Opens the sockets for `ip`'s addresses; `None` when it has none.
    fn open(ip: &FloatingIp) -> Result<Option<Burst>, VipError> {
        let mut burst = Burst {
            interface: ip.cfg.interface.clone(),
            index: ip.index,
            mac: ip.mac,
            arp: None,
            na: Vec::new(),
        };
        let mut v4 = Vec::new();
        for net in &ip.cfg.addresses {
            match net.addr() {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => {
                    let socket = na_socket(a, ip.index).map_err(|e| burst.na_error(a, e))?;
                    burst.na.push((a, socket));
                }
            }
        }
        if let Some(&first) = v4.first() {
            let socket =
                crate::sys::PacketSocket::open(ip.index).map_err(|e| burst.arp_error(first, e))?;
            burst.arp = Some((v4, socket));
        }
        Ok((burst.arp.is_some() || !burst.na.is_empty()).then_some(burst))
    }

    /// One round: gratuitous ARP (request and reply form) per IPv4
    /// address, an unsolicited neighbour advertisement per IPv6 one.
    fn send_round(&self) -> Result<(), VipError> {
        if let Some((v4, socket)) = &self.arp {
            for &address in v4 {
                for kind in [GarpKind::Request, GarpKind::Reply] {
                    socket
                        .send_broadcast(&garp_frame(self.mac, address, kind))
                        .map_err(|e| self.arp_error(address, e))?;
                }
            }
        }
        let all_nodes = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.index));
        for (address, socket) in &self.na {
            socket
                .send_to(&unsolicited_na(self.mac, *address), &all_nodes)
                .map_err(|e| self.na_error(*address, e))?;
        }
        Ok(())
    }

    fn arp_error(&self, address: Ipv4Addr, source: io::Error) -> VipError {
        VipError::Arp {
            address,
            interface: self.interface.clone(),
            source,
        }
    }

    fn na_error(&self, address: Ipv6Addr, source: io::Error) -> VipError {
        VipError::Na {
            address,
            interface: self.interface.clone(),
            source,
        }
    }
}

/// A send-only (in intent) raw ICMPv6 socket for unsolicited neighbour
/// advertisements about `address` out of interface `index`: bound to
/// `address`, which is thus their source (it was added with
/// `IFA_F_NODAD`, so it is usable at once), hop limit 255 as RFC 4861
/// requires of every neighbour discovery message (receivers drop others),
/// multicast loopback off. The kernel computes the ICMPv6 checksum.
fn na_socket(address: Ipv6Addr, index: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW.cloexec(), Some(Protocol::ICMPV6))?;
    socket.set_nonblocking(true)?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_if_v6(index)?;
    socket.set_multicast_loop_v6(false)?;
    socket.bind(&SockAddr::from(SocketAddrV6::new(address, 0, 0, 0)))?;
    Ok(socket)
}

/// Whether an address message is about `addr` (IFA_LOCAL for IPv4, which
/// differs from IFA_ADDRESS only on point-to-point links; IFA_ADDRESS for
/// IPv6, which has no IFA_LOCAL).
fn carries(msg: &AddressMessage, addr: IpAddr) -> bool {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(x) => Some(*x),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(x) => Some(*x),
        _ => None,
    });
    local.or(address) == Some(addr)
}

#[cfg(test)]
mod tests;
