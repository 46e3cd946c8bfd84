use super::*;
use bytes::Bytes;

fn parse(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.replace('\n', "\r\n").as_bytes()))
        .expect("valid message")
}

fn invite() -> Message {
    parse(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\n\
         Max-Forwards: 70\n\
         To: Bob <sip:bob@biloxi.example.com>\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710\n\
         CSeq: 314159 INVITE\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\n\
         Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\n\
         Content-Length: 0\n\n",
    )
}

fn ok_response() -> Message {
    parse(
        "SIP/2.0 200 OK\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\n\
         To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710\n\
         CSeq: 314159 INVITE\n\
         Contact: <sip:bob@192.0.2.4>\n\
         Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\n\
         Content-Length: 0\n\n",
    )
}

#[test]
fn uas_dialog_from_invite() {
    let d = Dialog::from_uas_request(
        &invite(),
        "uas-tag",
        "<sip:tandem@192.0.2.10>",
        DialogState::Confirmed,
    )
    .unwrap();
    assert_eq!(&*d.id.call_id, "a84b4c76e66710");
    assert_eq!(&*d.id.local_tag, "uas-tag");
    assert_eq!(&*d.id.remote_tag, "1928301774");
    assert_eq!(d.remote_seq, Some(314159));
    assert_eq!(&*d.remote_target, "sip:alice@pc33.atlanta.example.com");
    assert_eq!(
        d.route_set.to_vec(),
        vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(&*d.remote_uri, "\"Alice\" <sip:alice@atlanta.example.com>");
    assert_eq!(&*d.local_uri, "Bob <sip:bob@biloxi.example.com>");
}

#[test]
fn uac_dialog_reverses_record_route() {
    let d = Dialog::from_uac_response(
        &invite(),
        &ok_response(),
        "<sip:alice@pc33.atlanta.example.com>",
    )
    .unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(&*d.id.local_tag, "1928301774");
    assert_eq!(&*d.id.remote_tag, "a6c85cf");
    assert_eq!(d.local_seq, 314159);
    assert_eq!(
        d.route_set.to_vec(),
        vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(d.next_hop(), "sip:p1.example.com;lr");
    assert!(d.matches_response(&ok_response()));
}

#[test]
fn bye_is_built_with_next_cseq_and_routes() {
    let mut d = Dialog::from_uac_response(&invite(), &ok_response(), "<sip:alice@pc33>").unwrap();
    let bye = Message::parse(
        d.request(&Method::Bye, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb1")
            .build(),
    )
    .unwrap();
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.request_uri_str(), Some("sip:bob@192.0.2.4"));
    assert_eq!(bye.cseq().seq, 314160);
    assert_eq!(bye.from_tag(), Some("1928301774"));
    assert_eq!(bye.to_tag(), Some("a6c85cf"));
    let routes: Vec<_> = bye.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        routes,
        vec!["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    );
    assert!(
        bye.header("Contact").is_none(),
        "BYE is not a target refresh"
    );
}

#[test]
fn ack_for_2xx_reuses_invite_cseq() {
    let d = Dialog::from_uac_response(&invite(), &ok_response(), "<sip:alice@pc33>").unwrap();
    let ack = Message::parse(
        d.ack(314159, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1")
            .build(),
    )
    .unwrap();
    assert_eq!(ack.cseq().seq, 314159);
    assert_eq!(ack.cseq().method, Method::Ack);
    assert_eq!(d.local_seq, 314159);
}

#[test]
fn strict_route_puts_first_route_in_request_uri() {
    let mut d = Dialog::from_uac_response(&invite(), &ok_response(), "<sip:a@h>").unwrap();
    d.route_set = vec![
        "<sip:strict.example.com>".to_owned(),
        "<sip:p2.example.com;lr>".to_owned(),
    ]
    .into();
    let req = Message::parse(
        d.request(&Method::Info, "SIP/2.0/UDP h;branch=z9hG4bKx")
            .build(),
    )
    .unwrap();
    assert_eq!(req.request_uri_str(), Some("sip:strict.example.com"));
    let routes: Vec<_> = req.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(routes, vec!["sip:p2.example.com;lr", "sip:bob@192.0.2.4"]);
}

#[test]
fn remote_request_checks_cseq_and_refreshes_target() {
    let mut d = Dialog::from_uas_request(&invite(), "uas-tag", "<sip:t@h>", DialogState::Confirmed)
        .unwrap();
    let reinvite = |seq: u32, contact: &str| {
        parse(&format!(
            "INVITE sip:t@h SIP/2.0\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK{seq}\n\
             Max-Forwards: 70\n\
             To: Bob <sip:bob@biloxi.example.com>;tag=uas-tag\n\
             From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\n\
             Call-ID: a84b4c76e66710\n\
             CSeq: {seq} INVITE\n\
             Contact: <{contact}>\n\
             Content-Length: 0\n\n"
        ))
    };
    d.on_remote_request(&reinvite(314160, "sip:alice@198.51.100.7"))
        .unwrap();
    assert_eq!(&*d.remote_target, "sip:alice@198.51.100.7");
    assert_eq!(
        d.on_remote_request(&reinvite(314160, "sip:x@y")),
        Err(DialogError::CSeqOutOfOrder {
            got: 314160,
            last: 314160
        })
    );
    let mut foreign = d.clone();
    foreign.id.local_tag = "other".into();
    assert_eq!(
        foreign.on_remote_request(&reinvite(314161, "sip:x@y")),
        Err(DialogError::NotThisDialog)
    );
}

#[test]
fn raise_local_seq_never_lowers() {
    let mut d =
        Dialog::from_uas_request(&invite(), "t", "<sip:t@h>", DialogState::Confirmed).unwrap();
    d.raise_local_seq(1000);
    d.raise_local_seq(10);
    let bye = Message::parse(
        d.request(&Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKy")
            .build(),
    )
    .unwrap();
    assert_eq!(bye.cseq().seq, 1001);
}

/// A dialog lives as long as its call: its strings carry no spare room
/// and no capacity word (`Box<str>`: 144 bytes a dialog where `String`s
/// made it 208; issue 15, memory per held call).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_dialog_keeps_its_strings_without_spare_room() {
    let d = Dialog::from_uas_request(&invite(), "tag9", "<sip:me@host>", DialogState::Confirmed)
        .expect("dialog");
    assert_eq!(&*d.remote_uri, "\"Alice\" <sip:alice@atlanta.example.com>");
    let size = std::mem::size_of::<Dialog>();
    assert!(size <= 144, "a Dialog is {size} bytes");
}

/// The replicated form is unchanged: a dialog written when its strings
/// were `String`s reads back, and writes the same.
#[test]
fn a_dialog_reads_and_writes_as_it_did_with_strings() {
    #[derive(Serialize, Deserialize)]
    struct OldId {
        call_id: String,
        local_tag: String,
        remote_tag: String,
    }
    #[derive(Serialize, Deserialize)]
    struct Old {
        id: OldId,
        state: DialogState,
        local_seq: u32,
        remote_seq: Option<u32>,
        local_uri: String,
        remote_uri: String,
        remote_target: String,
        route_set: Vec<String>,
        local_contact: String,
        secure: bool,
    }
    let d = Dialog::from_uac_response(&invite(), &ok_response(), "<sip:a@h>").unwrap();
    let old = Old {
        id: OldId {
            call_id: d.id.call_id.to_string(),
            local_tag: d.id.local_tag.to_string(),
            remote_tag: d.id.remote_tag.to_string(),
        },
        state: d.state,
        local_seq: d.local_seq,
        remote_seq: d.remote_seq,
        local_uri: d.local_uri.to_string(),
        remote_uri: d.remote_uri.to_string(),
        remote_target: d.remote_target.to_string(),
        route_set: d.route_set.to_vec(),
        local_contact: d.local_contact.to_string(),
        secure: d.secure,
    };
    let old_json = serde_json::to_string(&old).unwrap();
    assert_eq!(serde_json::to_string(&d).unwrap(), old_json);
    let back: Dialog = serde_json::from_str(&old_json).unwrap();
    assert_eq!(back, d);
}
