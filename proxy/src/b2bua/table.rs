//! The engine's call table. It notes which calls changed (any mutable
//! access, insert or removal), so that the replication step ships exactly
//! those to the standby without every flow having to remember to.

use std::collections::{HashMap, HashSet};

use super::call::Call;

#[derive(Default)]
pub struct CallTable {
    calls: HashMap<u64, Call>,
    /// Changed since the last `take_changed`; None when nothing is
    /// replicated (no cost then).
    changed: Option<HashSet<u64>>,
}

impl CallTable {
    pub fn new(track_changes: bool) -> CallTable {
        CallTable {
            calls: HashMap::new(),
            changed: track_changes.then(HashSet::new),
        }
    }

    fn mark(&mut self, id: u64) {
        if let Some(c) = self.changed.as_mut() {
            c.insert(id);
        }
    }

    pub fn get(&self, id: &u64) -> Option<&Call> {
        self.calls.get(id)
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Call> {
        if self.calls.contains_key(id) {
            self.mark(*id);
        }
        self.calls.get_mut(id)
    }

    pub fn insert(&mut self, id: u64, call: Call) -> Option<Call> {
        self.mark(id);
        self.calls.insert(id, call)
    }

    /// Inserts a call the standby already has as it is (adopted at a
    /// takeover: the node's journal starts from the same copy).
    pub fn insert_unchanged(&mut self, id: u64, call: Call) -> Option<Call> {
        self.calls.insert(id, call)
    }

    pub fn remove(&mut self, id: &u64) -> Option<Call> {
        let c = self.calls.remove(id);
        if c.is_some() {
            self.mark(*id);
        }
        c
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.calls.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Call)> {
        self.calls.iter()
    }

    /// Marks a call changed although nothing in the table was touched
    /// (its relay session moved on, say).
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

    /// Forgets every call without marking anything (the other node serves
    /// them now).
    pub fn clear_silently(&mut self) -> Vec<Call> {
        if let Some(c) = self.changed.as_mut() {
            c.clear();
        }
        self.calls.drain().map(|(_, c)| c).collect()
    }
}

impl<'a> IntoIterator for &'a CallTable {
    type Item = (&'a u64, &'a Call);
    type IntoIter = std::collections::hash_map::Iter<'a, u64, Call>;

    fn into_iter(self) -> Self::IntoIter {
        self.calls.iter()
    }
}

impl std::ops::Index<&u64> for CallTable {
    type Output = Call;

    fn index(&self, id: &u64) -> &Call {
        &self.calls[id]
    }
}
