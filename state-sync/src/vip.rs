//! The floating (virtual) IP address: the active Tandem adds it to its
//! service interface and announces it; the node giving up the role removes
//! it.
//!
//! Addresses are added, removed and listed over rtnetlink (the same calls
//! as `ip address add/del/show`), in the network namespace the process runs
//! in. After adding, [`FloatingIp::announce`] broadcasts gratuitous ARP on
//! the interface for every IPv4 address, so that neighbours which already
//! have an ARP entry for the address (the SIP trunk, the media servers)
//! move it to this node's MAC address at once rather than after their entry
//! goes stale and fails. Linux updates an *existing* neighbour entry from a
//! gratuitous ARP whatever `arp_accept` says (that sysctl only governs
//! creating new entries from one); a neighbour without an entry resolves the
//! address normally on its next packet.
//!
//! Not built: IPv6. IPv6 addresses are added (with `IFA_F_NODAD`, so they
//! are usable at once) and removed like IPv4 ones, but no unsolicited
//! neighbour advertisement is sent for them; neighbours holding a cached
//! entry for an IPv6 VIP learn the new MAC only through neighbour
//! unreachability detection (several seconds).
//!
//! The only traffic sent from here is the ARP burst, to the Ethernet
//! broadcast address, on the configured interface, about the configured
//! addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use serde::{Deserialize, Serialize};

mod arp;

pub use arp::{garp_frame, GarpKind, ARP_FRAME_LEN};

/// Where the floating address lives and how it is announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VipConfig {
    /// The floating addresses with their prefix, e.g. `10.77.0.100/24`.
    pub addresses: Vec<IpNet>,
    /// The service interface they are added to, e.g. `eth0`.
    pub interface: String,
    /// Gratuitous ARP rounds sent by [`FloatingIp::announce`] (each round
    /// sends a request and a reply form per IPv4 address). Several rounds
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

    /// Sends the gratuitous ARP burst for every IPv4 address: `garp_count`
    /// rounds, `garp_interval_ms` apart, each a request and a reply form,
    /// to the Ethernet broadcast address of the interface. The first round
    /// goes out before this returns; the others follow from a task, so
    /// that a takeover is not held up by the spacing of the burst.
    pub async fn announce(&self) -> Result<(), VipError> {
        let v4: Vec<Ipv4Addr> = self
            .cfg
            .addresses
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        if v4.is_empty() || self.cfg.garp_count == 0 {
            return Ok(());
        }
        let interface = self.cfg.interface.clone();
        let arp_error = move |address: Ipv4Addr, source: io::Error| VipError::Arp {
            address,
            interface: interface.clone(),
            source,
        };
        let socket = crate::sys::PacketSocket::open(self.index).map_err(|e| arp_error(v4[0], e))?;
        let mac = self.mac;
        let send_round = move |socket: &crate::sys::PacketSocket| -> Result<(), VipError> {
            for &address in &v4 {
                for kind in [GarpKind::Request, GarpKind::Reply] {
                    let frame = garp_frame(mac, address, kind);
                    socket
                        .send_broadcast(&frame)
                        .map_err(|e| arp_error(address, e))?;
                }
            }
            Ok(())
        };
        send_round(&socket)?;
        let (rounds, interval) = (self.cfg.garp_count, self.cfg.garp_interval_ms);
        let interface = self.cfg.interface.clone();
        tokio::spawn(async move {
            for _ in 1..rounds {
                tokio::time::sleep(Duration::from_millis(interval)).await;
                if let Err(e) = send_round(&socket) {
                    tracing::warn!(error = %e, "gratuitous ARP round not sent");
                    return;
                }
            }
            tracing::info!(%interface, rounds, "gratuitous ARP sent");
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
