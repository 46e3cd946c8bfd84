//! Rules compiled for one cheap match pass, first match wins.

use regex::{Regex, RegexSet};

use crate::config::{Config, ConfigError, ForkMode, RuleConfig};

/// What a call gets when `[[rule]]` tables exist and none matches: 404
/// ("no route to this number"), as Kamailio and most SBCs answer, and
/// not a 5xx, which would make the caller's side try elsewhere for a
/// number that no server of ours serves.
pub const NO_ROUTE: (u16, &str) = (404, "Not Found");

/// What the router looks at in a request: plain strings, taken from the
/// message by the caller. Nothing here is read from a clock or a socket.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The source's name (the `[[trunk]]` the request came from).
    pub source: &'a str,
    /// The Request-URI user, as received (escapes not decoded); empty
    /// when there is none.
    pub ruri_user: &'a str,
    /// The Request-URI host, without port.
    pub ruri_host: &'a str,
    /// The From URI's user; empty when there is none.
    pub from_user: &'a str,
    /// Headers as `(name, value)`; names compare ASCII case-insensitively
    /// and compact forms (`f` for `From`) are understood. Only the headers
    /// named in [`Router::header_names`] are looked at.
    pub headers: &'a [(&'a str, &'a str)],
    /// The time of day in UTC, in minutes since midnight (0..1440).
    pub minute_of_day: u16,
    /// The `[[wan]]`s that are down now, by name.
    pub wans_down: &'a [String],
}

/// The rule that matched and what it says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule's index among the `[[rule]]` tables; 0 for the implicit
    /// default rule.
    pub rule: usize,
    /// The rule's name (`default` for the implicit rule).
    pub rule_name: String,
    pub action: Action,
}

/// What to do with the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it to a member of this group; the Request-URI user is
    /// `ruri_user` (the manipulations already applied).
    /// `fallback`: the group tried once when none of `group` is left.
    Route {
        group: String,
        ruri_user: String,
        fallback: Option<String>,
    },
    /// Answer 302 with this group's members as Contacts, `ruri_user` as
    /// their user.
    Redirect { group: String, ruri_user: String },
    /// Answer with this final status.
    Reject { code: u16, reason: String },
    /// Send it to the registered contacts of the AOR whose user is
    /// `user`; without any, to `fallback` (a group) or 404.
    Location {
        user: String,
        fork: ForkMode,
        fork_timeout_s: u32,
        fallback: Option<String>,
    },
}

/// A rule that can never match: an earlier rule matches every request it
/// would match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    pub rule: usize,
    pub rule_name: String,
    /// The earlier rule that takes its calls.
    pub by: usize,
    pub by_name: String,
}

/// The routing rules of one configuration, compiled.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Rule>,
    /// Rules with a `ruri_user_prefix`, by prefix.
    user_prefixes: PrefixTrie,
    /// Every `ruri_user_regex`; pattern `k` belongs to rule
    /// `user_regex_rules[k]`.
    user_regexes: RegexSet,
    user_regex_rules: Vec<usize>,
    /// Header regexes, one set per header name.
    header_sets: Vec<HeaderSet>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    source: Option<String>,
    ruri_user: Option<UserMatch>,
    /// Lower-cased.
    ruri_host: Option<String>,
    from_user: Option<String>,
    header: Option<HeaderMatch>,
    time: Option<TimeWindow>,
    /// `wan = "down"|"up"`: (the WAN's name, whether it must be down).
    wan: Option<(String, bool)>,
    action: RuleAction,
}

/// The forms of a Request-URI user match. Prefixes and regexes are
/// evaluated through the router's indexes; the strings are kept for
/// shadowing checks.
#[derive(Debug, Clone)]
enum UserMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct HeaderMatch {
    /// The long form, lower-cased.
    name: String,
    regex: String,
}

#[derive(Debug, Clone)]
struct HeaderSet {
    /// The long form, lower-cased.
    name: String,
    compact: Option<&'static str>,
    regexes: RegexSet,
    /// Pattern `k` belongs to rule `rules[k]`.
    rules: Vec<usize>,
}

