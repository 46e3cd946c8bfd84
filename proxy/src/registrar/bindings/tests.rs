use bytes::Bytes;

use super::*;

const AOR: &str = "alice@example.com";
/// A wall clock well after the epoch, in ms.
const T0: UnixMillis = 1_700_000_000_000;

fn settings() -> RegistrarSettings {
    RegistrarSettings {
        domains: vec!["example.com".into()],
        realm: "example.com".into(),
        ..RegistrarSettings::default()
    }
}

fn udp_flow(port: u16) -> Flow {
    Flow {
        transport: TransportKind::Udp,
        source: SocketAddr::from(([192, 0, 2, 10], port)),
        connection: None,
    }
}

/// A REGISTER with these Contact lines and extra header lines.
fn register_msg(contacts: &[&str], extra: &[&str], call_id: &str, cseq: u32) -> Message {
    let mut text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{cseq}x\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for c in contacts {
        text.push_str(&format!("Contact: {c}\r\n"));
    }
    for h in extra {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(text)).unwrap()
}

fn reg(
    b: &mut Bindings,
    contacts: &[&str],
    extra: &[&str],
    call_id: &str,
    cseq: u32,
    wall: UnixMillis,
) -> Result<Vec<Binding>, RegisterError> {
    b.register(
        &register_msg(contacts, extra, call_id, cseq),
        AOR,
        udp_flow(5060),
        wall,
    )
}

/// A REGISTER of one contact with an Expires header.
fn reg_for(
    b: &mut Bindings,
    contact: &str,
    expires: u32,
    call_id: &str,
    cseq: u32,
    wall: UnixMillis,
) -> Result<Vec<Binding>, RegisterError> {
    let header = format!("Expires: {expires}");
    reg(b, &[contact], &[&header], call_id, cseq, wall)
}

fn contacts_of(b: &Bindings, wall: UnixMillis) -> Vec<String> {
    b.lookup(AOR, wall)
        .iter()
        .map(|b| b.contact.clone())
        .collect()
}

