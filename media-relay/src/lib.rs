//! RTP/RTCP media relay for Tandem. Not built yet: the call-path issue adds it.
#![forbid(unsafe_code)]
