//! SDP rewriting.