#[test]
fn register_adds_a_binding_and_a_query_lists_it_unchanged() {
    let mut b = Bindings::new(settings());
    let out = reg(
        &mut b,
        &["<sip:alice@192.0.2.10:5060>"],
        &["Expires: 600", "User-Agent: Desk 1.0"],
        "c1",
        1,
        T0,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    let got = &out[0];
    assert_eq!(got.contact, "sip:alice@192.0.2.10:5060");
    assert_eq!(got.expires_at, T0 + 600_000);
    assert_eq!(got.q, 1000);
    assert_eq!(got.call_id, "c1");
    assert_eq!(got.cseq, 1);
    assert_eq!(got.flow, udp_flow(5060));
    assert_eq!(got.user_agent.as_deref(), Some("Desk 1.0"));
    assert_eq!(got.registered_at, T0);
    assert_eq!(b.len(), 1);
    assert_eq!(b.take_changed(), vec![AOR.to_string()]);

    // A query: no Contact, nothing changes, the bindings are listed.
    let q = reg(&mut b, &[], &[], "other", 1, T0 + 1500).unwrap();
    assert_eq!(q, out);
    assert!(b.take_changed().is_empty());
    // 598.5 s left: rounded up.
    assert_eq!(
        Bindings::contact_values(&q, T0 + 1500),
        vec!["<sip:alice@192.0.2.10:5060>;expires=599".to_string()]
    );
}

#[test]
fn expires_comes_from_the_contact_then_the_header_then_the_default() {
    let mut b = Bindings::new(RegistrarSettings {
        default_expires: 1800,
        ..settings()
    });
    let out = reg(
        &mut b,
        &["<sip:a@192.0.2.1>;expires=120", "<sip:b@192.0.2.1>"],
        &["Expires: 300"],
        "c1",
        1,
        T0,
    )
    .unwrap();
    let by_contact = |c: &str| out.iter().find(|b| b.contact == c).unwrap().expires_at;
    assert_eq!(by_contact("sip:a@192.0.2.1"), T0 + 120_000);
    assert_eq!(by_contact("sip:b@192.0.2.1"), T0 + 300_000);

    let out = reg(&mut b, &["<sip:c@192.0.2.1>"], &[], "c2", 1, T0).unwrap();
    let c = out.iter().find(|b| b.contact == "sip:c@192.0.2.1").unwrap();
    assert_eq!(c.expires_at, T0 + 1_800_000);

    // A malformed expires parameter is the default (RFC 3261 §20.19).
    let out = reg(
        &mut b,
        &["<sip:d@192.0.2.1>;expires=soon"],
        &[],
        "c3",
        1,
        T0,
    )
    .unwrap();
    let d = out.iter().find(|b| b.contact == "sip:d@192.0.2.1").unwrap();
    assert_eq!(d.expires_at, T0 + 1_800_000);
}

#[test]
fn expires_above_the_maximum_is_shortened_and_below_the_minimum_is_423() {
    let mut b = Bindings::new(settings());
    let out = reg(
        &mut b,
        &["<sip:alice@192.0.2.10>;expires=99999999999"],
        &[],
        "c1",
        1,
        T0,
    )
    .unwrap();
    assert_eq!(out[0].expires_at, T0 + 3_600_000);

    let err = reg_for(&mut b, "<sip:bob@192.0.2.10>", 59, "c1", 2, T0).unwrap_err();
    assert_eq!(err, RegisterError::IntervalTooBrief { min_expires: 60 });
    assert_eq!(err.status(), (423, "Interval Too Brief"));
    assert_eq!(err.headers(), vec![("Min-Expires", "60".to_string())]);
    assert_eq!(b.len(), 1);
    // Exactly the minimum is fine.
    reg_for(&mut b, "<sip:bob@192.0.2.10>", 60, "c1", 3, T0).unwrap();
    assert_eq!(b.len(), 2);
}

#[test]
fn expires_zero_removes_the_binding() {
    let mut b = Bindings::new(settings());
    reg(&mut b, &["<sip:alice@192.0.2.10>"], &[], "c1", 1, T0).unwrap();
    b.take_changed();
    let out = reg(
        &mut b,
        &["<sip:alice@192.0.2.10>;expires=0"],
        &[],
        "c1",
        2,
        T0 + 1000,
    )
    .unwrap();
    assert!(out.is_empty());
    assert_eq!(b.len(), 0);
    assert_eq!(b.aor_count(), 0);
    assert_eq!(b.next_expiry(), None);
    assert_eq!(b.take_changed(), vec![AOR.to_string()]);
    assert_eq!(b.record(AOR), None);
}

#[test]
fn an_older_cseq_of_the_same_call_id_is_out_of_order_and_changes_nothing() {
    let mut b = Bindings::new(settings());
    reg_for(&mut b, "<sip:alice@192.0.2.10>", 600, "c1", 5, T0).unwrap();
    b.take_changed();
    for cseq in [4, 5] {
        let err = reg_for(
            &mut b,
            "<sip:alice@192.0.2.10>",
            3600,
            "c1",
            cseq,
            T0 + 1000,
        )
        .unwrap_err();
        assert_eq!(err, RegisterError::OutOfOrder);
        assert_eq!(err.status(), (500, "Server Internal Error"));
        assert!(err.headers().is_empty());
    }
    assert_eq!(b.lookup(AOR, T0)[0].expires_at, T0 + 600_000);
    assert!(b.take_changed().is_empty());

    // A newer CSeq refreshes.
    reg(&mut b, &["<sip:alice@192.0.2.10>"], &[], "c1", 6, T0 + 1000).unwrap();
    assert_eq!(b.lookup(AOR, T0)[0].expires_at, T0 + 1000 + 3_600_000);
    assert_eq!(b.lookup(AOR, T0)[0].cseq, 6);
}

#[test]
fn a_different_call_id_updates_whatever_its_cseq() {
    // The phone rebooted: a new Call-ID starting at CSeq 1.
    let mut b = Bindings::new(settings());
    reg_for(&mut b, "<sip:alice@192.0.2.10>", 600, "before", 90, T0).unwrap();
    let out = reg(
        &mut b,
        &["<sip:alice@192.0.2.10>"],
        &[],
        "after",
        1,
        T0 + 5000,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].call_id, "after");
    assert_eq!(out[0].cseq, 1);
    assert_eq!(out[0].expires_at, T0 + 5000 + 3_600_000);
    // A refresh keeps the time of first registration.
    assert_eq!(out[0].registered_at, T0);
}

