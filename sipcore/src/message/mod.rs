//! SIP messages.