#[derive(Debug, Clone)]
enum RuleAction {
    Route {
        group: String,
        rewrite: Rewrite,
        fallback: Option<String>,
    },
    Redirect {
        group: String,
        rewrite: Rewrite,
    },
    Reject {
        code: u16,
        reason: String,
    },
    Location {
        rewrite: Rewrite,
        fork: ForkMode,
        fork_timeout_s: u32,
        fallback: Option<String>,
    },
}

/// Number manipulation, applied in this order: strip, prefix, replace.
#[derive(Debug, Clone, Default)]
struct Rewrite {
    strip: usize,
    prefix: String,
    replace: Option<(Regex, String)>,
}

impl Rewrite {
    fn apply(&self, user: &str) -> String {
        let stripped = user
            .char_indices()
            .nth(self.strip)
            .map_or("", |(at, _)| user.get(at..).unwrap_or(""));
        let prefixed = format!("{}{stripped}", self.prefix);
        match &self.replace {
            Some((regex, with)) => regex.replace(&prefixed, with.as_str()).into_owned(),
            None => prefixed,
        }
    }
}

/// `HH:MM-HH:MM` in minutes since midnight; start inclusive, end
/// exclusive, wrapping midnight when start > end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeWindow {
    start: u16,
    end: u16,
}

impl TimeWindow {
    fn parse(text: &str) -> Option<TimeWindow> {
        let minutes = |hm: &str| -> Option<u16> {
            let (h, m) = hm.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (start, end) = text.split_once('-')?;
        let (start, end) = (minutes(start)?, minutes(end)?);
        (start < 24 * 60 && start != end).then_some(TimeWindow {
            start,
            end: end % (24 * 60),
        })
    }

    fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// A byte trie of prefixes: walking a user through it visits exactly the
/// prefixes the user starts with.
#[derive(Debug, Clone)]
struct PrefixTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// Sorted by byte.
    children: Vec<(u8, usize)>,
    /// Rules whose prefix ends here.
    rules: Vec<usize>,
}

impl PrefixTrie {
    fn new() -> PrefixTrie {
        PrefixTrie {
            nodes: vec![TrieNode::default()],
        }
    }

    fn insert(&mut self, prefix: &str, rule: usize) {
        let mut node = 0;
        for &b in prefix.as_bytes() {
            let next = self.nodes.len();
            let Some(n) = self.nodes.get_mut(node) else {
                return;
            };
            node = match n.children.binary_search_by_key(&b, |&(c, _)| c) {
                Ok(k) => n.children.get(k).map_or(next, |&(_, child)| child),
                Err(k) => {
                    n.children.insert(k, (b, next));
                    self.nodes.push(TrieNode::default());
                    next
                }
            };
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.rules.push(rule);
        }
    }

    /// Marks every rule whose prefix `user` starts with.
    fn mark(&self, user: &str, hits: &mut Hits) {
        let mut node = self.nodes.first();
        let mut bytes = user.as_bytes().iter();
        while let Some(n) = node {
            for &r in &n.rules {
                hits.set(r);
            }
            node = bytes.next().and_then(|b| {
                let k = n.children.binary_search_by_key(b, |&(c, _)| c).ok()?;
                let &(_, child) = n.children.get(k)?;
                self.nodes.get(child)
            });
        }
    }
}

/// A set of rule indexes, one bit each.
struct Hits(Vec<u64>);

impl Hits {
    fn new(rules: usize) -> Hits {
        Hits(vec![0; rules.div_ceil(64)])
    }

    fn set(&mut self, rule: usize) {
        if let Some(w) = self.0.get_mut(rule / 64) {
            *w |= 1 << (rule % 64);
        }
    }

