//! Destination-group members named by DNS: `[[group.dns]]`, resolved as
//! RFC 3263 §4 says (NAPTR → SRV → A/AAAA) for the transports Tandem has,
//! UDP and TCP.
//!
//! Two halves, kept apart so that policy stays testable without a network
//! (DESIGN.md, "mechanism, policy, driver"):
//!
//! * Pure parts, plain data in and out: the choice of NAPTR records
//!   ([`select_naptr`]), ordering by SRV priority and RFC 2782's weighted
//!   choice within a priority given a random number passed in
//!   ([`weighted_pick`], [`choose`], [`failover_order`]), the TTL clamp
//!   ([`TtlBounds`]) and the members' names.
//! * The resolution ([`Resolver`], [`resolve_group`]): the lookups, async,
//!   which turn a [`DnsTarget`] into a [`Resolved`]: members with an
//!   address, transport, SRV priority and weight, and how long they stay
//!   valid (the smallest TTL of the chain, clamped). The caller resolves
//!   again at [`Resolved::refresh_at`]; when that fails it keeps the
//!   members it has and tries again after [`Resolver::retry_after`].
//!
//! A member's name is `<target>:<port>` (the SRV target or host, without
//! the root dot), so it is the same across refreshes and health state
//! can follow it. A target with several addresses is several servers:
//! each then gets `<target>:<port>@<address>`.
//!
//! Why hickory-resolver: it is the maintained async DNS resolver of the
//! Rust ecosystem (the hickory-dns project, formerly trust-dns), it runs
//! on tokio, which Tandem already uses, it parses NAPTR and SRV records
//! (getaddrinfo and most small resolvers only do A/AAAA), it returns each
//! record's TTL (and decrements it for cached answers), and it reads
//! /etc/resolv.conf. Only its tokio and system-config features are
//! built: no DNSSEC, DoT or DoH code.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::config::{DnsConfig, DnsMemberConfig, GroupConfig, MemberConfig, MemberTransport};

/// The SIP port when DNS gives none (RFC 3263 §4.2).
pub const SIP_PORT: u16 = 5060;

/// A failure to resolve, naming the DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The resolver could not be set up (/etc/resolv.conf unreadable).
    #[error("DNS resolver: {0}")]
    Setup(String),
    /// A query failed: time-out, SERVFAIL, refused.
    #[error("DNS {record} lookup of {name} failed: {message}")]
    Lookup {
        name: String,
        record: &'static str,
        message: String,
    },
    /// The chain ended without an address.
    #[error("DNS: no {tried} records for {name}")]
    NoRecords { name: String, tried: String },
}

impl From<DnsError> for crate::error::Error {
    /// A group whose members cannot be resolved is a destination that is
    /// unavailable; another group (a failover route) may do.
    fn from(e: DnsError) -> Self {
        crate::error::Error::upstream(503, "Service Unavailable", e.to_string())
    }
}

/// What one `[[group.dns]]` names, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// A SIP domain: NAPTR, then SRV, then A/AAAA on port 5060 (RFC 3263
    /// §4.1, §4.2). A transport restricts the NAPTR/SRV records used.
    Domain {
        name: Name,
        transport: Option<MemberTransport>,
    },
    /// An SRV name; its `_udp`/`_tcp` label gave the transport.
    Srv {
        name: Name,
        transport: MemberTransport,
    },
    /// A host: A/AAAA only.
    Host {
        name: Name,
        port: u16,
        transport: MemberTransport,
    },
}

