// Tests may panic: a failed unwrap or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use super::*;

/// A valid config without rules; tests append `[[group]]` and `[[rule]]`
/// tables.
const BASE: &str = r#"
[sip]
listen = ["127.0.0.1:5060"]
[media]
ip = "127.0.0.1"
port_min = 20000
port_max = 29999
[[trunk]]
name = "carrier"
networks = ["10.0.0.0/8"]
[[trunk]]
name = "gateway"
networks = ["192.168.0.0/16"]
[pool]
name = "media"
[[pool.member]]
name = "ms1"
address = "127.0.0.1:5070"
[[group]]
name = "pbx"
[[group.member]]
name = "pbx1"
address = "10.1.0.1:5060"
"#;

fn router(rules: &str) -> Router {
    let config = Config::parse(&format!("{BASE}{rules}"), Path::new("t.toml")).unwrap();
    Router::compile(&config).unwrap()
}

/// A request from `carrier` to `user@example.com` at noon.
fn to(user: &str) -> RequestView<'_> {
    RequestView {
        source: "carrier",
        ruri_user: user,
        ruri_host: "example.com",
        from_user: "alice",
        headers: &[],
        minute_of_day: 12 * 60,
        wans_down: &[],
    }
}

/// The name of the matching rule.
fn rule(router: &Router, request: &RequestView) -> Option<String> {
    router.route(request).map(|d| d.rule_name)
}

#[test]
fn without_rules_the_default_rule_sends_everything_to_the_pool() {
    let r = router("");
    assert_eq!(
        r.route(&to("+4930123")),
        Some(Decision {
            rule: 0,
            rule_name: "default".into(),
            action: Action::Route {
                group: "media".into(),
                ruri_user: "+4930123".into(),
                fallback: None,
            }
        })
    );
    let anything = RequestView {
        source: "gateway",
        ruri_user: "",
        ruri_host: "",
        from_user: "",
        headers: &[],
        minute_of_day: 0,
        wans_down: &[],
    };
    assert_eq!(rule(&r, &anything).as_deref(), Some("default"));
    assert!(r.shadowed().is_empty());
}

#[test]
fn with_rules_an_unmatched_call_gets_no_decision() {
    let r = router(
        r#"
[[rule]]
name = "only-49"
ruri_user_prefix = "49"
group = "media"
"#,
    );
    assert_eq!(rule(&r, &to("4930")).as_deref(), Some("only-49"));
    assert_eq!(r.route(&to("3312")), None);
    assert_eq!(NO_ROUTE.0, 404);
}

#[test]
fn source_matches_the_trunk_name() {
    let r = router(
        r#"
[[rule]]
name = "from-gateway"
source = "gateway"
group = "pbx"
"#,
    );
    assert_eq!(r.route(&to("1")), None);
    let req = RequestView {
        source: "gateway",
        ..to("1")
    };
    assert_eq!(rule(&r, &req).as_deref(), Some("from-gateway"));
}

#[test]
fn ruri_user_exact_prefix_and_regex() {
    let r = router(
        r#"
[[rule]]
name = "exact"
ruri_user = "100"
group = "pbx"
[[rule]]
name = "prefix"
ruri_user_prefix = "+49"
group = "pbx"
[[rule]]
name = "regex"
ruri_user_regex = "^[0-9]{3}$"
group = "pbx"
"#,
    );
    assert_eq!(rule(&r, &to("100")).as_deref(), Some("exact"));
    assert_eq!(rule(&r, &to("1000")), None, "exact is whole-user");
    assert_eq!(rule(&r, &to("+49")).as_deref(), Some("prefix"));
    assert_eq!(rule(&r, &to("+4930123")).as_deref(), Some("prefix"));
    assert_eq!(rule(&r, &to("+4")), None, "shorter than the prefix");
    assert_eq!(rule(&r, &to("0+49")), None, "prefix is at the start");
    assert_eq!(rule(&r, &to("101")).as_deref(), Some("regex"));
    assert_eq!(rule(&r, &to("10a")), None);
    assert_eq!(rule(&r, &to("")), None);
}