    fn get(&self, rule: usize) -> bool {
        self.0
            .get(rule / 64)
            .is_some_and(|w| w & (1 << (rule % 64)) != 0)
    }
}

/// Compact header forms (RFC 3261 §7.3.3 and later RFCs), long form first.
const COMPACT_FORMS: &[(&str, &str)] = &[
    ("accept-contact", "a"),
    ("allow-events", "u"),
    ("call-id", "i"),
    ("contact", "m"),
    ("content-encoding", "e"),
    ("content-length", "l"),
    ("content-type", "c"),
    ("event", "o"),
    ("from", "f"),
    ("refer-to", "r"),
    ("referred-by", "b"),
    ("reject-contact", "j"),
    ("request-disposition", "d"),
    ("session-expires", "x"),
    ("subject", "s"),
    ("supported", "k"),
    ("to", "t"),
    ("via", "v"),
];

/// The long form of a header name, lower-cased.
fn long_header_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    COMPACT_FORMS
        .iter()
        .find(|(_, compact)| *compact == lower)
        .map_or(lower, |(long, _)| (*long).to_owned())
}

impl Router {
    /// Compiles the rules of a configuration; without `[[rule]]` tables,
    /// the implicit default rule sends every call to `[pool]`. The errors
    /// name the rule's key, like the config's own checks.
    pub fn compile(config: &Config) -> Result<Router, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: config.file.clone(),
            key,
            message,
        };
        let default_rule;
        let rules: &[RuleConfig] = if config.rules.is_empty() {
            default_rule = [RuleConfig {
                name: "default".into(),
                group: Some(config.pool.name.clone()),
                ..RuleConfig::default()
            }];
            &default_rule
        } else {
            &config.rules
        };
        let groups = config.destination_groups();
        let regex = |key: String, pattern: &str| {
            Regex::new(pattern).map_err(|e| invalid(key, format!("bad regex: {e}")))
        };

        let mut compiled = Vec::with_capacity(rules.len());
        let mut user_prefixes = PrefixTrie::new();
        let mut user_regexes = Vec::new();
        let mut user_regex_rules = Vec::new();
        let mut headers: Vec<(String, Vec<String>, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            let ruri_user = if let Some(exact) = &r.ruri_user {
                Some(UserMatch::Exact(exact.clone()))
            } else if let Some(prefix) = &r.ruri_user_prefix {
                user_prefixes.insert(prefix, i);
                Some(UserMatch::Prefix(prefix.clone()))
            } else if let Some(pattern) = &r.ruri_user_regex {
                let compiled = regex(key("ruri_user_regex"), pattern)?;
                user_regexes.push(pattern.clone());
                user_regex_rules.push(i);
                Some(UserMatch::Regex(compiled))
            } else {
                None
            };
            let header = match &r.header {
                Some(h) => {
                    regex(key("header.regex"), &h.regex)?;
                    let name = long_header_name(&h.name);
                    match headers.iter_mut().find(|(n, _, _)| *n == name) {
                        Some((_, patterns, owners)) => {
                            patterns.push(h.regex.clone());
                            owners.push(i);
                        }
                        None => headers.push((name.clone(), vec![h.regex.clone()], vec![i])),
                    }
                    Some(HeaderMatch {
                        name,
                        regex: h.regex.clone(),
                    })
                }
                None => None,
            };
            let time = match &r.time {
                Some(text) => Some(TimeWindow::parse(text).ok_or_else(|| {
                    invalid(
                        key("time"),
                        format!("{text:?} is not \"HH:MM-HH:MM\" (UTC) with start != end"),
                    )
                })?),
                None => None,
            };
            let rewrite = || -> Result<Rewrite, ConfigError> {
                Ok(Rewrite {
                    strip: r.strip.unwrap_or(0),
                    prefix: r.prefix.clone().unwrap_or_default(),
                    replace: match &r.replace {
                        Some(rep) => {
                            Some((regex(key("replace.regex"), &rep.regex)?, rep.with.clone()))
                        }
                        None => None,
                    },
                })
            };
            let known = |k: &str, group: &String| {
                if groups.iter().any(|g| &g.name == group) {
                    Ok(group.clone())
                } else {
                    Err(invalid(key(k), format!("unknown group {group:?}")))
                }
            };
            let action = match (&r.group, &r.redirect, &r.reject, r.location) {
                (Some(group), None, None, None) => RuleAction::Route {
                    group: known("group", group)?,
                    rewrite: rewrite()?,
                    fallback: match &r.fallback {
                        Some(g) => Some(known("fallback", g)?),
                        None => None,
                    },
                },
                (None, Some(group), None, None) => RuleAction::Redirect {
                    group: known("redirect", group)?,
                    rewrite: rewrite()?,
                },
                (None, None, Some(reject), None) => RuleAction::Reject {
                    code: reject.code,
                    reason: reject.reason.clone(),
                },
                (None, None, None, Some(true)) => {
                    if !config.registrar_enabled() {
                        return Err(invalid(
                            key("location"),
                            "needs the registrar: a [registrar] table with domains".into(),
                        ));
                    }
                    RuleAction::Location {
                        rewrite: rewrite()?,
                        fork: r.fork.unwrap_or(ForkMode::Parallel),
                        fork_timeout_s: match r.fork_timeout_s {
                            Some(0) => {
                                return Err(invalid(
                                    key("fork_timeout_s"),
                                    "must be at least 1".into(),
                                ))
                            }
                            Some(s) => s,
                            None => 20,
                        },
                        fallback: match &r.fallback {
                            Some(g) => Some(known("fallback", g)?),
                            None => None,
                        },
                    }
                }
                _ => {
                    return Err(invalid(
                        key("group"),
                        "exactly one action is needed: group, redirect, reject or location".into(),
                    ))
                }
            };
            compiled.push(Rule {
                name: r.name.clone(),
                source: r.source.clone(),
                ruri_user,
                ruri_host: r.ruri_host.as_ref().map(|h| h.to_ascii_lowercase()),
                from_user: r.from_user.clone(),
                header,
                time,
                wan: config
                    .wan_of_rule(r)
                    .map(|n| (n, r.wan == Some(crate::config::WanCondition::Down))),
                action,
            });
        }

        let set = |key: &str, patterns: &[String]| {
            RegexSet::new(patterns).map_err(|e| invalid(key.to_owned(), format!("{e}")))
        };
        let header_sets = headers
            .into_iter()
            .map(|(name, patterns, rules)| {
                Ok(HeaderSet {
                    compact: COMPACT_FORMS
                        .iter()
                        .find(|(long, _)| *long == name)
                        .map(|(_, c)| *c),
                    regexes: set("rule.header.regex", &patterns)?,
                    name,
                    rules,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Router {
            rules: compiled,
            user_prefixes,
            user_regexes: set("rule.ruri_user_regex", &user_regexes)?,
            user_regex_rules,
            header_sets,
        })
    }

    /// The first rule that matches `request`, with its action; none: no
    /// rule matches (answer [`NO_ROUTE`]).
    pub fn route(&self, request: &RequestView) -> Option<Decision> {
        let n = self.rules.len();
        let mut user_hits = Hits::new(n);
        self.user_prefixes.mark(request.ruri_user, &mut user_hits);
        if !self.user_regex_rules.is_empty() {
            for k in self.user_regexes.matches(request.ruri_user).iter() {
                if let Some(&rule) = self.user_regex_rules.get(k) {
                    user_hits.set(rule);
                }
            }
        }
        let mut header_hits = Hits::new(n);
        for set in &self.header_sets {
            let values = request.headers.iter().filter(|(name, _)| {
                name.eq_ignore_ascii_case(&set.name)
                    || set.compact.is_some_and(|c| name.eq_ignore_ascii_case(c))
            });
            for (_, value) in values {
                for k in set.regexes.matches(value).iter() {
                    if let Some(&rule) = set.rules.get(k) {
                        header_hits.set(rule);
                    }
                }
            }
        }

        let (index, rule) = self.rules.iter().enumerate().find(|(i, rule)| {
            rule.source.as_ref().is_none_or(|s| s == request.source)
                && match &rule.ruri_user {
                    None => true,
                    Some(UserMatch::Exact(user)) => user == request.ruri_user,
                    Some(UserMatch::Prefix(_) | UserMatch::Regex(_)) => user_hits.get(*i),
                }
                && rule
                    .ruri_host
                    .as_ref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(request.ruri_host))
                && rule
                    .from_user
                    .as_ref()
                    .is_none_or(|u| u == request.from_user)
                && (rule.header.is_none() || header_hits.get(*i))
                && rule.time.is_none_or(|t| t.contains(request.minute_of_day))
                && rule
                    .wan
                    .as_ref()
                    .is_none_or(|(name, down)| request.wans_down.iter().any(|w| w == name) == *down)
        })?;
        let action = match &rule.action {
            RuleAction::Route {
                group,
                rewrite,
                fallback,
            } => Action::Route {
                group: group.clone(),
                ruri_user: rewrite.apply(request.ruri_user),
                fallback: fallback.clone(),
            },
            RuleAction::Redirect { group, rewrite } => Action::Redirect {
                group: group.clone(),
                ruri_user: rewrite.apply(request.ruri_user),
            },
            RuleAction::Reject { code, reason } => Action::Reject {
                code: *code,
                reason: reason.clone(),
            },
            RuleAction::Location {
                rewrite,
                fork,
                fork_timeout_s,
                fallback,
            } => Action::Location {
                user: rewrite.apply(request.ruri_user),
                fork: *fork,
                fork_timeout_s: *fork_timeout_s,
                fallback: fallback.clone(),
            },
        };
        Some(Decision {
            rule: index,
            rule_name: rule.name.clone(),
            action,
        })
    }

    /// Rules that can never match because an earlier rule matches every
    /// request they match (a match-all rule, or one whose conditions are
    /// a subset of theirs, such as the same source alone). Conservative:
    /// a rule listed is certainly unreachable; regex overlaps are only
    /// seen when the patterns are the same text.
    pub fn shadowed(&self) -> Vec<Shadowed> {
        let mut found = Vec::new();
        for (j, later) in self.rules.iter().enumerate() {
            let mut earlier = self.rules.iter().take(j).enumerate();
            if let Some((i, by)) = earlier.find(|(_, e)| e.covers(later)) {
                found.push(Shadowed {
                    rule: j,
                    rule_name: later.name.clone(),
                    by: i,
                    by_name: by.name.clone(),
                });
            }
        }
        found
    }

    /// The headers some rule looks at (long forms, lower-cased): the
    /// caller needs to put only these into [`RequestView::headers`].
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.header_sets.iter().map(|s| s.name.as_str())
    }
}