impl DnsTarget {
    /// Checks a `[[group.dns]]` table. The error is the key at fault
    /// (relative to the table) and what is wrong with it.
    pub fn from_config(m: &DnsMemberConfig) -> Result<DnsTarget, (&'static str, String)> {
        let given = [&m.name, &m.srv, &m.host]
            .iter()
            .filter(|k| k.is_some())
            .count();
        if given != 1 {
            return Err(("name", "give exactly one of name, srv, host".into()));
        }
        if m.port.is_some() && m.host.is_none() {
            return Err((
                "port",
                "only with host: with name or srv the port comes from DNS".into(),
            ));
        }
        if let Some(text) = &m.name {
            let name = parse_name(text).map_err(|e| ("name", e))?;
            return Ok(DnsTarget::Domain {
                name,
                transport: m.transport,
            });
        }
        if let Some(text) = &m.srv {
            let name = parse_name(text).map_err(|e| ("srv", e))?;
            let transport = srv_transport(&name).ok_or((
                "srv",
                format!("{text:?} is not _service._udp.domain or _service._tcp.domain"),
            ))?;
            if m.transport.is_some_and(|t| t != transport) {
                return Err((
                    "transport",
                    format!("disagrees with the transport label of srv {text:?}"),
                ));
            }
            return Ok(DnsTarget::Srv { name, transport });
        }
        let text = m.host.as_deref().unwrap_or_default();
        let name = parse_name(text).map_err(|e| ("host", e))?;
        if m.port == Some(0) {
            return Err(("port", "must be > 0".into()));
        }
        Ok(DnsTarget::Host {
            name,
            port: m.port.unwrap_or(SIP_PORT),
            transport: m.transport.unwrap_or(MemberTransport::Udp),
        })
    }
}

/// A domain name from the config, made absolute: the resolver's search
/// list must not turn `pbx.example.net` into `pbx.example.net.corp.lan`.
fn parse_name(text: &str) -> Result<Name, String> {
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} is an address, not a name: use [[group.member]]"
        ));
    }
    let mut name = Name::from_ascii(text).map_err(|e| format!("not a domain name: {e}"))?;
    if name.is_root() || name.num_labels() == 0 {
        return Err("must not be empty".into());
    }
    name.set_fqdn(true);
    Ok(name)
}

/// The transport an SRV name's protocol label (`_udp`, `_tcp`) names.
fn srv_transport(name: &Name) -> Option<MemberTransport> {
    let mut labels = name.iter();
    let service = labels.next()?;
    let proto = labels.next()?;
    labels.next()?; // a domain must follow
    if !service.starts_with(b"_") {
        return None;
    }
    match proto.to_ascii_lowercase().as_slice() {
        b"_udp" => Some(MemberTransport::Udp),
        b"_tcp" => Some(MemberTransport::Tcp),
        _ => None,
    }
}

/// A name as people write it: lower case, no root dot.
fn display(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

/// One member found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMember {
    /// `<target>:<port>`, or `<target>:<port>@<address>` when the target
    /// has several addresses: the same across refreshes.
    pub name: String,
    pub address: SocketAddr,
    pub transport: MemberTransport,
    /// SRV priority: lower is used first (0 for A/AAAA-only members).
    pub priority: u16,
    /// SRV weight: share within a priority (1 for A/AAAA-only members).
    pub weight: u16,
}

impl ResolvedMember {
    /// As a static member, for a `Pool` built from a group's members plus
    /// its resolved ones: SRV priority becomes `sequential`'s priority,
    /// the weight `weighted`'s (at least 1: SRV's weight 0 means "rarely",
    /// a pool's 0 would mean never).
    pub fn to_member_config(&self) -> MemberConfig {
        MemberConfig {
            name: self.name.clone(),
            address: self.address,
            transport: self.transport,
            weight: u32::from(self.weight.max(1)),
            priority: u32::from(self.priority),
        }
    }
}

/// The members of a group (or of one `[[group.dns]]`) and how long they
/// are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// By priority (lowest first), then weight (highest first), then name.
    pub members: Vec<ResolvedMember>,
    /// The smallest TTL of the records that led to these members, clamped
    /// to `[dns] min_ttl_s..=max_ttl_s`.
    pub valid_for: Duration,
}

impl Resolved {
    /// When to resolve again, given when this resolution started.
    pub fn refresh_at(&self, resolved_at: Instant) -> Instant {
        resolved_at + self.valid_for
    }

