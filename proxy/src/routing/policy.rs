//! The routing rules as the call machine's [`Policy`]: trunks by network
//! name the source, the compiled [`Router`] chooses the destination, the
//! configured header list says what travels on.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use sipcore::message::Message;

use super::{Action, RequestView, Router};
use crate::b2bua::{Policy, Route};
use crate::config::Config;

pub struct RulesPolicy {
    router: Router,
    trunks: Vec<(String, Vec<IpNet>)>,
    /// `[[trunk]] max_calls`, by trunk name.
    max_calls: HashMap<String, usize>,
    carry_headers: Vec<String>,
    /// The `[[wan]]`s down now (rules with `wan = "down"` match).
    wans_down: Vec<String>,
}

impl RulesPolicy {
    pub fn new(config: &Config, router: Router) -> RulesPolicy {
        RulesPolicy {
            router,
            trunks: config
                .trunks
                .iter()
                .map(|t| (t.name.clone(), t.networks.clone()))
                .collect(),
            max_calls: config
                .trunks
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.max_calls?)))
                .collect(),
            carry_headers: config.calls.carry_headers.clone(),
            wans_down: Vec::new(),
        }
    }
}

impl Policy for RulesPolicy {
    fn source(&self, ip: IpAddr) -> Option<&str> {
        self.trunks
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
            .map(|(name, _)| name.as_str())
    }

    fn max_calls(&self, source: &str) -> Option<usize> {
        self.max_calls.get(source).copied()
    }

    fn route(&self, invite: &Message, source: &str, minute_of_day: u16) -> Route {
        let ruri = invite.request_uri();
        let from = invite.from_header();
        let from_uri = from.uri();
        let headers: Vec<(&str, &str)> = self
            .router
            .header_names()
            .flat_map(|name| invite.headers(name).map(move |v| (name, v)))
            .collect();
        let view = RequestView {
            source,
            ruri_user: ruri.as_ref().and_then(|u| u.user).unwrap_or(""),
            ruri_host: ruri.as_ref().map_or("", |u| u.host),
            from_user: from_uri.user.unwrap_or(""),
            headers: &headers,
            minute_of_day,
            wans_down: &self.wans_down,
        };
        let Some(decision) = self.router.route(&view) else {
            return Route::Unmatched;
        };
        let rule = decision.rule_name;
        match decision.action {
            Action::Route {
                group,
                ruri_user,
                fallback,
            } => Route::Group {
                rule,
                group,
                ruri_user,
                fallback,
            },
            Action::Redirect { group, ruri_user } => Route::Redirect {
                rule,
                group,
                ruri_user,
            },
            Action::Reject { code, reason } => Route::Reject { rule, code, reason },
            Action::Location {
                user,
                fork,
                fork_timeout_s,
                fallback,
            } => Route::Location {
                rule,
                user,
                host: view.ruri_host.to_ascii_lowercase(),
                fork,
                fork_timeout_s,
                fallback,
            },
        }
    }

    fn wan_changed(&mut self, wan: &str, down: bool) {
        self.wans_down.retain(|w| w != wan);
        if down {
            self.wans_down.push(wan.to_owned());
        }
    }

    fn carried(&self, name: &str) -> bool {
        self.carry_headers
            .iter()
            .any(|pat| match pat.strip_suffix('*') {
                Some(prefix) => name
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
                None => name.eq_ignore_ascii_case(pat),
            })
    }
}