#[test]
fn an_unanchored_regex_is_found_anywhere_in_the_user() {
    let r = router(
        r#"
[[rule]]
name = "has-99"
ruri_user_regex = "99"
group = "pbx"
"#,
    );
    assert_eq!(rule(&r, &to("1995")).as_deref(), Some("has-99"));
    assert_eq!(rule(&r, &to("1905")), None);
}

#[test]
fn ruri_host_ignores_case_and_from_user_is_exact() {
    let r = router(
        r#"
[[rule]]
name = "host"
ruri_host = "PBX.example.com"
group = "pbx"
[[rule]]
name = "anonymous"
from_user = "anonymous"
reject = { code = 403, reason = "Anonymous calls refused" }
"#,
    );
    let req = RequestView {
        ruri_host: "pbx.EXAMPLE.com",
        ..to("1")
    };
    assert_eq!(rule(&r, &req).as_deref(), Some("host"));
    assert_eq!(rule(&r, &to("1")), None);
    let anon = RequestView {
        from_user: "anonymous",
        ..to("1")
    };
    assert_eq!(
        r.route(&anon).map(|d| d.action),
        Some(Action::Reject {
            code: 403,
            reason: "Anonymous calls refused".into()
        })
    );
    let almost = RequestView {
        from_user: "anonymous2",
        ..to("1")
    };
    assert_eq!(rule(&r, &almost), None);
}

#[test]
fn header_regex_with_any_case_compact_forms_and_repeated_headers() {
    let r = router(
        r#"
[[rule]]
name = "diverted"
header = { name = "diversion", regex = "<sip:\\+4930" }
group = "pbx"
[[rule]]
name = "from-example"
header = { name = "From", regex = "@example\\.org>" }
group = "pbx"
"#,
    );
    let diverted = [
        ("Diversion", "<sip:+4989111@x>;reason=busy"),
        ("DIVERSION", "<sip:+4930222@x>;reason=no-answer"),
    ];
    let req = RequestView {
        headers: &diverted,
        ..to("1")
    };
    assert_eq!(
        rule(&r, &req).as_deref(),
        Some("diverted"),
        "the second Diversion matches"
    );
    let compact = [("f", "<sip:bob@example.org>;tag=1")];
    let req = RequestView {
        headers: &compact,
        ..to("1")
    };
    assert_eq!(rule(&r, &req).as_deref(), Some("from-example"));
    let other = [("To", "<sip:bob@example.org>")];
    let req = RequestView {
        headers: &other,
        ..to("1")
    };
    assert_eq!(rule(&r, &req), None, "another header's value");
    assert_eq!(r.header_names().collect::<Vec<_>>(), ["diversion", "from"]);
}

#[test]
fn time_windows_include_start_exclude_end_and_may_wrap_midnight() {
    let r = router(
        r#"
[[rule]]
name = "office"
time = "08:00-18:00"
group = "pbx"
[[rule]]
name = "night"
time = "22:00-06:00"
group = "media"
"#,
    );
    let at = |h: u16, m: u16| {
        rule(
            &r,
            &RequestView {
                minute_of_day: h * 60 + m,
                wans_down: &[],
                ..to("1")
            },
        )
    };
    assert_eq!(at(8, 0).as_deref(), Some("office"));
    assert_eq!(at(17, 59).as_deref(), Some("office"));
    assert_eq!(at(18, 0), None);
    assert_eq!(at(7, 59), None);
    assert_eq!(at(22, 0).as_deref(), Some("night"));
    assert_eq!(at(0, 0).as_deref(), Some("night"));
    assert_eq!(at(5, 59).as_deref(), Some("night"));
    assert_eq!(at(6, 0), None);
}

