#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use proptest::prelude::*;
use sipcore::message::{Message, Method};
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::TransportKind;

use super::*;
use crate::b2bua::call::{CallState, LegA};

fn invite(call_id: &str) -> Message {
    let text = format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK{call_id}\r\n\
         From: <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match Message::parse(Bytes::from(text)) {
        Ok(m) => m,
        Err(e) => panic!("test INVITE does not parse: {e}"),
    }
}

fn leg_b(call_id: &str) -> LegB {
    LegB {
        call_id: call_id.to_owned(),
        local_tag: "b".into(),
        group: 0,
        member: 0,
        tried: vec![0],
        invite: invite("x"),
        invite_key: None,
        dialog: None,
        provisional: false,
        ack_pending: false,
        cancel_sent: false,
        phone: None,
    }
}

fn call(id: u64, a: &str, b: &str) -> Call {
    Call {
        id,
        state: CallState::Calling,
        a: LegA {
            call_id: a.to_owned(),
            local_tag: "a".into(),
            source_name: "trunk".into(),
            invite: invite(a),
            invite_key: None,
            transport: TransportKind::Udp,
            source: "127.0.0.2:5060".parse().unwrap_or_else(|_| unreachable!()),
            dialog: None,
            had_offer: false,
        },
        b: leg_b(b),
        rule: "default".into(),
        ruri_user: None,
        fell_back: false,
        fallback: None,
        media: id,
        media_info: None,
        created_at: 0,
        answered_at: None,
        refreshed_at: 0,
        session_expires: None,
        offer_pending: false,
        late_ack: None,
        servers: Vec::new(),
        offer: None,
        b_local_sdp: None,
        b_remote_sdp: None,
        b_held: false,
        b_sides_held: Some([false, false]),
        resuming: None,
        resumes: 0,
        moves: 0,
        forking: None,
        started: std::time::Instant::now(),
        history: Default::default(),
    }
}

fn client(n: u64) -> ClientKey {
    ClientKey {
        branch: format!("z9hG4bK{n}"),
        method: Method::Invite,
    }
}

fn server(n: u64) -> ServerKey {
    ServerKey {
        branch: format!("z9hG4bKs{n}"),
        sent_by: "127.0.0.2:5060".into(),
        method: Method::Info,
    }
}

#[test]
fn removing_a_call_takes_every_index_entry_with_it() {
    let mut s = CallStore::new(true);
    let id = s.allocate_id();
    assert_eq!(s.insert(call(id, "a1", "b1")), Ok(()));
    s.bind_client(client(1), ClientRole::LegBInvite { call: id });
    s.bind_client(
        client(2),
        ClientRole::Forwarded {
            call: id,
            to: Leg::B,
            origin: server(2),
            request: Box::new(invite("a1")),
        },
    );
    s.await_ack(id, Leg::A, 1);
    assert_eq!(s.find("a1"), Some((id, Leg::A)));
    assert_eq!(s.find("b1"), Some((id, Leg::B)));
    assert!(s.remove(id).is_some());
    assert_eq!(s.check(), Ok(()));
    assert_eq!(s.find("a1"), None);
    assert_eq!(s.find("b1"), None);
    assert!(s.client(&client(1)).is_none(), "leg B's INVITE role goes");
    assert!(
        matches!(s.client(&client(2)), Some(ClientRole::Orphaned { .. })),
        "a forwarded request keeps its origin"
    );
    assert!(!s.awaits_ack(id, Leg::A, 1));
    assert!(s.take_changed().contains(&id));
}

#[test]
fn duplicate_ids_and_call_ids_are_refused() {
    let mut s = CallStore::new(false);
    assert_eq!(s.insert(call(1, "a1", "b1")), Ok(()));
    assert_eq!(s.insert(call(1, "a2", "b2")), Err(Conflict::Id(1)));
    assert_eq!(
        s.insert(call(2, "a1", "b2")),
        Err(Conflict::CallId("a1".into()))
    );
    assert_eq!(
        s.insert(call(2, "a2", "b1")),
        Err(Conflict::CallId("b1".into()))
    );
    assert!(
        s.allocate_id() > 1,
        "ids of inserted calls are not handed out"
    );
    assert_eq!(s.check(), Ok(()));
}

#[test]
fn a_new_leg_b_replaces_the_old_call_id_in_the_index() {
    let mut s = CallStore::new(false);
    assert_eq!(s.insert(call(1, "a1", "b1")), Ok(()));
    assert!(s.set_leg_b(1, leg_b("b2")));
    assert_eq!(s.find("b1"), None);
    assert_eq!(s.find("b2"), Some((1, Leg::B)));
    assert_eq!(s.unindex_leg_b(1), Some("b2".into()));
    assert_eq!(s.find("b2"), None);
    assert_eq!(s.get(1).map(|c| c.b.call_id.as_str()), Some("b2"));
    assert!(!s.set_leg_b(2, leg_b("b3")), "no such call");
    assert_eq!(s.check(), Ok(()));
}

