//! Failed authentications per (source address, user): after
//! `max_failures` in `window`, that pair is ignored for `ban` — other users
//! behind the same NAT address are not. A table of fixed size (LRU), so a
//! scanner cycling user names cannot grow it. SKELETON.
#![allow(unused_variables)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub struct AuthFailures {}

impl AuthFailures {
    pub fn new(max_failures: u32, window: Duration, ban: Duration, capacity: usize) -> Self {
        todo!()
    }

    /// Whether (ip, user) is being ignored at `now`.
    pub fn banned(&mut self, ip: IpAddr, user: &str, now: Instant) -> bool {
        todo!()
    }

    /// Notes a failure; true when it starts a ban.
    pub fn failed(&mut self, ip: IpAddr, user: &str, now: Instant) -> bool {
        todo!()
    }

    /// A success clears the pair's failures.
    pub fn succeeded(&mut self, ip: IpAddr, user: &str) {
        todo!()
    }
}