#[test]
fn star_with_expires_zero_removes_every_binding() {
    let mut b = Bindings::new(settings());
    reg(
        &mut b,
        &["<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"],
        &[],
        "c1",
        1,
        T0,
    )
    .unwrap();
    reg(&mut b, &["<sip:c@192.0.2.3>"], &[], "c2", 1, T0).unwrap();
    assert_eq!(b.len(), 3);
    b.take_changed();
    let out = reg(&mut b, &["*"], &["Expires: 0"], "c3", 1, T0 + 1000).unwrap();
    assert!(out.is_empty());
    assert_eq!(b.len(), 0);
    assert_eq!(b.take_changed(), vec![AOR.to_string()]);
}

#[test]
fn star_is_refused_without_expires_zero_or_with_other_contacts() {
    let mut b = Bindings::new(settings());
    reg(&mut b, &["<sip:a@192.0.2.1>"], &[], "c1", 1, T0).unwrap();
    for (contacts, extra) in [
        (&["*"][..], &[][..]),
        (&["*"][..], &["Expires: 60"][..]),
        (&["*", "<sip:b@192.0.2.1>"][..], &["Expires: 0"][..]),
    ] {
        let err = reg(&mut b, contacts, extra, "c2", 1, T0).unwrap_err();
        assert!(matches!(err, RegisterError::Bad(_)), "{err:?}");
        assert_eq!(err.status(), (400, "Bad Request"));
    }
    assert_eq!(b.len(), 1);
}

#[test]
fn star_of_an_older_cseq_of_the_same_call_id_is_out_of_order() {
    let mut b = Bindings::new(settings());
    reg(&mut b, &["<sip:a@192.0.2.1>"], &[], "c1", 7, T0).unwrap();
    reg(&mut b, &["<sip:b@192.0.2.1>"], &[], "c2", 1, T0).unwrap();
    let err = reg(&mut b, &["*"], &["Expires: 0"], "c1", 7, T0).unwrap_err();
    assert_eq!(err, RegisterError::OutOfOrder);
    // Neither binding went (the whole request was aborted).
    assert_eq!(b.len(), 2);
    reg(&mut b, &["*"], &["Expires: 0"], "c1", 8, T0).unwrap();
    assert_eq!(b.len(), 0);
}

#[test]
fn a_full_aor_drops_the_binding_that_expires_soonest() {
    let mut b = Bindings::new(RegistrarSettings {
        max_contacts: 2,
        ..settings()
    });
    reg_for(&mut b, "<sip:a@192.0.2.1>", 900, "c1", 1, T0).unwrap();
    reg_for(&mut b, "<sip:b@192.0.2.2>", 300, "c2", 1, T0).unwrap();
    let out = reg_for(&mut b, "<sip:c@192.0.2.3>", 600, "c3", 1, T0).unwrap();
    let mut contacts: Vec<_> = out.iter().map(|b| b.contact.as_str()).collect();
    contacts.sort();
    assert_eq!(contacts, ["sip:a@192.0.2.1", "sip:c@192.0.2.3"]);
    assert_eq!(b.len(), 2);
    assert_eq!(b.next_expiry(), Some(T0 + 600_000));
}

