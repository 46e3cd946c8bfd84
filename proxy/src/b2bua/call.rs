//! A call through the B2BUA as plain data: everything the active node
//! knows about it, serialisable so that a standby can be given a copy.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sipcore::dialog::Dialog;
use sipcore::message::Message;
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::TransportKind;
use std::time::Instant;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallState {
    /// Leg B's INVITE is out; nothing but 100 back yet.
    Calling,
    /// A provisional response (ringing, early media) was forwarded to A.
    Early,
    /// 2xx sent to A; waiting for A's ACK.
    Answered,
    /// Both legs confirmed: the call is up.
    Confirmed,
    /// A CANCEL from A arrived before the answer: waiting for leg B to
    /// finish so that no call is left on the media server.
    Cancelling,
}

/// Leg A: Tandem is the UAS toward the trunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegA {
    pub call_id: String,
    /// Our To tag toward the trunk.
    pub local_tag: String,
    /// The INVITE as received: responses are built from it, and the
    /// identity and carried headers of any new leg B come from it.
    pub invite: Message,
    /// The INVITE server transaction while it awaits a final response.
    /// Boxed: None once the call is answered, and inline it would cost
    /// every held call 64 bytes more (serde writes a box as its content).
    pub invite_key: Option<Box<ServerKey>>,
    /// The name of the source (trunk) the call came from, for CDRs.
    #[serde(default)]
    pub source_name: String,
    /// Transport and address the trunk sent from.
    pub transport: TransportKind,
    pub source: std::net::SocketAddr,
    pub dialog: Option<Dialog>,
    /// The INVITE carried an offer (otherwise leg B's answer carries the
    /// offer and A's ACK the answer).
    pub had_offer: bool,
}

/// Leg B: Tandem is the UAC toward a media server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegB {
    pub call_id: String,
    pub local_tag: String,
    /// The destination group, and the index of its member (the machine's
    /// numbering of all members, see `pool::Destinations`).
    #[serde(default)]
    pub group: usize,
    pub member: usize,
    /// Members tried for this call, in order (failover never repeats one).
    pub tried: Vec<usize>,
    /// The INVITE we sent (CANCEL and failover are built from it).
    pub invite: Message,
    pub invite_key: Option<ClientKey>,
    pub dialog: Option<Dialog>,
    /// Any response but 100 arrived: CANCEL is allowed now (§9.1).
    pub provisional: bool,
    /// The 2xx's ACK is held until A's ACK brings the answer (late offer).
    pub ack_pending: bool,
    pub cancel_sent: bool,
    /// Leg B goes to a registered phone (the location service), not to a
    /// member of a group (`member` is then `usize::MAX`). Boxed: most legs
    /// B go to a member, and inline it would cost every call its size.
    #[serde(default)]
    pub phone: Option<Box<PhoneTarget>>,
}

/// A registered contact as the target of a leg B: its URI and the flow it
/// registered over (requests go back over that flow, RFC 5626 in its
/// simple form: a phone behind NAT is reached at its source address, a
/// phone on TCP over its own connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneTarget {
    /// The AOR called (for CDRs and logs).
    pub aor: String,
    /// The contact URI: the Request-URI of requests to the phone.
    pub uri: String,
    /// Path values (RFC 3327): Route headers of requests to the phone.
    #[serde(default)]
    pub path: Vec<String>,
    /// The flow the phone registered over (its connection is not
    /// replicated: it lives on one node; the standby reaches the phone at
    /// its source address, or the phone reconnects).
    pub flow: crate::registrar::Flow,
}

impl PhoneTarget {
    pub fn target(&self) -> sipcore::transport::Target {
        self.flow.target()
    }
}

/// A call to an AOR ringing its contacts (RFC 3261 §16.6/16.7 as a
/// B2BUA does it: each contact is a leg B of its own until one answers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forking {
    pub mode: crate::config::ForkMode,
    /// Sequential: how long one contact rings before the next.
    pub timeout_s: u32,
    /// Contacts not tried yet, in order (highest q first).
    pub pending: Vec<PhoneTarget>,
    /// Legs B whose INVITE is out, with no final answer yet.
    pub ringing: Vec<LegB>,
    /// Legs B given up on (another answered, the caller cancelled, the
    /// ring time passed): a provisional gets a CANCEL, a 2xx an ACK and a
    /// BYE, a final answer removes them.
    pub abandoned: Vec<LegB>,
    /// The best final answer so far (§16.7: 6xx over the lowest class).
    pub best: Option<(u16, String)>,
}

/// Which leg a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    pub fn side(self) -> media_relay::Side {
        match self {
            Leg::A => media_relay::Side::A,
            Leg::B => media_relay::Side::B,
        }
    }
}