    /// Several resolutions as one: members in order, a name seen twice
    /// kept once (the first), valid as long as the shortest.
    pub fn merge(parts: impl IntoIterator<Item = Resolved>, bounds: TtlBounds) -> Resolved {
        let mut members: Vec<ResolvedMember> = Vec::new();
        let mut valid_for: Option<Duration> = None;
        for part in parts {
            valid_for = Some(valid_for.map_or(part.valid_for, |v| v.min(part.valid_for)));
            for m in part.members {
                if !members.iter().any(|known| known.name == m.name) {
                    members.push(m);
                }
            }
        }
        sort_members(&mut members);
        Resolved {
            members,
            valid_for: valid_for.unwrap_or(bounds.max),
        }
    }
}

/// The order members are listed in: priority, then the likeliest first.
pub fn sort_members(members: &mut [ResolvedMember]) {
    members.sort_by(|a, b| {
        (a.priority, std::cmp::Reverse(a.weight), &a.name).cmp(&(
            b.priority,
            std::cmp::Reverse(b.weight),
            &b.name,
        ))
    });
}

/// `[dns] min_ttl_s`/`max_ttl_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    pub min: Duration,
    pub max: Duration,
}

impl TtlBounds {
    pub fn from_config(config: &DnsConfig) -> TtlBounds {
        TtlBounds {
            min: Duration::from_secs(config.min_ttl_s.into()),
            max: Duration::from_secs(config.max_ttl_s.into()),
        }
    }

    /// A TTL in seconds, clamped. `max` wins should `min` exceed it.
    pub fn clamp(&self, ttl_s: u32) -> Duration {
        Duration::from_secs(ttl_s.into())
            .max(self.min)
            .min(self.max)
    }
}

/// One NAPTR record, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    /// The replacement name (an SRV name for SIP's `S` records).
    pub replacement: String,
}

/// The SRV names to try for a SIP domain's NAPTR records, best first
/// (RFC 3263 §4.1): only terminal `S` records for services Tandem has
/// (`SIP+D2U`, `SIP+D2T`; `transport` narrows that to one), by order,
/// then preference; ties keep the records' order.
pub fn select_naptr(
    records: &[NaptrRecord],
    transport: Option<MemberTransport>,
) -> Vec<(String, MemberTransport)> {
    let mut usable: Vec<(u16, u16, usize, String, MemberTransport)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.flags.eq_ignore_ascii_case("s"))
        .filter(|(_, r)| !r.replacement.is_empty() && r.replacement != ".")
        .filter_map(|(i, r)| {
            let t = if r.services.eq_ignore_ascii_case("SIP+D2U") {
                MemberTransport::Udp
            } else if r.services.eq_ignore_ascii_case("SIP+D2T") {
                MemberTransport::Tcp
            } else {
                return None; // SIPS, SCTP, WebSocket: not transports Tandem has
            };
            (transport.is_none_or(|wanted| wanted == t)).then(|| {
                (
                    r.order,
                    r.preference,
                    i,
                    r.replacement.trim_end_matches('.').to_ascii_lowercase(),
                    t,
                )
            })
        })
        .collect();
    usable.sort_by_key(|&(order, preference, i, _, _)| (order, preference, i));
    usable
        .into_iter()
        .map(|(_, _, _, name, t)| (name, t))
        .collect()
}

/// RFC 2782's weighted choice among one priority's records: those of
/// weight 0 first, then the others in the order given; `random`, taken
/// modulo the sum of the weights plus one, picks the first whose running
/// sum reaches it. So a weight-0 record is chosen rarely but not never,
/// and the others in proportion to their weights. `None` when empty.
pub fn weighted_pick(weights: &[u16], random: u32) -> Option<usize> {
    let zero = weights.iter().enumerate().filter(|(_, w)| **w == 0);
    let others = weights.iter().enumerate().filter(|(_, w)| **w != 0);
    let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
    let threshold = random % (total + 1);
    let mut running = 0u32;
    for (i, &w) in zero.chain(others) {
        running += u32::from(w);
        if running >= threshold {
            return Some(i);
        }
    }
    None
}