#[test]
fn a_full_aor_refuses_a_new_contact_with_when_full_reject() {
    let mut b = Bindings::new(RegistrarSettings {
        max_contacts: 2,
        when_full: WhenFull::Reject,
        ..settings()
    });
    reg(&mut b, &["<sip:a@192.0.2.1>"], &[], "c1", 1, T0).unwrap();
    reg(&mut b, &["<sip:b@192.0.2.2>"], &[], "c2", 1, T0).unwrap();
    let err = reg(&mut b, &["<sip:c@192.0.2.3>"], &[], "c3", 1, T0).unwrap_err();
    assert_eq!(err, RegisterError::TooManyContacts);
    assert_eq!(err.status(), (403, "Forbidden"));
    // A refresh of one there is still fine.
    reg(&mut b, &["<sip:a@192.0.2.1>"], &[], "c1", 2, T0).unwrap();
    assert_eq!(b.len(), 2);
}

#[test]
fn one_request_naming_more_contacts_than_allowed_is_403_even_when_replacing() {
    let mut b = Bindings::new(RegistrarSettings {
        max_contacts: 2,
        ..settings()
    });
    let err = reg(
        &mut b,
        &[
            "<sip:a@192.0.2.1>",
            "<sip:b@192.0.2.1>",
            "<sip:c@192.0.2.1>",
        ],
        &[],
        "c1",
        1,
        T0,
    )
    .unwrap_err();
    assert_eq!(err, RegisterError::TooManyContacts);
    assert_eq!(b.len(), 0);
}

#[test]
fn max_bindings_in_all_is_503_with_retry_after_but_refreshes_go_on() {
    let mut b = Bindings::new(RegistrarSettings {
        max_bindings: 2,
        ..settings()
    });
    let flow = udp_flow(5060);
    for (aor, contact) in [
        ("a@example.com", "<sip:a@192.0.2.1>"),
        ("b@example.com", "<sip:b@192.0.2.1>"),
    ] {
        b.register(
            &register_msg(&[contact], &[], aor, 1),
            aor,
            flow.clone(),
            T0,
        )
        .unwrap();
    }
    let err = b
        .register(
            &register_msg(&["<sip:c@192.0.2.1>"], &[], "c", 1),
            "c@example.com",
            flow.clone(),
            T0,
        )
        .unwrap_err();
    assert_eq!(err, RegisterError::Full);
    assert_eq!(err.status(), (503, "Service Unavailable"));
    assert_eq!(err.headers(), vec![("Retry-After", "5".to_string())]);
    assert_eq!(b.len(), 2);
    assert_eq!(b.lookup("c@example.com", T0).len(), 0);
    // A refresh adds nothing and is served.
    b.register(
        &register_msg(&["<sip:a@192.0.2.1>"], &[], "a@example.com", 2),
        "a@example.com",
        flow,
        T0,
    )
    .unwrap();
}

#[test]
fn path_values_are_stored_in_order() {
    let mut b = Bindings::new(settings());
    let out = reg(
        &mut b,
        &["<sip:alice@10.0.0.5>"],
        &[
            "Path: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>",
            "Path: <sip:core.example.net;lr>",
        ],
        "c1",
        1,
        T0,
    )
    .unwrap();
    assert_eq!(
        out[0].path,
        [
            "<sip:edge1.example.net;lr>",
            "<sip:edge2.example.net;lr>",
            "<sip:core.example.net;lr>"
        ]
    );
    // A refresh without Path forgets it (the route may have changed).
    let out = reg(&mut b, &["<sip:alice@10.0.0.5>"], &[], "c1", 2, T0).unwrap();
    assert!(out[0].path.is_empty());
}