#[test]
fn all_conditions_of_a_rule_must_match() {
    let r = router(
        r#"
[[rule]]
name = "both"
source = "carrier"
ruri_user_prefix = "49"
group = "pbx"
"#,
    );
    assert_eq!(rule(&r, &to("4930")).as_deref(), Some("both"));
    let wrong_source = RequestView {
        source: "gateway",
        ..to("4930")
    };
    assert_eq!(rule(&r, &wrong_source), None);
    assert_eq!(rule(&r, &to("3349")), None);
}

/// `n` rules alternating prefix and regex matches that the request does
/// not meet, then the one it meets.
fn many_rules(n: usize, last: &str) -> String {
    let mut text = String::new();
    for i in 0..n - 1 {
        let condition = if i % 2 == 0 {
            format!("ruri_user_prefix = \"{}\"", 1000 + i)
        } else {
            format!("ruri_user_regex = \"^{}[0-9]*$\"", 2000 + i)
        };
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\n{condition}\ngroup = \"pbx\"\n"
        ));
    }
    text.push_str(&format!(
        "[[rule]]\nname = \"last\"\n{last}\ngroup = \"media\"\n"
    ));
    text
}

#[test]
fn fifty_rules_the_match_at_the_fiftieth() {
    for last in [
        "ruri_user_prefix = \"+49\"",
        "ruri_user_regex = \"^\\\\+49\"",
    ] {
        let r = router(&many_rules(50, last));
        let d = r.route(&to("+4930123")).unwrap();
        assert_eq!((d.rule, d.rule_name.as_str()), (49, "last"), "{last}");
        // Each earlier rule still matches its own numbers.
        assert_eq!(rule(&r, &to("1000555")).as_deref(), Some("r0"));
        assert_eq!(rule(&r, &to("2001")).as_deref(), Some("r1"));
        assert_eq!(rule(&r, &to("1048")).as_deref(), Some("r48"));
    }
}

#[test]
fn first_match_wins_whatever_the_kind_of_match() {
    // The same number meets a regex, a prefix, an exact match and a
    // match-all; whichever comes first in the file wins.
    let kinds = [
        ("regex", "ruri_user_regex = \"^49\""),
        ("prefix", "ruri_user_prefix = \"49\""),
        ("longer-prefix", "ruri_user_prefix = \"4930\""),
        ("exact", "ruri_user = \"4930123\""),
        ("header", "header = { name = \"X-Route\", regex = \"yes\" }"),
        ("all", ""),
    ];
    let headers = [("X-Route", "yes")];
    let req = RequestView {
        headers: &headers,
        ..to("4930123")
    };
    for first in 0..kinds.len() {
        let mut order: Vec<_> = kinds.to_vec();
        order.rotate_left(first);
        let text: String = order
            .iter()
            .map(|(name, cond)| format!("[[rule]]\nname = \"{name}\"\n{cond}\ngroup = \"pbx\"\n"))
            .collect();
        let r = router(&text);
        assert_eq!(
            rule(&r, &req).as_deref(),
            Some(order[0].0),
            "order {order:?}"
        );
    }
}

#[test]
fn strip_prefix_and_replace_rewrite_the_user_in_that_order() {
    let r = router(
        r#"
[[rule]]
name = "national"
source = "carrier"
ruri_user_prefix = "+49"
strip = 3
prefix = "0"
group = "pbx"
[[rule]]
name = "swap"
source = "gateway"
ruri_user_regex = "^00"
replace = { regex = "^00([0-9]+)$", with = "+${1}" }
group = "pbx"
[[rule]]
name = "all-three"
ruri_user_prefix = "9"
strip = 1
prefix = "0049"
replace = { regex = "^0049(30)([0-9]+)$", with = "$2-$1" }
redirect = "media"
[[rule]]
name = "too-short"
ruri_user_prefix = "7"
strip = 5
group = "media"
"#,
    );
    let user_of = |req: &RequestView| match r.route(req).map(|d| d.action) {
        Some(Action::Route { ruri_user, .. } | Action::Redirect { ruri_user, .. }) => ruri_user,
        other => panic!("{other:?}"),
    };
    assert_eq!(user_of(&to("+4930123")), "030123");
    let gateway = RequestView {
        source: "gateway",
        ..to("004930123")
    };
    assert_eq!(user_of(&gateway), "+4930123");
    let no_capture_match = RequestView {
        source: "gateway",
        ..to("00x")
    };
    assert_eq!(
        user_of(&no_capture_match),
        "00x",
        "replace without a match leaves the user"
    );
    let gateway9 = RequestView {
        source: "gateway",
        ..to("930555")
    };
    assert_eq!(
        r.route(&gateway9).map(|d| d.action),
        Some(Action::Redirect {
            group: "media".into(),
            ruri_user: "555-30".into()
        })
    );
    assert_eq!(user_of(&to("712")), "");
}

