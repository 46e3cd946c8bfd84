//! The call store: every call and every index onto it, kept in step in
//! one place.
//!
//! Before it, the calls and four maps onto them (leg A and leg B Call-IDs,
//! client transactions, 2xx awaiting their ACK) were separate fields of
//! the engine, updated by hand in six files; one missed update left an
//! index pointing at nothing, and the next `calls[&id]` panicked the one
//! task that carries every call. Here, a call enters through [`insert`]
//! and leaves through [`remove`], which take every index with them;
//! leg B's Call-ID changes only through [`set_leg_b`] and
//! [`unindex_leg_b`]; every lookup answers `Option`. The store also notes
//! which calls changed, so that replication ships exactly those.
//!
//! [`insert`]: CallStore::insert
//! [`remove`]: CallStore::remove
//! [`set_leg_b`]: CallStore::set_leg_b
//! [`unindex_leg_b`]: CallStore::unindex_leg_b
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use sipcore::message::Message;
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::Target;

use super::call::{Call, Leg, LegB};
use crate::shard::tally::CallTally;
use crate::{Hasher, Map, Set};

/// What each of our client transactions is for.
#[derive(Debug, Clone)]
pub enum ClientRole {
    /// Leg B's initial INVITE for `call`.
    LegBInvite { call: u64 },
    /// One of the INVITEs of a call to a registered AOR (a fork), sent to
    /// `target`: a 2xx after the call is gone is ACKed and hung up there.
    Fork { call: u64, target: Target },
    /// A request forwarded to leg `to` of `call`; its final response is
    /// relayed to the server transaction `origin` on the other leg.
    Forwarded {
        call: u64,
        to: Leg,
        origin: ServerKey,
        request: Box<Message>,
    },
    /// A forwarded request whose call ended before it was answered: a
    /// failure still gets the origin a 408, an answer is dropped.
    Orphaned {
        origin: ServerKey,
        request: Box<Message>,
    },
    /// A BYE or CANCEL Tandem sent on its own; the answer needs no action.
    Own,
    /// An OPTIONS keepalive to pool member `member`.
    Probe { member: usize },
    /// An OPTIONS of WAN `wan`'s own to its probe target `target`
    /// (indexes).
    WanProbe { wan: usize, target: usize },
    /// A re-INVITE to leg A after a resume changed the codec.
    Reoffer { call: u64 },
    /// A REGISTER to the central registrar for AOR `aor` (dual
    /// registration).
    Upstream { aor: String },
}

impl ClientRole {
    /// The call this transaction belongs to, if any.
    pub fn call(&self) -> Option<u64> {
        match self {
            ClientRole::LegBInvite { call }
            | ClientRole::Fork { call, .. }
            | ClientRole::Forwarded { call, .. }
            | ClientRole::Reoffer { call } => Some(*call),
            ClientRole::Orphaned { .. }
            | ClientRole::Own
            | ClientRole::Probe { .. }
            | ClientRole::WanProbe { .. }
            | ClientRole::Upstream { .. } => None,
        }
    }
}

/// A call could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// A call with this id is in the store.
    Id(u64),
    /// A call with this leg-A or leg-B Call-ID is in the store.
    CallId(String),
}

#[derive(Debug)]
pub struct CallStore {
    /// Boxed: a call is over a kilobyte, and the map keeps spare slots
    /// (a quarter to a half of them empty); boxed, a spare slot is 8 bytes.
    calls: Map<u64, Box<Call>>,
    /// Leg A Call-ID → call (every call has one).
    by_a: CallIdIndex,
    /// Leg B Call-ID → call (a call has none while its leg B is being
    /// replaced).
    by_b: CallIdIndex,
    clients: Map<ClientKey, ClientRole>,
    /// The client transactions of each call (so a call's end finds them
    /// without a scan).
    call_clients: Map<u64, Vec<ClientKey>>,
    /// 2xx responses to INVITEs awaiting their ACK: (call, leg) → CSeq.
    unacked: Map<(u64, Leg), u32>,
    /// Calls by source (trunk) name, for the per-trunk call caps.
    per_source: Map<String, usize>,
    /// With shards: the node's count, kept in step with `per_source`
    /// here, where calls enter and leave (the caps are the node's).
    tally: Option<Arc<CallTally>>,
    /// Calls changed since the last `take_changed`; None when nothing is
    /// replicated (no cost then).
    changed: Option<Set<u64>>,
    next_id: u64,
    /// The ids this store gives out: `first`, `first + step`, … (one
    /// space per shard: the shards share the relay, whose sessions are
    /// named by call id). (1, 1) alone.
    id_space: (u64, u64),
}

