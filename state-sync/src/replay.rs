//! Replay checks on opened frames (see [`crate::frame::Seal`]): plain
//! data, called only after a frame authenticated, so a stranger cannot
//! move them.
//!
//! * A stream connection's frames count up from 1 under keys of that
//!   connection only: a frame whose counter is not above the last one is
//!   dropped ([`StreamCounter`]).
//! * Heartbeats count up within a sender's boot session. A peer that
//!   restarts comes back with a new random session and its counter from 1,
//!   which is accepted at once (it must not be locked out); the session it
//!   replaced is remembered as retired, so heartbeats recorded from an
//!   earlier boot (of a node that has since died, say) are never accepted
//!   again ([`SessionGuard`]).

use std::collections::VecDeque;

use crate::frame::{FrameError, Seal};

/// Retired sessions remembered per link: a peer restarting this many
/// times while we run is unusual; older ones are forgotten (bounded memory).
pub const RETIRED_SESSIONS: usize = 16;

/// The last counter accepted on one direction of a stream connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCounter {
    last: u64,
}

impl StreamCounter {
    /// Accepts `counter` if it is above every one accepted before.
    pub fn accept(&mut self, counter: u64) -> Result<(), FrameError> {
        if counter <= self.last {
            return Err(FrameError::Replayed {
                counter,
                last: self.last,
            });
        }
        self.last = counter;
        Ok(())
    }
}

/// The peer's heartbeat session on one link and the sessions it replaced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionGuard {
    current: Option<(u64, u64)>,
    retired: VecDeque<u64>,
}

impl SessionGuard {
    /// Accepts an authenticated heartbeat's seal, or says why not.
    pub fn accept(&mut self, seal: Seal) -> Result<(), FrameError> {
        match self.current {
            Some((session, last)) if session == seal.session && seal.counter <= last => {
                return Err(FrameError::Replayed {
                    counter: seal.counter,
                    last,
                });
            }
            Some((session, _)) if session == seal.session => {}
            Some((session, _)) => {
                if self.retired.contains(&seal.session) {
                    return Err(FrameError::Replayed {
                        counter: seal.counter,
                        last: u64::MAX,
                    });
                }
                // The peer restarted: its new session replaces the old.
                if self.retired.len() == RETIRED_SESSIONS {
                    self.retired.pop_front();
                }
                self.retired.push_back(session);
            }
            None => {}
        }
        self.current = Some((seal.session, seal.counter));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
