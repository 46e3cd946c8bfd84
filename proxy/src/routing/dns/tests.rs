// Tests may panic: a failed unwrap or index is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

fn member(name: &str, priority: u16, weight: u16) -> ResolvedMember {
    ResolvedMember {
        name: name.into(),
        address: "127.0.0.1:5060".parse().unwrap(),
        transport: MemberTransport::Udp,
        priority,
        weight,
    }
}

fn naptr(order: u16, preference: u16, flags: &str, services: &str, to: &str) -> NaptrRecord {
    NaptrRecord {
        order,
        preference,
        flags: flags.into(),
        services: services.into(),
        replacement: to.into(),
    }
}

fn dns_config(f: impl FnOnce(&mut DnsMemberConfig)) -> DnsMemberConfig {
    let mut m = DnsMemberConfig::default();
    f(&mut m);
    m
}

#[test]
fn weighted_pick_follows_rfc_2782_running_sums() {
    // Weights 60 and 40: running sums 60, 100; random 0..=60 picks the
    // first, 61..=100 the second, and 101 wraps to 0.
    assert_eq!(weighted_pick(&[60, 40], 0), Some(0));
    assert_eq!(weighted_pick(&[60, 40], 60), Some(0));
    assert_eq!(weighted_pick(&[60, 40], 61), Some(1));
    assert_eq!(weighted_pick(&[60, 40], 100), Some(1));
    assert_eq!(weighted_pick(&[60, 40], 101), Some(0));
    assert_eq!(weighted_pick(&[], 7), None);
}

#[test]
fn weighted_pick_shares_follow_weights_and_zero_is_rare_not_never() {
    // Every random number once over a whole cycle gives the exact shares.
    let weights = [30, 0, 10];
    let mut counts = [0u32; 3];
    for r in 0..=40 {
        counts[weighted_pick(&weights, r).unwrap()] += 1;
    }
    assert_eq!(
        counts,
        [30, 1, 10],
        "weight 0 is put first and gets 1 in 41"
    );
    // All zero: each has its turn as the first, the others never.
    assert_eq!(weighted_pick(&[0, 0], 5), Some(0));
}

#[test]
fn choose_takes_the_lowest_priority_that_has_a_member_up() {
    let members = [
        member("a", 10, 60),
        member("b", 10, 40),
        member("c", 20, 10),
    ];
    assert_eq!(choose(&members, |_, _| true, 0), Some(0));
    assert_eq!(choose(&members, |_, _| true, 80), Some(1));
    // a down: b takes all of priority 10, whatever the number.
    assert_eq!(choose(&members, |_, m| m.name != "a", 0), Some(1));
    // Priority 10 all down: the next priority.
    assert_eq!(choose(&members, |_, m| m.priority != 10, 3), Some(2));
    assert_eq!(choose(&members, |_, _| false, 3), None);
}

#[test]
fn failover_order_tries_every_member_priority_by_priority() {
    let members = [
        member("c", 20, 10),
        member("a", 10, 60),
        member("b", 10, 40),
    ];
    // Random 80 draws b first at priority 10 (running sums a 60, b 100),
    // then a alone, then c.
    assert_eq!(failover_order(&members, || 80), vec![2, 1, 0]);
    assert_eq!(failover_order(&members, || 0), vec![1, 2, 0]);
    assert!(failover_order(&[], || 0).is_empty());
}

#[test]
fn members_sort_by_priority_then_weight_then_name() {
    let mut members = vec![
        member("z", 20, 50),
        member("b", 10, 40),
        member("a", 10, 40),
        member("c", 10, 60),
    ];
    sort_members(&mut members);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b", "z"]);
}

#[test]
fn naptr_selection_keeps_sip_udp_and_tcp_by_order_then_preference() {
    let records = [
        naptr(20, 10, "s", "SIP+D2U", "_sip._udp.late.example."),
        naptr(10, 50, "S", "SIP+D2T", "_sip._tcp.example."),
        naptr(10, 10, "S", "SIPS+D2T", "_sips._tcp.example."),
        naptr(10, 20, "S", "SIP+D2U", "_sip._udp.example."),
        naptr(5, 10, "U", "SIP+D2U", ""),
        naptr(1, 10, "S", "SIP+D2S", "_sip._sctp.example."),
    ];
    assert_eq!(
        select_naptr(&records, None),
        vec![
            ("_sip._udp.example".to_string(), MemberTransport::Udp),
            ("_sip._tcp.example".to_string(), MemberTransport::Tcp),
            ("_sip._udp.late.example".to_string(), MemberTransport::Udp),
        ]
    );
    assert_eq!(
        select_naptr(&records, Some(MemberTransport::Tcp)),
        vec![("_sip._tcp.example".to_string(), MemberTransport::Tcp)]
    );
    assert!(select_naptr(&records[4..], None).is_empty());
}

#[test]
fn ttl_is_clamped_to_the_configured_bounds() {
    let bounds = TtlBounds {
        min: Duration::from_secs(10),
        max: Duration::from_secs(3600),
    };
    assert_eq!(bounds.clamp(0), Duration::from_secs(10));
    assert_eq!(bounds.clamp(42), Duration::from_secs(42));
    assert_eq!(bounds.clamp(86_400), Duration::from_secs(3600));
    let defaults = TtlBounds::from_config(&DnsConfig::default());
    assert_eq!(defaults.min, Duration::from_secs(10));
    assert_eq!(defaults.max, Duration::from_secs(3600));
}