/// The member a new request goes to: among the members `usable` allows
/// (those up), the lowest priority's, picked between by weight with
/// `random`. A priority whose members are all down passes to the next.
pub fn choose(
    members: &[ResolvedMember],
    usable: impl Fn(usize, &ResolvedMember) -> bool,
    random: u32,
) -> Option<usize> {
    let candidates: Vec<usize> = members
        .iter()
        .enumerate()
        .filter(|(i, m)| usable(*i, m))
        .map(|(i, _)| i)
        .collect();
    let best = candidates
        .iter()
        .filter_map(|&i| members.get(i))
        .map(|m| m.priority)
        .min()?;
    let level: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| members.get(i).is_some_and(|m| m.priority == best))
        .collect();
    let weights: Vec<u16> = level
        .iter()
        .filter_map(|&i| members.get(i).map(|m| m.weight))
        .collect();
    weighted_pick(&weights, random).and_then(|k| level.get(k).copied())
}

/// The order to try every member in (a request failing over from one to
/// the next): priorities lowest first, and within each, members drawn one
/// by one with [`weighted_pick`], each draw asking `random` for a number.
#[cfg(test)] // the engine orders members by the group's strategy
pub fn failover_order(members: &[ResolvedMember], mut random: impl FnMut() -> u32) -> Vec<usize> {
    let mut left: Vec<usize> = (0..members.len()).collect();
    let mut order = Vec::with_capacity(left.len());
    while let Some(next) = choose(
        members,
        |i, _| left.contains(&i) && !order.contains(&i),
        random(),
    ) {
        order.push(next);
        left.retain(|&i| i != next);
    }
    order
}

/// What `tandem resolve` prints for a group: its members in order, how
/// long they are valid, and the member a new call would go to with the
/// members named in `down` down.
pub fn describe(group: &str, resolved: &Resolved, down: &[String], random: u32) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group {group:?}: {} members from DNS, valid for {} s",
        resolved.members.len(),
        resolved.valid_for.as_secs()
    );
    for m in &resolved.members {
        let transport = match m.transport {
            MemberTransport::Udp => "udp",
            MemberTransport::Tcp => "tcp",
            MemberTransport::Tls => "tls",
        };
        let state = if down.contains(&m.name) {
            "  (down)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "member: {} {} {transport} priority={} weight={}{state}",
            m.name, m.address, m.priority, m.weight
        );
    }
    let chosen = choose(&resolved.members, |_, m| !down.contains(&m.name), random)
        .and_then(|i| resolved.members.get(i));
    let _ = writeln!(
        out,
        "choice: {} (random {random})",
        chosen.map_or("none", |m| m.name.as_str())
    );
    out
}

/// One SRV record, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvRecord {
    priority: u16,
    weight: u16,
    port: u16,
    target: Name,
}

/// Members for one target's addresses, named as the module doc says.
fn members_of(
    target: &Name,
    port: u16,
    addresses: &[IpAddr],
    transport: MemberTransport,
    priority: u16,
    weight: u16,
) -> Vec<ResolvedMember> {
    let base = format!("{}:{port}", display(target));
    addresses
        .iter()
        .map(|&ip| ResolvedMember {
            name: if addresses.len() == 1 {
                base.clone()
            } else {
                format!("{base}@{ip}")
            },
            address: SocketAddr::new(ip, port),
            transport,
            priority,
            weight,
        })
        .collect()
}

/// The DNS resolver of `[[group.dns]]` members.
#[derive(Clone)]
pub struct Resolver {
    dns: TokioResolver,
    ttl: TtlBounds,
}

/// What a lookup found, and the smallest TTL among it.
struct Found<T> {
    records: Vec<T>,
    ttl_s: u32,
}