#[test]
fn shadowed_rules_are_found_and_reachable_ones_are_not() {
    let r = router(
        r#"
[[rule]]
name = "berlin"
ruri_user_prefix = "+4930"
group = "pbx"
[[rule]]
name = "berlin-mitte"
ruri_user_prefix = "+49302"
group = "media"
[[rule]]
name = "gateway"
source = "gateway"
group = "pbx"
[[rule]]
name = "gateway-night"
source = "gateway"
time = "22:00-06:00"
group = "media"
[[rule]]
name = "carrier-night"
source = "carrier"
time = "22:00-06:00"
group = "media"
[[rule]]
name = "short"
ruri_user_regex = "^[0-9]{3}$"
group = "pbx"
[[rule]]
name = "operator"
ruri_user = "100"
group = "media"
[[rule]]
name = "operator-long"
ruri_user = "1000"
group = "media"
[[rule]]
name = "everything"
group = "media"
[[rule]]
name = "never"
from_user = "bob"
reject = { code = 404, reason = "Not Found" }
"#,
    );
    let found: Vec<(String, String)> = r
        .shadowed()
        .into_iter()
        .map(|s| (s.rule_name, s.by_name))
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        found,
        pairs(&[
            ("berlin-mitte", "berlin"),
            ("gateway-night", "gateway"),
            ("operator", "short"),
            ("never", "everything"),
        ])
    );
    let s = r.shadowed();
    assert_eq!((s[3].rule, s[3].by), (9, 8));
}

#[test]
fn bad_regexes_and_times_name_their_key() {
    let err = |rules: &str| {
        Config::parse(&format!("{BASE}{rules}"), Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    };
    let e = err("[[rule]]\nname = \"a\"\nruri_user_regex = \"^(4\"\ngroup = \"pbx\"\n");
    assert!(
        e.starts_with("t.toml: key `rule[0].ruri_user_regex`: bad regex"),
        "{e}"
    );
    let e =
        err("[[rule]]\nname = \"a\"\nheader = { name = \"X\", regex = \"[\" }\ngroup = \"pbx\"\n");
    assert!(e.contains("`rule[0].header.regex`"), "{e}");
    let e =
        err("[[rule]]\nname = \"a\"\nreplace = { regex = \"(\", with = \"\" }\ngroup = \"pbx\"\n");
    assert!(e.contains("`rule[0].replace.regex`"), "{e}");
    for bad in ["8-18", "08:00-08:00", "25:00-26:00", "08:00", "8:00-18:00"] {
        let e = err(&format!(
            "[[rule]]\nname = \"a\"\ntime = \"{bad}\"\ngroup = \"pbx\"\n"
        ));
        assert!(e.contains("`rule[0].time`"), "{bad}: {e}");
    }
    // 24:00 is a valid end.
    let r = router("[[rule]]\nname = \"a\"\ntime = \"18:00-24:00\"\ngroup = \"pbx\"\n");
    let late = RequestView {
        minute_of_day: 23 * 60 + 59,
        wans_down: &[],
        ..to("1")
    };
    assert_eq!(rule(&r, &late).as_deref(), Some("a"));
}
