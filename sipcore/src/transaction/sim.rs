//! Test harness: runs a machine against a virtual clock and records every
//! action with the time it was returned.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    Action, ClientEvent, ClientInvite, ClientNonInvite, ServerEvent, ServerInvite, ServerNonInvite,
    Timer,
};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) trait Machine {
    type Event: Copy;
    fn handle(&mut self, event: Self::Event) -> Vec<Action>;
    fn timer_event(timer: Timer) -> Self::Event;
}

macro_rules! machine {
    ($ty:ty, $ev:ty, $ctor:path) => {
        impl Machine for $ty {
            type Event = $ev;
            fn handle(&mut self, event: $ev) -> Vec<Action> {
                <$ty>::handle(self, event)
            }
            fn timer_event(timer: Timer) -> $ev {
                $ctor(timer)
            }
        }
    };
}

machine!(ClientInvite, ClientEvent, ClientEvent::TimerFired);
machine!(ClientNonInvite, ClientEvent, ClientEvent::TimerFired);
machine!(ServerInvite, ServerEvent, ServerEvent::TimerFired);
machine!(ServerNonInvite, ServerEvent, ServerEvent::TimerFired);

pub(crate) struct Sim<M> {
    pub tx: M,
    now: Duration,
    seq: u64,
    /// Pending timers: deadline and start order (to break ties).
    timers: BTreeMap<Timer, (Duration, u64)>,
    pub log: Vec<(Duration, Action)>,
    terminated: bool,
}

impl<M: Machine> Sim<M> {
    pub fn new((tx, actions): (M, Vec<Action>)) -> Self {
        let mut s = Sim {
            tx,
            now: Duration::ZERO,
            seq: 0,
            timers: BTreeMap::new(),
            log: vec![],
            terminated: false,
        };
        s.apply(&actions);
        s
    }

    fn apply(&mut self, actions: &[Action]) {
        for &a in actions {
            assert!(!self.terminated, "action {a:?} after Terminated");
            self.log.push((self.now, a));
            match a {
                Action::StartTimer { timer, after } => {
                    self.seq += 1;
                    self.timers.insert(timer, (self.now + after, self.seq));
                }
                Action::CancelTimer(timer) => {
                    self.timers.remove(&timer);
                }
                Action::Terminated => {
                    self.timers.clear();
                    self.terminated = true;
                }
                _ => {}
            }
        }
    }

    /// Fires every timer due up to `until`, in deadline order, then sets the
    /// clock to `until`.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next = self
                .timers
                .iter()
                .map(|(&t, &(at, seq))| (at, seq, t))
                .min();
            match next {
                Some((at, _, timer)) if at <= until => {
                    self.timers.remove(&timer);
                    self.now = at;
                    let actions = self.tx.handle(M::timer_event(timer));
                    self.apply(&actions);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Handles `event` now.
    pub fn event(&mut self, event: M::Event) -> Vec<Action> {
        let actions = self.tx.handle(event);
        if self.terminated {
            assert!(actions.is_empty(), "actions {actions:?} after Terminated");
        }
        self.apply(&actions);
        actions
    }

    /// Runs the clock to `at`, then handles `event`.
    pub fn event_at(&mut self, at: Duration, event: M::Event) -> Vec<Action> {
        self.run_until(at);
        self.event(event)
    }

    /// The times (ms) at which `action` was returned.
    pub fn times_of(&self, action: Action) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(t, _)| t.as_millis() as u64)
            .collect()
    }

    /// The pending timers, sorted.
    pub fn pending(&self) -> Vec<Timer> {
        self.timers.keys().copied().collect()
    }
}