#[test]
fn too_many_path_values_are_refused() {
    let mut b = Bindings::new(settings());
    let many = vec!["Path: <sip:p.example.net;lr>"; MAX_PATH_ENTRIES + 1];
    let err = reg(&mut b, &["<sip:alice@10.0.0.5>"], &many, "c1", 1, T0).unwrap_err();
    assert!(matches!(err, RegisterError::Bad(_)), "{err:?}");
    assert_eq!(b.len(), 0);
}

const INSTANCE: &str = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";

#[test]
fn a_new_flow_of_the_same_instance_and_reg_id_replaces_the_old_binding() {
    let mut b = Bindings::new(settings());
    let c1 = format!("<sip:alice@192.0.2.10:5060;ob>;+sip.instance=\"{INSTANCE}\";reg-id=1");
    reg(&mut b, &[&c1], &[], "c1", 1, T0).unwrap();
    // The phone moved (new address, new Call-ID): same instance, reg-id.
    let c2 = format!("<sip:alice@198.51.100.7:6000;ob>;+sip.instance=\"{INSTANCE}\";reg-id=1");
    let out = b
        .register(
            &register_msg(&[&c2], &[], "c2", 1),
            AOR,
            udp_flow(6000),
            T0 + 10,
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].contact, "sip:alice@198.51.100.7:6000;ob");
    assert_eq!(out[0].instance.as_deref(), Some(INSTANCE));
    assert_eq!(out[0].reg_id, Some(1));
    assert_eq!(out[0].flow, udp_flow(6000));
    // The 200 tells the phone its flow is registered (RFC 5626 §6).
    assert_eq!(
        Bindings::contact_values(&out, T0 + 10),
        vec![format!(
            "<sip:alice@198.51.100.7:6000;ob>;expires=3600;+sip.instance=\"{INSTANCE}\";reg-id=1"
        )]
    );
    // A second flow (reg-id 2) of the same instance is a second binding,
    // even with the same Contact URI.
    let c3 = format!("<sip:alice@198.51.100.7:6000;ob>;+sip.instance=\"{INSTANCE}\";reg-id=2");
    let out = reg(&mut b, &[&c3], &[], "c3", 1, T0 + 20).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn one_bad_contact_changes_nothing() {
    let mut b = Bindings::new(settings());
    reg_for(&mut b, "<sip:a@192.0.2.1>", 600, "c1", 1, T0).unwrap();
    b.take_changed();
    let before = b.record(AOR);
    // First contact fine (a refresh and a removal), second bad in each way.
    for (bad, want_brief) in [
        ("<sip:b@192.0.2.1>;q=2", false),
        ("<sip:b@192.0.2.1>;expires=10", true),
        ("<tel:+4930123>", false),
        ("<sip:b@192.0.2.1>;reg-id=x", false),
    ] {
        let err = reg(
            &mut b,
            &["<sip:a@192.0.2.1>;expires=0", "<sip:c@192.0.2.3>", bad],
            &[],
            "c1",
            2,
            T0,
        )
        .unwrap_err();
        assert_eq!(
            matches!(err, RegisterError::IntervalTooBrief { .. }),
            want_brief,
            "{bad}: {err:?}"
        );
        assert_eq!(b.record(AOR), before, "{bad}");
        assert_eq!(b.len(), 1);
        assert!(b.take_changed().is_empty());
    }
}

#[test]
fn an_out_of_order_contact_after_a_good_one_changes_nothing() {
    let mut b = Bindings::new(settings());
    reg(&mut b, &["<sip:a@192.0.2.1>"], &[], "c1", 5, T0).unwrap();
    b.take_changed();
    let before = b.record(AOR);
    // The new contact comes first; the second is older than what is stored.
    let err = reg(
        &mut b,
        &["<sip:new@192.0.2.9>", "<sip:a@192.0.2.1>;expires=0"],
        &[],
        "c1",
        3,
        T0 + 1000,
    )
    .unwrap_err();
    assert_eq!(err, RegisterError::OutOfOrder);
    assert_eq!(b.record(AOR), before);
    assert_eq!(b.len(), 1);
    assert!(b.take_changed().is_empty());
}

