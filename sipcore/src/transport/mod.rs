//! SIP transports (RFC 3261 §18).