/// Times as milliseconds since the Unix epoch: plain data that means the
/// same on another node.
pub type UnixMillis = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub id: u64,
    pub state: CallState,
    pub a: LegA,
    pub b: LegB,
    /// The routing rule that chose the destination.
    #[serde(default)]
    pub rule: String,
    /// Leg B's Request-URI user as the rule made it (None: leg A's).
    #[serde(default)]
    pub ruri_user: Option<String>,
    /// The call moved to its policy's fallback group (once at most).
    #[serde(default)]
    pub fell_back: bool,
    /// Its rule's fallback group (`fallback` with `group`): tried once
    /// when no member of its group is left.
    #[serde(default)]
    pub fallback: Option<String>,
    /// The relay session anchoring both legs' RTP.
    pub media: u64,
    /// Its local ports on both sides (for the SDP Tandem sends), once the
    /// relay has opened it.
    #[serde(default)]
    pub media_info: Option<media_relay::SessionInfo>,
    pub created_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    /// Last successful session refresh (RFC 4028), or the answer.
    pub refreshed_at: UnixMillis,
    /// Negotiated Session-Expires in seconds, if session timers are on.
    pub session_expires: Option<u32>,
    /// A re-INVITE or UPDATE is in progress (answer 491 to another one).
    pub offer_pending: bool,
    /// A re-INVITE without SDP (late offer) was answered with an offer:
    /// the answering leg's ACK waits for the asker's ACK, which carries
    /// the answer (RFC 3264 §4).
    #[serde(default)]
    pub late_ack: Option<LateAck>,
    /// Every media server this call used, with the time it started there.
    pub servers: Vec<(String, UnixMillis)>,
    /// The offer as sent to leg B (relay addresses), kept for failover.
    pub offer: Option<Bytes>,
    /// The last SDP Tandem sent to leg B (relay addresses) and the last
    /// one leg B sent: what a new media server is offered on resume. Set
    /// through [`Call::set_b_local_sdp`] and [`Call::set_b_remote_sdp`].
    pub b_local_sdp: Option<Bytes>,
    pub b_remote_sdp: Option<Bytes>,
    /// Whether those hold the stream (any direction but sendrecv): such a
    /// call is quiet on purpose. Derived from the two SDPs when either is
    /// set, because the media-silence check reads it for every call
    /// twenty times a second.
    pub b_held: bool,
    /// Whether each of the two (local, remote) holds, as worked out here
    /// when it was set: setting one SDP then parses only that one (each
    /// parse was ~4,000 instructions, three a call). Not replicated: a
    /// standby's is None, and its next setting parses both.
    #[serde(skip)]
    pub b_sides_held: Option<[bool; 2]>,
    /// Set while the call is being moved to another media server. Boxed:
    /// a move is rare and short, and inline it would make every call 110
    /// bytes larger for its whole life (serde writes a box as its content,
    /// so the replicated record is unchanged).
    pub resuming: Option<Box<Resuming>>,
    /// How many times the call moved to another media server.
    pub resumes: u32,
    /// How many of those moves the operator asked for (`tandem move`),
    /// not a failure: the CDR's move mark.
    #[serde(default)]
    pub moves: u32,
    /// A call to a registered AOR while its contacts ring.
    #[serde(default)]
    pub forking: Option<Box<Forking>>,
    /// When the INVITE arrived, for the setup latency (local clock only).
    #[serde(skip, default = "Instant::now")]
    pub started: Instant,
    /// What the call's CDR tells beyond its legs: members used, resumes,
    /// takeovers (replicated, so a standby's CDR tells the whole story).
    #[serde(default)]
    pub history: CallHistory,
}

/// At most this many entries in each list of a [`CallHistory`]: a call on
/// hold retrying its resume every second for minutes must not grow its
/// record (and its replication frame) without bound. Beyond it the
/// entries in the middle go (counted in `dropped`): the first ones and the
/// latest ones are what a reader needs.
pub const HISTORY_MAX: usize = 16;

/// A call's story for its CDR, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHistory {
    /// Every member (or phone) the call used, in order.
    pub members: Vec<MemberUse>,
    /// Every attempt to move the call to another media server.
    pub resumes: Vec<ResumeMark>,
    /// Every takeover that adopted the call on another node.
    pub takeovers: Vec<TakeoverMark>,
    /// The Reason header of the BYE that ended the call (the hanging-up
    /// party's), if it had one.
    pub reason_header: Option<String>,
    /// Entries not kept (beyond [`HISTORY_MAX`] in a list).
    pub dropped: u32,
}

/// One member a call used: when its INVITE went out, when it answered,
/// when and why the call left it (`failed`, `resumed_away`, `call_ended`,
/// or what another part of Tandem names, e.g. a manual move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUse {
    pub member: String,
    pub tried_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    pub left_at: Option<UnixMillis>,
    pub why: Option<String>,
}