#[test]
fn a_too_long_contact_uri_or_too_many_contacts_is_400() {
    let mut b = Bindings::new(settings());
    let long = format!("<sip:{}@192.0.2.1>", "a".repeat(MAX_CONTACT_URI));
    let err = reg(&mut b, &[&long], &[], "c1", 1, T0).unwrap_err();
    assert!(matches!(err, RegisterError::Bad(_)), "{err:?}");

    let many: Vec<String> = (0..=MAX_CONTACTS_PER_REQUEST)
        .map(|i| format!("<sip:u{i}@192.0.2.1>"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = reg(&mut b, &many, &[], "c1", 1, T0).unwrap_err();
    assert!(matches!(err, RegisterError::Bad(_)), "{err:?}");
    assert_eq!(b.len(), 0);

    let long_call_id = "x".repeat(MAX_CALL_ID + 1);
    let err = reg(&mut b, &["<sip:a@192.0.2.1>"], &[], &long_call_id, 1, T0).unwrap_err();
    assert!(matches!(err, RegisterError::Bad(_)), "{err:?}");
}

#[test]
fn bindings_expire_at_their_time_and_not_before() {
    let mut b = Bindings::new(settings());
    reg_for(&mut b, "<sip:a@192.0.2.1>", 60, "c1", 1, T0).unwrap();
    reg_for(&mut b, "<sip:b@192.0.2.1>", 120, "c1", 2, T0).unwrap();
    let flow = udp_flow(5060);
    b.register(
        &register_msg(&["<sip:bob@192.0.2.2>"], &[], "bob", 1),
        "bob@example.com",
        flow,
        T0,
    )
    .unwrap();
    b.take_changed();
    assert_eq!(b.next_expiry(), Some(T0 + 60_000));
    assert_eq!(b.expire(T0 + 59_999), 0);
    assert_eq!(b.len(), 3);
    assert!(b.take_changed().is_empty());
    // At its time the binding is gone from lookups even before expire().
    assert_eq!(contacts_of(&b, T0 + 60_000), ["sip:b@192.0.2.1"]);
    assert_eq!(b.expire(T0 + 60_000), 1);
    assert_eq!(b.len(), 2);
    assert_eq!(b.take_changed(), vec![AOR.to_string()]);
    assert_eq!(b.next_expiry(), Some(T0 + 120_000));
    assert_eq!(b.expire(T0 + 120_000), 1);
    assert_eq!(b.aor_count(), 1);
    assert_eq!(b.next_expiry(), Some(T0 + 3_600_000));
    assert_eq!(b.expire(T0 + 3_600_000), 1);
    assert_eq!(
        b.take_changed(),
        vec![AOR.to_string(), "bob@example.com".to_string()]
    );
    assert!(b.is_empty());
    assert_eq!(b.next_expiry(), None);
}

#[test]
fn a_refresh_moves_the_expiry_and_the_index_keeps_one_entry_per_aor() {
    let mut b = Bindings::new(settings());
    reg_for(&mut b, "<sip:a@192.0.2.1>", 60, "c1", 1, T0).unwrap();
    // Refreshed over and over with alternating lengths.
    for i in 0..1000u32 {
        let expires = if i % 2 == 0 { 3600 } else { 60 };
        let header = format!("Expires: {expires}");
        reg(
            &mut b,
            &["<sip:a@192.0.2.1>"],
            &[&header],
            "c1",
            2 + i,
            T0 + u64::from(i),
        )
        .unwrap();
        assert_eq!(b.expiry.len(), 1);
    }
    // The last refresh (i = 999) was for 60 s at T0 + 999.
    assert_eq!(b.next_expiry(), Some(T0 + 999 + 60_000));
    assert_eq!(b.expire(T0 + 60_000), 0);
    reg_for(&mut b, "<sip:a@192.0.2.1>", 3600, "c1", 5000, T0 + 1000).unwrap();
    assert_eq!(b.expire(T0 + 999 + 60_000), 0);
    assert_eq!(b.len(), 1);
}

#[test]
fn lookup_orders_by_q_then_most_recent() {
    let mut b = Bindings::new(settings());
    reg(&mut b, &["<sip:old@192.0.2.1>;q=0.5"], &[], "c1", 1, T0).unwrap();
    reg(
        &mut b,
        &["<sip:new@192.0.2.1>;q=0.5"],
        &[],
        "c2",
        1,
        T0 + 10,
    )
    .unwrap();
    reg(&mut b, &["<sip:top@192.0.2.1>;q=1.0"], &[], "c3", 1, T0 + 5).unwrap();
    reg(&mut b, &["<sip:low@192.0.2.1>;q=0"], &[], "c4", 1, T0 + 20).unwrap();
    assert_eq!(
        contacts_of(&b, T0 + 30),
        [
            "sip:top@192.0.2.1",
            "sip:new@192.0.2.1",
            "sip:old@192.0.2.1",
            "sip:low@192.0.2.1"
        ]
    );
    let all: Vec<Binding> = b.lookup(AOR, T0 + 30).into_iter().cloned().collect();
    let values = Bindings::contact_values(&all, T0 + 30);
    assert!(values[1].ends_with(";q=0.5"), "{values:?}");
    assert!(values[3].ends_with(";q=0"), "{values:?}");
    assert!(!values[0].contains("q="), "{values:?}");
}

#[test]
fn contacts_match_by_uri_equivalence() {
    let mut b = Bindings::new(settings());
    reg(
        &mut b,
        &["<sip:alice@Phone.Example.COM:5060;transport=udp>"],
        &[],
        "c1",
        1,
        T0,
    )
    .unwrap();
    // Same binding: scheme and host case, parameter case.
    reg(
        &mut b,
        &["<SIP:alice@phone.example.com:5060;TRANSPORT=UDP>"],
        &[],
        "c1",
        2,
        T0,
    )
    .unwrap();
    assert_eq!(b.len(), 1);
    // Other bindings: the user's case, a port, a transport differ.
    for (i, c) in [
        "<sip:Alice@phone.example.com:5060;transport=udp>",
        "<sip:alice@phone.example.com;transport=udp>",
        "<sip:alice@phone.example.com:5060;transport=tcp>",
        "<sip:alice@phone.example.com:5060>",
    ]
    .iter()
    .enumerate()
    {
        reg(&mut b, &[c], &[], "c1", 3 + i as u32, T0).unwrap();
    }
    assert_eq!(b.len(), 5);
}

#[test]
fn uri_equivalence_follows_rfc_3261_19_1_4() {
    let eq = |a: &str, b: &str| uri_equivalent(&Uri::parse(a).unwrap(), &Uri::parse(b).unwrap());
    // RFC 3261 §19.1.4's examples.
    assert!(eq(
        "sip:alice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    ));
    assert!(eq(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
    ));
    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com:6000;transport=tcp"
    ));
    assert!(!eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com?Subject=next%20meeting"
    ));
    assert!(!eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
}

#[test]
fn records_round_trip_without_the_connection() {
    let mut b = Bindings::new(settings());
    let flow = Flow {
        transport: TransportKind::Tcp,
        source: SocketAddr::from(([198, 51, 100, 7], 40000)),
        connection: Some(ConnectionId(42)),
    };
    b.register(
        &register_msg(
            &["<sip:alice@10.0.0.5;transport=tcp>;q=0.7"],
            &["Path: <sip:edge.example.net;lr>", "User-Agent: Desk"],
            "c1",
            3,
        ),
        AOR,
        flow,
        T0,
    )
    .unwrap();
    let record = b.record(AOR).unwrap();

    let mut standby = Bindings::new(settings());
    standby.apply_record(AOR, Some(&record)).unwrap();
    assert!(standby.take_changed().is_empty(), "not noted as a change");
    assert_eq!(standby.len(), 1);
    assert_eq!(standby.next_expiry(), b.next_expiry());
    let mine = b.lookup(AOR, T0)[0].clone();
    let theirs = standby.lookup(AOR, T0)[0].clone();
    assert_eq!(theirs.flow.connection, None);
    assert_eq!(
        theirs,
        Binding {
            flow: Flow {
                connection: None,
                ..mine.flow.clone()
            },
            ..mine
        }
    );
    // The standby's copy keeps the §10.3 ordering rule after a takeover.
    let err = standby
        .register(
            &register_msg(&["<sip:alice@10.0.0.5;transport=tcp>"], &[], "c1", 3),
            AOR,
            udp_flow(5060),
            T0,
        )
        .unwrap_err();
    assert_eq!(err, RegisterError::OutOfOrder);

    standby.apply_record(AOR, None).unwrap();
    assert!(standby.is_empty());
    assert_eq!(standby.next_expiry(), None);
    assert!(standby.apply_record(AOR, Some(b"{not json")).is_err());
    assert!(standby.is_empty());
}

#[test]
fn iter_lists_aors_in_order() {
    let mut b = Bindings::new(settings());
    for aor in ["carol@example.com", "alice@example.com", "bob@example.com"] {
        b.register(
            &register_msg(&["<sip:x@192.0.2.1>"], &[], aor, 1),
            aor,
            udp_flow(5060),
            T0,
        )
        .unwrap();
    }
    let aors: Vec<&str> = b.iter().map(|(aor, _)| aor).collect();
    assert_eq!(
        aors,
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
}

#[test]
fn aor_of_is_user_at_lower_case_host() {
    assert_eq!(
        aor_of("sip:Alice@Example.COM:5060;transport=tcp").as_deref(),
        Some("Alice@example.com")
    );
    assert_eq!(
        aor_of("sips:bob@example.com").as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(aor_of("sip:example.com"), None);
    assert_eq!(aor_of("tel:+4930123"), None);
    assert_eq!(aor_of("not a uri"), None);
    assert_eq!(
        aor_of(&format!("sip:{}@example.com", "a".repeat(MAX_AOR))),
        None
    );
}

#[test]
fn qvalues_parse_and_print() {
    for (text, q) in [
        ("0", 0),
        ("1", 1000),
        ("0.5", 500),
        ("0.05", 50),
        ("0.123", 123),
        ("1.000", 1000),
        ("1.0", 1000),
    ] {
        assert_eq!(parse_q(text), Some(q), "{text}");
    }
    for bad in ["", "2", "1.001", "0.1234", "0.", ".5", "-0.5", "0.a", "01"] {
        assert_eq!(parse_q(bad), None, "{bad}");
    }
    for (q, text) in [
        (0, "0"),
        (1000, "1"),
        (500, "0.5"),
        (50, "0.05"),
        (5, "0.005"),
        (123, "0.123"),
    ] {
        assert_eq!(format_q(q), text);
    }
}

#[test]
fn the_user_agent_is_cut_at_a_character_boundary() {
    let ua = format!("{}é{}", "a".repeat(MAX_USER_AGENT - 1), "b".repeat(50));
    let cut = truncated_user_agent(&ua);
    assert_eq!(cut, "a".repeat(MAX_USER_AGENT - 1));
    let mut b = Bindings::new(settings());
    let header = format!("User-Agent: {}", "u".repeat(1000));
    let out = reg(&mut b, &["<sip:a@192.0.2.1>"], &[&header], "c1", 1, T0).unwrap();
    assert_eq!(out[0].user_agent.as_ref().unwrap().len(), MAX_USER_AGENT);
}