impl Resolver {
    /// A resolver asking `config.servers`, or those of /etc/resolv.conf.
    pub fn new(config: &DnsConfig) -> Result<Resolver, DnsError> {
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                DnsError::Setup(format!("cannot read the system configuration: {e}"))
            })?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|server| {
                    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                    for connection in &mut ns.connections {
                        connection.port = server.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let ttl = TtlBounds::from_config(config);
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(config.timeout_ms);
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // The cache must not hold an answer longer than we would keep its
        // members: a refresh at max_ttl has to ask again.
        options.positive_max_ttl = Some(ttl.max);
        let dns = builder
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Resolver { dns, ttl })
    }

    /// How long to wait before resolving again after a failure (keeping
    /// the members resolved before): `min_ttl_s`, at least a second.
    pub fn retry_after(&self) -> Duration {
        self.ttl.min.max(Duration::from_secs(1))
    }

    /// Resolves one target to its members.
    pub async fn resolve(&self, target: &DnsTarget) -> Result<Resolved, DnsError> {
        let (mut members, ttl_s) = match target {
            DnsTarget::Host {
                name,
                port,
                transport,
            } => {
                let found = self
                    .addresses(name)
                    .await?
                    .ok_or_else(|| no_records(name, "A/AAAA"))?;
                (
                    members_of(name, *port, &found.records, *transport, 0, 1),
                    found.ttl_s,
                )
            }
            DnsTarget::Srv { name, transport } => self
                .srv_members(name, *transport)
                .await?
                .ok_or_else(|| no_records(name, "SRV"))?,
            DnsTarget::Domain { name, transport } => self.domain(name, *transport).await?,
        };
        sort_members(&mut members);
        Ok(Resolved {
            members,
            valid_for: self.ttl.clamp(ttl_s),
        })
    }

    /// RFC 3263 §4.1/§4.2 for a SIP domain.
    async fn domain(
        &self,
        name: &Name,
        transport: Option<MemberTransport>,
    ) -> Result<(Vec<ResolvedMember>, u32), DnsError> {
        if let Some(naptr) = self.naptr(name).await? {
            let candidates = select_naptr(&naptr.records, transport);
            // NAPTR records for SIP exist: their SRV names are the only
            // ones to try (§4.1); the first that yields members wins.
            if !candidates.is_empty() {
                for (srv, t) in &candidates {
                    let srv_name = parse_name(srv).map_err(|message| DnsError::Lookup {
                        name: display(name),
                        record: "NAPTR",
                        message: format!("replacement {srv:?}: {message}"),
                    })?;
                    if let Some((members, ttl_s)) = self.srv_members(&srv_name, *t).await? {
                        return Ok((members, ttl_s.min(naptr.ttl_s)));
                    }
                }
                let tried: Vec<&str> = candidates.iter().map(|(s, _)| s.as_str()).collect();
                return Err(DnsError::NoRecords {
                    name: format!(
                        "{} (its NAPTR records name {})",
                        display(name),
                        tried.join(", ")
                    ),
                    tried: "SRV or A/AAAA".into(),
                });
            }
        }
        // No NAPTR: SRV for each transport, UDP first (§4.1).
        let transports: &[MemberTransport] = match transport {
            Some(MemberTransport::Udp) => &[MemberTransport::Udp],
            Some(MemberTransport::Tcp) => &[MemberTransport::Tcp],
            // Refused by the configuration check (DNS members: UDP, TCP).
            Some(MemberTransport::Tls) => &[],
            None => &[MemberTransport::Udp, MemberTransport::Tcp],
        };
        for &t in transports {
            let label = match t {
                MemberTransport::Udp => "_sip._udp",
                MemberTransport::Tcp => "_sip._tcp",
                MemberTransport::Tls => "_sips._tcp",
            };
            let srv_name = Name::from_ascii(label)
                .and_then(|prefix| prefix.append_domain(name))
                .map_err(|e| DnsError::Lookup {
                    name: display(name),
                    record: "SRV",
                    message: format!("{label}: {e}"),
                })?;
            if let Some(found) = self.srv_members(&srv_name, t).await? {
                return Ok(found);
            }
        }
        // No SRV either: the domain's own addresses, port 5060 (§4.2).
        let t = transport.unwrap_or(MemberTransport::Udp);
        match self.addresses(name).await? {
            Some(found) => Ok((
                members_of(name, SIP_PORT, &found.records, t, 0, 1),
                found.ttl_s,
            )),
            None => Err(no_records(name, "NAPTR, SRV or A/AAAA")),
        }
    }

    /// The members an SRV name leads to; `None` when it has no records
    /// or none of its targets has an address.
    async fn srv_members(
        &self,
        name: &Name,
        transport: MemberTransport,
    ) -> Result<Option<(Vec<ResolvedMember>, u32)>, DnsError> {
        let Some(srv) = self.srv(name).await? else {
            return Ok(None);
        };
        let mut members = Vec::new();
        let mut ttl_s = srv.ttl_s;
        for record in &srv.records {
            // A target of "." says the service is not offered (RFC 2782).
            if record.target.is_root() {
                continue;
            }
            if let Some(found) = self.addresses(&record.target).await? {
                ttl_s = ttl_s.min(found.ttl_s);
                members.extend(members_of(
                    &record.target,
                    record.port,
                    &found.records,
                    transport,
                    record.priority,
                    record.weight,
                ));
            }
        }
        Ok((!members.is_empty()).then_some((members, ttl_s)))
    }

    async fn naptr(&self, name: &Name) -> Result<Option<Found<NaptrRecord>>, DnsError> {
        let records = self.lookup(name, RecordType::NAPTR, "NAPTR").await?;
        Ok(found(records, |data| match data {
            RData::NAPTR(n) => Some(NaptrRecord {
                order: n.order,
                preference: n.preference,
                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                services: String::from_utf8_lossy(&n.services).into_owned(),
                replacement: n.replacement.to_ascii(),
            }),
            _ => None,
        }))
    }

    async fn srv(&self, name: &Name) -> Result<Option<Found<SrvRecord>>, DnsError> {
        let records = self.lookup(name, RecordType::SRV, "SRV").await?;
        Ok(found(records, |data| match data {
            RData::SRV(s) => Some(SrvRecord {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: s.target.clone(),
            }),
            _ => None,
        }))
    }

    async fn addresses(&self, name: &Name) -> Result<Option<Found<IpAddr>>, DnsError> {
        let records = match self.dns.lookup_ip(name.clone()).await {
            Ok(lookup) => lookup
                .as_lookup()
                .answers()
                .iter()
                .map(|r| (r.ttl, r.data.clone()))
                .collect(),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(lookup_failed(name, "A/AAAA", &e)),
        };
        Ok(found(records, |data| data.ip_addr()))
    }

    /// The answers of one query with their TTLs; no records is no error.
    async fn lookup(
        &self,
        name: &Name,
        record_type: RecordType,
        what: &'static str,
    ) -> Result<Vec<(u32, RData)>, DnsError> {
        match self.dns.lookup(name.clone(), record_type).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .map(|r| (r.ttl, r.data.clone()))
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(lookup_failed(name, what, &e)),
        }
    }
}

