use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::MemberTransport;
use crate::routing::dns::ResolvedMember;

const EXAMPLE: &str = include_str!("../../../../deploy/tandem.example.toml");

fn config(dns_group: &str) -> Config {
    let text = format!(
        "{EXAMPLE}\n[dns]\nservers = [\"127.0.0.1:9\"]\n\n\
         [[group]]\nname = \"{dns_group}\"\n[[group.dns]]\nsrv = \"_sip._udp.pbx.tandem.test\"\n"
    );
    Config::parse(&text, Path::new("tandem.toml")).unwrap()
}

fn resolved() -> Resolved {
    Resolved {
        members: vec![ResolvedMember {
            name: "a.tandem.test:5070".into(),
            address: "127.0.0.1:5070".parse().unwrap(),
            transport: MemberTransport::Udp,
            priority: 10,
            weight: 10,
        }],
        valid_for: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn a_reload_keeps_the_members_resolved_so_far_while_it_resolves_again() {
    let first = config("pbx");
    let mut dns = DnsMembers::new(&first);
    assert!(dns.take(vec![("pbx".into(), Ok(resolved()))]));
    assert_eq!(dns.with_resolved(&first).groups[0].members.len(), 1);

    // Same group after the reload: its members stay, a round is due now.
    let dns = dns.reconfigured(&first);
    assert_eq!(dns.with_resolved(&first).groups[0].members.len(), 1);
    assert!(dns.idle() && dns.next_refresh().is_some());

    // A group that no longer names members by DNS keeps none.
    let other = config("other");
    let dns = dns.reconfigured(&other);
    assert!(dns
        .with_resolved(&other)
        .groups
        .iter()
        .all(|g| g.members.is_empty()));
}