impl Rule {
    /// Whether this rule matches every request `other` matches.
    fn covers(&self, other: &Rule) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| a.is_none() || a == b;
        let user = match (&self.ruri_user, &other.ruri_user) {
            (None, _) => true,
            (Some(UserMatch::Exact(a)), Some(UserMatch::Exact(b))) => a == b,
            (Some(UserMatch::Prefix(p)), Some(UserMatch::Exact(u) | UserMatch::Prefix(u))) => {
                u.starts_with(p.as_str())
            }
            (Some(UserMatch::Regex(r)), Some(UserMatch::Exact(u))) => r.is_match(u),
            (Some(UserMatch::Regex(a)), Some(UserMatch::Regex(b))) => a.as_str() == b.as_str(),
            _ => false,
        };
        let header = match (&self.header, &other.header) {
            (None, _) => true,
            (Some(a), Some(b)) => a.name == b.name && a.regex == b.regex,
            (Some(_), None) => false,
        };
        same(&self.source, &other.source)
            && user
            && same(&self.ruri_host, &other.ruri_host)
            && same(&self.from_user, &other.from_user)
            && header
            && (self.time.is_none() || self.time == other.time)
            && (self.wan.is_none() || self.wan == other.wan)
    }
}

#[cfg(test)]
mod tests;