/// One leg's Call-ID index: Call-ID → call. It holds only call ids;
/// the Call-ID is the call's own (`a.call_id` or `b.call_id`), hashed and
/// compared there. A `HashMap<String, u64>` kept a copy of each Call-ID
/// and 32 bytes a slot, about two slots a held call with the spare ones:
/// here a slot is 8 bytes and there is no copy (issue 15, 4 KiB a held
/// call). The store keeps it in step: an id is in it only while its call
/// is in `calls` with the Call-ID it was indexed by.
#[derive(Debug)]
struct CallIdIndex {
    leg: Leg,
    ids: HashTable<u64>,
    hasher: Hasher,
}

impl CallIdIndex {
    fn new(leg: Leg) -> CallIdIndex {
        CallIdIndex {
            leg,
            ids: HashTable::new(),
            hasher: Hasher::default(),
        }
    }

    /// The indexed Call-ID of call `id` ("" for a call not in `calls`,
    /// which the store never indexes).
    fn call_id(leg: Leg, calls: &Map<u64, Box<Call>>, id: u64) -> &str {
        calls.get(&id).map_or("", |c| match leg {
            Leg::A => &c.a.call_id,
            Leg::B => &c.b.call_id,
        })
    }

    fn hash(&self, call_id: &str) -> u64 {
        self.hasher.hash_one(call_id)
    }

    fn get(&self, calls: &Map<u64, Box<Call>>, call_id: &str) -> Option<u64> {
        let leg = self.leg;
        self.ids
            .find(self.hash(call_id), |&id| {
                CallIdIndex::call_id(leg, calls, id) == call_id
            })
            .copied()
    }

    /// Indexes call `id` (in `calls`, not indexed yet) by its Call-ID.
    fn insert(&mut self, calls: &Map<u64, Box<Call>>, id: u64) {
        let leg = self.leg;
        let hash = self.hash(CallIdIndex::call_id(leg, calls, id));
        let hasher = &self.hasher;
        self.ids.insert_unique(hash, id, |&other| {
            hasher.hash_one(CallIdIndex::call_id(leg, calls, other))
        });
    }

    /// Takes call `id`, indexed by `call_id`, out. False when it was not
    /// indexed by it.
    fn remove(&mut self, call_id: &str, id: u64) -> bool {
        match self
            .ids
            .find_entry(self.hash(call_id), |&other| other == id)
        {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn clear(&mut self) {
        self.ids.clear();
    }

    #[cfg(test)]
    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ids.iter().copied()
    }
}

impl CallStore {
    pub fn new(track_changes: bool) -> CallStore {
        CallStore {
            calls: Map::default(),
            by_a: CallIdIndex::new(Leg::A),
            by_b: CallIdIndex::new(Leg::B),
            clients: Map::default(),
            call_clients: Map::default(),
            unacked: Map::default(),
            per_source: Map::default(),
            tally: None,
            changed: track_changes.then(Set::default),
            next_id: 1,
            id_space: (1, 1),
        }
    }

    fn mark(&mut self, id: u64) {
        if let Some(c) = self.changed.as_mut() {
            c.insert(id);
        }
    }

    /// A fresh call id (never one in use or adopted).
    pub fn allocate_id(&mut self) -> u64 {
        let (first, step) = self.id_space;
        let mut id = self.next_id.max(first);
        let past = (id - first) % step;
        if past != 0 {
            id += step - past;
        }
        self.next_id = id + 1;
        id
    }

    /// Gives out only `first`, `first + step`, … from now on.
    pub fn set_id_space(&mut self, first: u64, step: u64) {
        self.id_space = (first.max(1), step.max(1));
    }

    /// Adds a call with its Call-ID indexes. Leg B is indexed when it has
    /// a Call-ID already.
    pub fn insert(&mut self, call: Call) -> Result<(), Conflict> {
        let id = call.id;
        self.insert_unchanged(call)?;
        self.mark(id);
        Ok(())
    }

    /// Adds a call the standby already has as it is (adopted at a
    /// takeover: the node's journal starts from the same copy).
    pub fn insert_unchanged(&mut self, call: Call) -> Result<(), Conflict> {
        let id = call.id;
        if self.calls.contains_key(&id) {
            return Err(Conflict::Id(id));
        }
        if self.by_a.get(&self.calls, &call.a.call_id).is_some() {
            return Err(Conflict::CallId(call.a.call_id.clone()));
        }
        let b = &call.b.call_id;
        if !b.is_empty() && (self.by_b.get(&self.calls, b).is_some() || *b == call.a.call_id) {
            return Err(Conflict::CallId(b.clone()));
        }
        self.next_id = self.next_id.max(id.saturating_add(1));
        *self
            .per_source
            .entry(call.a.source_name.clone())
            .or_insert(0) += 1;
        if let Some(tally) = &self.tally {
            tally.add(&call.a.source_name);
        }
        let index_b = !call.b.call_id.is_empty();
        // The call first: the indexes read its Call-IDs.
        self.calls.insert(id, Box::new(call));
        self.by_a.insert(&self.calls, id);
        if index_b {
            self.by_b.insert(&self.calls, id);
        }
        Ok(())
    }

