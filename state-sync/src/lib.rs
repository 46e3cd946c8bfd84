//! Replication of call state to a standby Tandem. Not built yet: the hot-standby issue adds it.
#![forbid(unsafe_code)]