/// A resume attempt: when it ended, from which member to which, and how
/// (`ok`, `failed`, `no_server`, `gave_up`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeMark {
    pub at: UnixMillis,
    pub from: String,
    pub to: String,
    pub outcome: String,
}

/// The call was adopted at a takeover: the new active node's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverMark {
    pub at: UnixMillis,
    pub epoch: u64,
}

impl CallHistory {
    /// Leg B's INVITE went to `member`.
    pub fn tried(&mut self, member: &str, at: UnixMillis) {
        let entry = MemberUse {
            member: member.to_owned(),
            tried_at: at,
            answered_at: None,
            left_at: None,
            why: None,
        };
        push_bounded(&mut self.members, entry, &mut self.dropped);
    }

    /// The member tried last answered.
    pub fn answered(&mut self, at: UnixMillis) {
        if let Some(m) = self.members.last_mut() {
            m.answered_at.get_or_insert(at);
        }
    }

    /// The call left the member tried last (if it has not left it yet).
    pub fn left(&mut self, at: UnixMillis, why: &str) {
        if let Some(m) = self.members.last_mut().filter(|m| m.left_at.is_none()) {
            m.left_at = Some(at);
            m.why = Some(why.to_owned());
        }
    }

    pub fn resumed(&mut self, mark: ResumeMark) {
        push_bounded(&mut self.resumes, mark, &mut self.dropped);
    }

    pub fn taken_over(&mut self, mark: TakeoverMark) {
        push_bounded(&mut self.takeovers, mark, &mut self.dropped);
    }
}

fn push_bounded<T>(list: &mut Vec<T>, entry: T, dropped: &mut u32) {
    if list.len() >= HISTORY_MAX {
        list.remove(HISTORY_MAX / 2);
        *dropped = dropped.saturating_add(1);
    }
    push_exact(list, entry);
}

/// Pushes without the spare room `Vec::push` leaves (it starts at 4
/// entries): a call's lists mostly hold one entry for the call's whole
/// life, and the spare 3 would cost every held call. At most
/// [`HISTORY_MAX`] entries, so growing one at a time costs little.
pub(crate) fn push_exact<T>(list: &mut Vec<T>, entry: T) {
    list.reserve_exact(1);
    list.push(entry);
}

/// The ACK owed to `leg` for its 2xx (CSeq `seq`) to a late-offer
/// re-INVITE, sent when the other leg ACKs ours (CSeq `asked_seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateAck {
    pub leg: Leg,
    pub seq: u32,
    pub asked_seq: u32,
}

/// A call on its way from a failed media server to another one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resuming {
    /// The member the call was on when it failed.
    pub from: usize,
    /// What gave the failure away (`keepalive`, `media_silence`,
    /// `in_dialog_408`, …).
    pub reason: String,
    pub detected_at: UnixMillis,
    /// Members tried for this resume (never tried again).
    pub tried: Vec<usize>,
    /// With `on_no_server = hold`: keep retrying until then.
    pub hold_until: Option<UnixMillis>,
    /// The operator moves the call (`tandem move`): its old member has
    /// not failed.
    #[serde(default)]
    pub planned: bool,
    /// The member the operator asked for (`tandem move --to`), tried
    /// first.
    #[serde(default)]
    pub to: Option<usize>,
    /// When the failure was detected, for the resume latency (local clock).
    #[serde(skip, default = "Instant::now")]
    pub detected: Instant,
}

impl Call {
    /// The SDP Tandem sent to leg B last.
    pub fn set_b_local_sdp(&mut self, sdp: Bytes) {
        let [_, remote] = self.b_sides();
        self.set_b_held([holds(&sdp), remote]);
        self.b_local_sdp = Some(sdp);
    }

    /// The SDP leg B sent last.
    pub fn set_b_remote_sdp(&mut self, sdp: Bytes) {
        let [local, _] = self.b_sides();
        self.set_b_held([local, holds(&sdp)]);
        self.b_remote_sdp = Some(sdp);
    }

    /// Whether leg B's local and remote SDP hold: as worked out when they
    /// were set, or (a standby's call) from the SDPs.
    fn b_sides(&self) -> [bool; 2] {
        let held = |sdp: &Option<Bytes>| sdp.as_deref().is_some_and(holds);
        self.b_sides_held
            .unwrap_or_else(|| [held(&self.b_local_sdp), held(&self.b_remote_sdp)])
    }

    fn set_b_held(&mut self, sides: [bool; 2]) {
        self.b_sides_held = Some(sides);
        self.b_held = sides.contains(&true);
    }
}

fn holds(sdp: &[u8]) -> bool {
    super::survival::on_hold(Some(sdp), None)
}