#[test]
fn a_role_for_an_ended_call_is_not_kept() {
    let mut s = CallStore::new(false);
    s.bind_client(client(1), ClientRole::Reoffer { call: 7 });
    assert!(s.client(&client(1)).is_none());
    s.bind_client(client(2), ClientRole::Probe { member: 0 });
    assert!(s.client(&client(2)).is_some());
    assert_eq!(s.check(), Ok(()));
}

/// One step of a random workload on the store.
#[derive(Debug, Clone)]
enum Op {
    Insert { a: u8, b: u8 },
    Remove(u8),
    NewLegB { call: u8, b: u8 },
    UnindexB(u8),
    Bind { key: u8, call: u8, kind: u8 },
    Unbind(u8),
    AwaitAck { call: u8, leg_b: bool },
    Acked { call: u8, leg_b: bool },
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Insert { a: a % 16, b: b % 16 }),
        3 => any::<u8>().prop_map(|c| Op::Remove(c % 12)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(call, b)| Op::NewLegB { call: call % 12, b: b % 16 }),
        1 => any::<u8>().prop_map(|c| Op::UnindexB(c % 12)),
        3 => (any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(key, call, kind)| Op::Bind { key: key % 16, call: call % 12, kind: kind % 5 }),
        2 => any::<u8>().prop_map(|k| Op::Unbind(k % 16)),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(call, leg_b)| Op::AwaitAck { call: call % 12, leg_b }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(call, leg_b)| Op::Acked { call: call % 12, leg_b }),
        1 => Just(Op::Clear),
    ]
}

fn leg(b: bool) -> Leg {
    if b {
        Leg::B
    } else {
        Leg::A
    }
}

proptest! {
    /// After every step of any sequence, every index agrees with the
    /// calls, and lookups by Call-ID find exactly the stored calls.
    #[test]
    fn every_index_agrees_with_the_calls(ops in proptest::collection::vec(op(), 1..200)) {
        let mut s = CallStore::new(true);
        for op in ops {
            match op {
                Op::Insert { a, b } => {
                    let id = s.allocate_id();
                    let _ = s.insert(call(id, &format!("a{a}"), &format!("b{b}")));
                }
                Op::Remove(c) => {
                    let removed = s.remove(u64::from(c));
                    if let Some(removed) = removed {
                        prop_assert_eq!(s.find(&removed.a.call_id), None);
                        prop_assert!(s.take_changed().contains(&removed.id));
                    }
                }
                Op::NewLegB { call, b } => {
                    let _ = s.set_leg_b(u64::from(call), leg_b(&format!("b{b}")));
                }
                Op::UnindexB(c) => {
                    let _ = s.unindex_leg_b(u64::from(c));
                }
                Op::Bind { key, call, kind } => {
                    let call = u64::from(call);
                    let role = match kind {
                        0 => ClientRole::LegBInvite { call },
                        1 => ClientRole::Forwarded {
                            call,
                            to: Leg::A,
                            origin: server(u64::from(key)),
                            request: Box::new(invite("r")),
                        },
                        2 => ClientRole::Reoffer { call },
                        3 => ClientRole::Probe { member: 0 },
                        _ => ClientRole::Own,
                    };
                    s.bind_client(client(u64::from(key)), role);
                }
                Op::Unbind(k) => {
                    let _ = s.unbind_client(&client(u64::from(k)));
                }
                Op::AwaitAck { call, leg_b } => s.await_ack(u64::from(call), leg(leg_b), 1),
                Op::Acked { call, leg_b } => s.acked(u64::from(call), leg(leg_b)),
                Op::Clear => {
                    let _ = s.clear_silently();
                    prop_assert!(s.is_empty());
                }
            }
            prop_assert_eq!(s.check(), Ok(()));
            for c in s.values() {
                prop_assert_eq!(s.find(&c.a.call_id), Some((c.id, Leg::A)));
            }
        }
    }
}

/// The store keeps every call's record for the call's whole life, so its
/// size is a part of what each held call costs (issue 15: 4 KiB a call in
/// all). Was 1,768 bytes; the parts only used while a call is set up or
/// moved, or for calls to phones, are boxed. Then 1,472: a dialog's
/// strings are `Box<str>` (two dialogs, 64 bytes each) and a method 16
/// bytes (two messages, 16 each).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_call_record_keeps_rare_parts_out_of_line() {
    use crate::b2bua::call::Call;
    let size = std::mem::size_of::<Call>();
    assert!(size <= 1312, "a Call is {size} bytes");
}