#[test]
fn merge_keeps_the_shortest_validity_and_each_name_once() {
    let bounds = TtlBounds {
        min: Duration::from_secs(1),
        max: Duration::from_secs(100),
    };
    let one = Resolved {
        members: vec![member("b", 10, 1), member("a", 20, 1)],
        valid_for: Duration::from_secs(60),
    };
    let two = Resolved {
        members: vec![member("b", 5, 1), member("c", 0, 1)],
        valid_for: Duration::from_secs(30),
    };
    let merged = Resolved::merge([one, two], bounds);
    let names: Vec<(&str, u16)> = merged
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.priority))
        .collect();
    assert_eq!(names, [("c", 0), ("b", 10), ("a", 20)]);
    assert_eq!(merged.valid_for, Duration::from_secs(30));
    let start = Instant::now();
    assert_eq!(merged.refresh_at(start), start + Duration::from_secs(30));
    // Nothing to resolve: valid as long as may be.
    assert_eq!(Resolved::merge([], bounds).valid_for, bounds.max);
}

#[test]
fn member_names_are_target_and_port_and_the_address_only_when_several() {
    let target = parse_name("PBX1.Example.net").unwrap();
    let one = members_of(
        &target,
        5070,
        &["127.0.0.7".parse().unwrap()],
        MemberTransport::Tcp,
        10,
        5,
    );
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "pbx1.example.net:5070");
    assert_eq!(one[0].address, "127.0.0.7:5070".parse().unwrap());
    assert_eq!(
        (one[0].transport, one[0].priority, one[0].weight),
        (MemberTransport::Tcp, 10, 5)
    );
    let two = members_of(
        &target,
        5070,
        &["127.0.0.7".parse().unwrap(), "127.0.0.8".parse().unwrap()],
        MemberTransport::Udp,
        0,
        1,
    );
    let names: Vec<&str> = two.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pbx1.example.net:5070@127.0.0.7",
            "pbx1.example.net:5070@127.0.0.8"
        ]
    );
}

#[test]
fn a_resolved_member_becomes_a_pool_member_with_a_usable_weight() {
    let m = member("a.example:5060", 20, 0).to_member_config();
    assert_eq!(
        (m.name.as_str(), m.priority, m.weight),
        ("a.example:5060", 20, 1)
    );
}

#[test]
fn targets_from_config() {
    let domain = DnsTarget::from_config(&dns_config(|m| m.name = Some("pbx.example.net".into())));
    assert_eq!(
        domain,
        Ok(DnsTarget::Domain {
            name: Name::from_ascii("pbx.example.net.").unwrap(),
            transport: None
        })
    );
    let srv = DnsTarget::from_config(&dns_config(|m| {
        m.srv = Some("_sip._TCP.pbx.example.net".into())
    }));
    assert!(matches!(
        srv,
        Ok(DnsTarget::Srv {
            transport: MemberTransport::Tcp,
            ..
        })
    ));
    let host = DnsTarget::from_config(&dns_config(|m| m.host = Some("pbx.example.net".into())));
    assert!(matches!(
        host,
        Ok(DnsTarget::Host {
            port: SIP_PORT,
            transport: MemberTransport::Udp,
            ..
        })
    ));
}

#[test]
fn bad_targets_name_the_key() {
    let key = |f: fn(&mut DnsMemberConfig)| DnsTarget::from_config(&dns_config(f)).unwrap_err().0;
    assert_eq!(key(|_| {}), "name");
    assert_eq!(
        key(|m| {
            m.name = Some("a.example".into());
            m.host = Some("b.example".into());
        }),
        "name"
    );
    assert_eq!(
        key(|m| {
            m.name = Some("a.example".into());
            m.port = Some(5060);
        }),
        "port"
    );
    assert_eq!(key(|m| m.srv = Some("pbx.example.net".into())), "srv");
    assert_eq!(
        key(|m| m.srv = Some("_sip._sctp.example.net".into())),
        "srv"
    );
    assert_eq!(
        key(|m| {
            m.srv = Some("_sip._udp.example.net".into());
            m.transport = Some(MemberTransport::Tcp);
        }),
        "transport"
    );
    assert_eq!(key(|m| m.host = Some("127.0.0.1".into())), "host");
    assert_eq!(key(|m| m.host = Some("bad name".into())), "host");
    assert_eq!(
        key(|m| {
            m.host = Some("a.example".into());
            m.port = Some(0);
        }),
        "port"
    );
}

#[test]
fn describe_shows_members_and_the_choice_with_members_down() {
    let resolved = Resolved {
        members: vec![
            member("a:1", 10, 60),
            member("b:2", 10, 40),
            member("c:3", 20, 1),
        ],
        valid_for: Duration::from_secs(42),
    };
    let text = describe("pbx", &resolved, &[], 80);
    assert!(
        text.starts_with("group \"pbx\": 3 members from DNS, valid for 42 s\n"),
        "{text}"
    );
    assert!(
        text.contains("member: a:1 127.0.0.1:5060 udp priority=10 weight=60\n"),
        "{text}"
    );
    assert!(text.ends_with("choice: b:2 (random 80)\n"), "{text}");
    let down = ["a:1".to_string(), "b:2".to_string()];
    let text = describe("pbx", &resolved, &down, 80);
    assert!(text.contains("weight=60  (down)\n"), "{text}");
    assert!(text.ends_with("choice: c:3 (random 80)\n"), "{text}");
}

#[test]
fn dns_errors_name_the_name_and_become_a_503_to_retry_elsewhere() {
    let e = no_records(&parse_name("nothing.example").unwrap(), "SRV");
    assert_eq!(e.to_string(), "DNS: no SRV records for nothing.example");
    let call: crate::error::Error = e.into();
    assert_eq!((call.status, call.retry), (503, true));
    assert!(call.detail.contains("nothing.example"));
}