    /// Removes a call and every index entry that names it. Its client
    /// transactions still running lose their call: a forwarded request
    /// becomes orphaned (its origin still gets an answer should it fail),
    /// the rest are forgotten (their answers arrive as strays).
    pub fn remove(&mut self, id: u64) -> Option<Call> {
        let call = *self.calls.remove(&id)?;
        self.mark(id);
        if let Some(n) = self.per_source.get_mut(&call.a.source_name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&call.a.source_name);
            }
        }
        if let Some(tally) = &self.tally {
            tally.remove(&call.a.source_name);
        }
        self.by_a.remove(&call.a.call_id, id);
        self.by_b.remove(&call.b.call_id, id);
        self.unacked.remove(&(id, Leg::A));
        self.unacked.remove(&(id, Leg::B));
        for key in self.call_clients.remove(&id).unwrap_or_default() {
            if let Some(ClientRole::Forwarded {
                origin, request, ..
            }) = self.clients.remove(&key)
            {
                self.clients
                    .insert(key, ClientRole::Orphaned { origin, request });
            }
        }
        Some(call)
    }

    pub fn get(&self, id: u64) -> Option<&Call> {
        self.calls.get(&id).map(|c| &**c)
    }

    /// The call, noted as changed. Its Call-IDs must not be changed
    /// through this (see [`set_leg_b`](Self::set_leg_b)).
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Call> {
        if self.calls.contains_key(&id) {
            self.mark(id);
        }
        self.calls.get_mut(&id).map(|c| &mut **c)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.calls.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Counts this store's calls in `tally` too, from now on (with the
    /// calls it holds now).
    pub fn set_tally(&mut self, tally: Arc<CallTally>) {
        for call in self.calls.values() {
            tally.add(&call.a.source_name);
        }
        self.tally = Some(tally);
    }

    /// The node's count, when shards share one.
    pub fn tally(&self) -> Option<&CallTally> {
        self.tally.as_deref()
    }

    /// Calls from the source (trunk) named `source`.
    pub fn calls_from(&self, source: &str) -> usize {
        self.per_source.get(source).copied().unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().map(|c| &**c)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Call)> {
        self.calls.iter().map(|(id, c)| (id, &**c))
    }

    /// The call and leg a Call-ID belongs to.
    pub fn find(&self, call_id: &str) -> Option<(u64, Leg)> {
        if let Some(id) = self.by_a.get(&self.calls, call_id) {
            return Some((id, Leg::A));
        }
        self.by_b.get(&self.calls, call_id).map(|id| (id, Leg::B))
    }

    /// Whether a call has this leg-A Call-ID.
    pub fn has_leg_a(&self, call_id: &str) -> bool {
        self.by_a.get(&self.calls, call_id).is_some()
    }

    /// Replaces a call's leg B (a new INVITE to a member): the old leg-B
    /// Call-ID leaves the index, the new one enters it. False when the
    /// call does not exist or the new Call-ID is taken.
    pub fn set_leg_b(&mut self, id: u64, leg: LegB) -> bool {
        if !self.calls.contains_key(&id)
            || (!leg.call_id.is_empty()
                && (self
                    .by_b
                    .get(&self.calls, &leg.call_id)
                    .is_some_and(|o| o != id)
                    || self.by_a.get(&self.calls, &leg.call_id).is_some()))
        {
            return false;
        }
        self.unindex_leg_b(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let index_b = !leg.call_id.is_empty();
        call.b = leg;
        if index_b {
            self.by_b.insert(&self.calls, id);
        }
        self.mark(id);
        true
    }

    /// Takes leg B's Call-ID out of the index (leg B failed and is being
    /// replaced: its messages are no longer this call's). Returns it.
    pub fn unindex_leg_b(&mut self, id: u64) -> Option<String> {
        let b = &self.calls.get(&id)?.b.call_id;
        self.by_b.remove(b, id).then(|| b.clone())
    }

    // ---- client transactions ----

    /// Notes what a new client transaction is for.
    pub fn bind_client(&mut self, key: ClientKey, role: ClientRole) {
        if let Some(old) = self.clients.remove(&key) {
            self.detach(&key, &old);
        }
        if let Some(call) = role.call() {
            if !self.calls.contains_key(&call) {
                // The call ended before its request went out: nothing
                // will want the answer.
                return;
            }
            self.call_clients.entry(call).or_default().push(key.clone());
        }
        self.clients.insert(key, role);
    }

    pub fn client(&self, key: &ClientKey) -> Option<&ClientRole> {
        self.clients.get(key)
    }

    /// Forgets a client transaction (answered, failed or ended).
    pub fn unbind_client(&mut self, key: &ClientKey) -> Option<ClientRole> {
        let role = self.clients.remove(key)?;
        self.detach(key, &role);
        Some(role)
    }

    fn detach(&mut self, key: &ClientKey, role: &ClientRole) {
        if let Some(call) = role.call() {
            if let Some(keys) = self.call_clients.get_mut(&call) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.call_clients.remove(&call);
                }
            }
        }
    }

    // ---- 2xx awaiting ACK ----

    /// A 2xx with CSeq `seq` went to leg `leg`; its ACK is awaited.
    pub fn await_ack(&mut self, id: u64, leg: Leg, seq: u32) {
        if self.calls.contains_key(&id) {
            self.unacked.insert((id, leg), seq);
        }
    }

    /// Whether the 2xx with CSeq `seq` on `leg` still awaits its ACK.
    pub fn awaits_ack(&self, id: u64, leg: Leg, seq: u32) -> bool {
        self.unacked.get(&(id, leg)) == Some(&seq)
    }

    /// The ACK (or the end of waiting for it) for leg `leg`'s 2xx.
    pub fn acked(&mut self, id: u64, leg: Leg) {
        self.unacked.remove(&(id, leg));
    }

    // ---- replication ----

    /// Marks a call changed although nothing in it was touched (its relay
    /// session moved on, say).
    pub fn touch(&mut self, id: u64) {
        if self.calls.contains_key(&id) {
            self.mark(id);
        }
    }

    /// The calls changed since the last call (present or removed).
    pub fn take_changed(&mut self) -> Vec<u64> {
        match self.changed.as_mut() {
            Some(c) if !c.is_empty() => c.drain().collect(),
            _ => Vec::new(),
        }
    }

    /// Forgets every call, index entry and client transaction without
    /// marking anything (the other node serves them now).
    pub fn clear_silently(&mut self) -> Vec<Call> {
        if let Some(c) = self.changed.as_mut() {
            c.clear();
        }
        self.by_a.clear();
        self.by_b.clear();
        self.per_source.clear();
        if let Some(tally) = &self.tally {
            for call in self.calls.values() {
                tally.remove(&call.a.source_name);
            }
        }
        self.unacked.clear();
        self.call_clients.clear();
        self.clients.clear();
        self.calls.drain().map(|(_, c)| *c).collect()
    }

    /// Checks that every index agrees with the calls; the first
    /// disagreement, described. For tests.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        for id in self.by_a.ids() {
            match self.calls.get(&id) {
                Some(c) if self.by_a.get(&self.calls, &c.a.call_id) == Some(id) => {}
                _ => return Err(format!("by_a → {id}: no such call found by its Call-ID")),
            }
        }
        for (id, c) in &self.calls {
            if c.id != *id {
                return Err(format!("call {} stored as {id}", c.id));
            }
            if self.by_a.get(&self.calls, &c.a.call_id) != Some(*id) {
                return Err(format!("call {id}: leg A Call-ID not indexed"));
            }
            if *id >= self.next_id {
                return Err(format!("call {id} not below next id {}", self.next_id));
            }
        }
        for (source, n) in &self.per_source {
            let counted = self
                .calls
                .values()
                .filter(|c| &c.a.source_name == source)
                .count();
            if counted != *n || *n == 0 {
                return Err(format!("{n} calls counted from {source}, {counted} there"));
            }
        }
        for id in self.by_b.ids() {
            match self.calls.get(&id) {
                Some(c) if self.by_b.get(&self.calls, &c.b.call_id) == Some(id) => {}
                _ => return Err(format!("by_b → {id}: no such call found by its Call-ID")),
            }
        }
        for (key, role) in &self.clients {
            if let Some(call) = role.call() {
                if !self.calls.contains_key(&call) {
                    return Err(format!("client {key:?} names ended call {call}"));
                }
                if !self
                    .call_clients
                    .get(&call)
                    .is_some_and(|ks| ks.contains(key))
                {
                    return Err(format!("client {key:?} missing from call {call}'s list"));
                }
            }
        }
        for (call, keys) in &self.call_clients {
            if keys.is_empty() {
                return Err(format!("call {call}: empty client list kept"));
            }
            for k in keys {
                if self.clients.get(k).and_then(ClientRole::call) != Some(*call) {
                    return Err(format!("call {call} lists client {k:?} not bound to it"));
                }
            }
        }
        for (id, _) in self.unacked.keys() {
            if !self.calls.contains_key(id) {
                return Err(format!("unacked 2xx of ended call {id}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