/// The Call-ID indexes hold about two slots a held call (spare ones
/// included) and no copy of the Call-ID: a slot is the call id alone, 8
/// bytes, where a `HashMap<String, u64>` slot was 32 and a copy of the
/// text.
#[test]
fn a_call_id_index_keeps_call_ids_only() {
    fn slot<T>(_: &HashTable<T>) -> usize {
        std::mem::size_of::<T>()
    }
    let store = CallStore::new(false);
    assert_eq!(slot(&store.by_a.ids), 8);
    assert_eq!(slot(&store.by_b.ids), 8);
}

/// A call's history and server list hold one entry for most of its life:
/// no room kept for three more (`Vec::push` starts at four).
#[test]
fn a_first_history_entry_takes_no_spare_room() {
    let mut call = call(1, "a1", "b1");
    call.history.tried("uas", 1);
    crate::b2bua::call::push_exact(&mut call.servers, ("uas".to_owned(), 1));
    assert_eq!(call.history.members.capacity(), 1);
    assert_eq!(call.servers.capacity(), 1);
    for at in 2..40 {
        call.history.tried("uas", at);
    }
    assert_eq!(call.history.members.len(), crate::b2bua::call::HISTORY_MAX);
    assert!(call.history.members.capacity() <= crate::b2bua::call::HISTORY_MAX + 1);
}

/// The Call-ID indexes rehash by reading each call's own Call-ID as they
/// grow: every call is still found by both after thousands went in, some
/// left and some legs B were replaced.
#[test]
fn calls_are_found_by_either_call_id_as_the_indexes_grow_and_shrink() {
    let mut s = CallStore::new(false);
    for id in 1..=3000u64 {
        s.insert(call(id, &format!("a{id}"), &format!("b{id}")))
            .expect("insert");
    }
    for id in (1..=3000u64).step_by(3) {
        assert!(s.remove(id).is_some());
    }
    for id in (2..=3000u64).step_by(3) {
        let mut leg = s.get(id).expect("call").b.clone();
        leg.call_id = format!("new-b{id}");
        assert!(s.set_leg_b(id, leg));
    }
    for id in 1..=3000u64 {
        let (a, b) = (format!("a{id}"), format!("b{id}"));
        match id % 3 {
            1 => {
                assert_eq!(s.find(&a), None);
                assert_eq!(s.find(&b), None);
            }
            2 => {
                assert_eq!(s.find(&a), Some((id, Leg::A)));
                assert_eq!(s.find(&b), None);
                assert_eq!(s.find(&format!("new-b{id}")), Some((id, Leg::B)));
            }
            _ => {
                assert_eq!(s.find(&a), Some((id, Leg::A)));
                assert_eq!(s.find(&b), Some((id, Leg::B)));
            }
        }
    }
    assert_eq!(s.check(), Ok(()));
}

/// Call-IDs are chosen by callers: each store's Call-ID index hashes with
/// a seed of its own, never a fixed state (with which a caller could work
/// out once a set of Call-IDs that all collide).
#[test]
fn call_id_indexes_hash_with_a_seed_of_their_own() {
    let hashes: std::collections::HashSet<u64> = (0..4)
        .map(|_| CallStore::new(false).by_a.hash("same-call-id@127.0.0.2"))
        .collect();
    assert!(
        hashes.len() > 1,
        "the same Call-ID hashed alike in every store"
    );
}

/// A call is held while either of leg B's SDPs holds the stream, each
/// parsed when it is set; a call from a standby's record (no per-side
/// flags) works them out from both SDPs at the next setting.
#[test]
fn leg_b_is_held_while_either_sdp_holds() {
    let sdp = |extra: &str| {
        Bytes::from(format!(
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 8\r\n{extra}"
        ))
    };
    let mut c = call(1, "a1", "b1");
    c.set_b_local_sdp(sdp(""));
    assert!(!c.b_held);
    c.set_b_remote_sdp(sdp("a=sendonly\r\n"));
    assert!(c.b_held, "remote holds");
    c.set_b_local_sdp(sdp("a=sendrecv\r\n"));
    assert!(c.b_held, "remote still holds");
    c.set_b_remote_sdp(sdp(""));
    assert!(!c.b_held);
    c.set_b_local_sdp(sdp("a=inactive\r\n"));
    assert!(c.b_held, "local holds");

    // As a standby has it: the remote held, the flags not replicated.
    let mut standby = call(2, "a2", "b2");
    standby.b_remote_sdp = Some(sdp("a=recvonly\r\n"));
    standby.b_held = true;
    standby.b_sides_held = None;
    standby.set_b_local_sdp(sdp(""));
    assert!(standby.b_held, "the remote's hold is read from its SDP");
}