/// The records of the wanted type (answers may hold CNAMEs too) and the
/// smallest TTL among them; `None` when there are none.
fn found<T>(answers: Vec<(u32, RData)>, pick: impl Fn(&RData) -> Option<T>) -> Option<Found<T>> {
    let mut ttl_s = u32::MAX;
    let mut records = Vec::new();
    for (ttl, data) in &answers {
        if let Some(record) = pick(data) {
            ttl_s = ttl_s.min(*ttl);
            records.push(record);
        }
    }
    (!records.is_empty()).then_some(Found { records, ttl_s })
}

fn lookup_failed(name: &Name, record: &'static str, e: &NetError) -> DnsError {
    DnsError::Lookup {
        name: display(name),
        record,
        message: e.to_string(),
    }
}

fn no_records(name: &Name, tried: &str) -> DnsError {
    DnsError::NoRecords {
        name: display(name),
        tried: tried.into(),
    }
}

/// The members of a group's `[[group.dns]]` tables (its `[[group.member]]`
/// are not repeated here), valid as long as the shortest of them. Any
/// table failing fails the whole: the caller keeps what it had, rather
/// than losing a table's members to one bad refresh.
pub async fn resolve_group(resolver: &Resolver, group: &GroupConfig) -> Result<Resolved, DnsError> {
    let mut parts = Vec::with_capacity(group.dns_members.len());
    for m in &group.dns_members {
        let target = DnsTarget::from_config(m).map_err(|(key, message)| {
            DnsError::Setup(format!("group {:?}: dns.{key}: {message}", group.name))
        })?;
        parts.push(resolver.resolve(&target).await?);
    }
    Ok(Resolved::merge(parts, resolver.ttl))
}

#[cfg(test)]
mod tests;
