//! `tandem route`: what the engine would do with one request, as text for
//! an operator. Pure like the rest of routing: the time of day is passed
//! in, and the member is chosen from a fresh pool with every member up.

use std::fmt::Write as _;
use std::net::IpAddr;

use sipcore::message::Uri;

use super::{redirect_contacts, Action, RequestView, Router, NO_ROUTE};
use crate::config::{Config, MemberTransport};
use crate::pool::Pool;

/// The request of a dry run, as given on the command line.
#[derive(Debug, Clone)]
pub struct DryRun<'a> {
    /// The source address (finds the trunk).
    pub from: IpAddr,
    /// The Request-URI.
    pub to: &'a str,
    pub from_user: &'a str,
    /// `Name: value` lines.
    pub headers: &'a [String],
    pub call_id: &'a str,
    /// UTC, minutes since midnight.
    pub minute_of_day: u16,
    /// The WANs taken as down (`tandem route --wan-down NAME`).
    pub wans_down: Vec<String>,
}

/// The report of a dry run; an error names what is wrong with the
/// request given (not with the config, which was checked on loading).
pub fn dry_run(config: &Config, router: &Router, request: &DryRun) -> Result<String, String> {
    let uri =
        Uri::parse_request_uri(request.to).map_err(|e| format!("--to {:?}: {e}", request.to))?;
    if !uri.is_sip() {
        return Err(format!("--to {:?}: only sip: and sips: URIs", request.to));
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for line in request.headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("--header {line:?}: not `Name: value`"))?;
        headers.push((name.trim(), value.trim()));
    }
    let mut out = String::new();
    let Some(trunk) = config.trunk_for(request.from) else {
        let _ = writeln!(
            out,
            "source:      {} is no [[trunk]]: the call would be refused with 403 Forbidden",
            request.from
        );
        return Ok(out);
    };
    let _ = writeln!(
        out,
        "source:      {} (trunk {:?})",
        request.from, trunk.name
    );
    let view = RequestView {
        source: &trunk.name,
        ruri_user: uri.user.unwrap_or(""),
        ruri_host: uri.host,
        from_user: request.from_user,
        headers: &headers,
        minute_of_day: request.minute_of_day,
        wans_down: &request.wans_down,
    };
    let Some(decision) = router.route(&view) else {
        let _ = writeln!(
            out,
            "no rule matches: the call would be refused with {} {}",
            NO_ROUTE.0, NO_ROUTE.1
        );
        return Ok(out);
    };
    let implicit = if config.rules.is_empty() {
        " (implicit: no [[rule]] tables, every call to [pool])"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "rule:        rule[{}] {:?}{implicit}",
        decision.rule, decision.rule_name
    );
    let pool_of = |name: &str| {
        config
            .destination_groups()
            .iter()
            .find(|g| g.name == name)
            .map(Pool::from_group)
            .ok_or_else(|| format!("group {name:?} is not in the config"))
    };
    match &decision.action {
        Action::Reject { code, reason } => {
            let _ = writeln!(out, "action:      reject {code} {reason}");
        }
        Action::Location {
            user,
            fork,
            fallback,
            ..
        } => {
            let mode = match fork {
                crate::config::ForkMode::Parallel => "parallel",
                crate::config::ForkMode::Sequential => "sequential",
            };
            let _ = writeln!(
                out,
                "action:      location of user {user:?} (registered contacts, {mode} forking)"
            );
            match fallback {
                Some(g) => {
                    let _ = writeln!(out, "unregistered: group {g:?}");
                }
                None => {
                    let _ = writeln!(out, "unregistered: 404");
                }
            }
        }
        Action::Route {
            group,
            ruri_user,
            fallback,
        } => {
            let mut pool = pool_of(group)?;
            let _ = writeln!(
                out,
                "action:      route to group {group:?} ({})",
                pool.strategy().as_str()
            );
            if let Some(f) = fallback {
                let _ = writeln!(
                    out,
                    "fallback:    group {f:?} when none of {group:?} answers"
                );
            }
            let _ = writeln!(out, "request-uri: {}", with_user(&uri, ruri_user));
            let key = pool.hash_key(request.call_id, request.from_user);
            match pool.select_for(&[], key).and_then(|i| pool.members.get(i)) {
                Some(m) => {
                    let transport = match m.transport {
                        MemberTransport::Udp => "udp",
                        MemberTransport::Tcp => "tcp",
                        MemberTransport::Tls => "tls",
                    };
                    let _ = writeln!(
                        out,
                        "member:      {} ({}, {transport}; all members up)",
                        m.name, m.address
                    );
                    // What leg B's INVITE carries: the rule's user at the
                    // member's address.
                    let user = if ruri_user.is_empty() {
                        String::new()
                    } else {
                        format!("{ruri_user}@")
                    };
                    let _ = writeln!(out, "leg B:       INVITE sip:{user}{}", m.address);
                }
                None => {
                    let _ = writeln!(out, "member:      none");
                }
            }
            dns_note(config, group, &mut out);
        }
        Action::Redirect { group, ruri_user } => {
            let pool = pool_of(group)?;
            let _ = writeln!(out, "action:      redirect (302) to group {group:?}");
            for contact in redirect_contacts(&pool, ruri_user) {
                let _ = writeln!(out, "contact:     {}", contact.header_value());
            }
            dns_note(config, group, &mut out);
        }
    }
    Ok(out)
}

/// The member or contacts shown come from `[[group.member]]` only: say
/// so when the group also has members named by DNS, which a dry run does
/// not resolve.
fn dns_note(config: &Config, group: &str, out: &mut String) {
    let entries = config
        .groups
        .iter()
        .find(|g| g.name == group)
        .map_or(0, |g| g.dns_members.len());
    if entries > 0 {
        let _ = writeln!(
            out,
            "dns:         {entries} [[group.dns]] entries, not resolved here (only [[group.member]] above): \
             `tandem resolve --group {group}` shows their members"
        );
    }
}

/// `uri` with its user replaced by `user` (empty: no user part).
pub(super) fn with_user(uri: &Uri, user: &str) -> String {
    // The user part starts right after `scheme:` (sipcore splits it so).
    let after_scheme = uri.raw.get(uri.scheme.len() + 1..).unwrap_or("");
    let rest = match uri.user {
        Some(old) => {
            let skip = old.len() + uri.password.map_or(0, |p| p.len() + 1) + 1;
            after_scheme.get(skip..).unwrap_or("")
        }
        None => after_scheme,
    };
    let password = uri.password.map(|p| format!(":{p}")).unwrap_or_default();
    if user.is_empty() {
        format!("{}:{rest}", uri.scheme)
    } else {
        format!("{}:{user}{password}@{rest}", uri.scheme)
    }
}
