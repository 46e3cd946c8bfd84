//! Frames of the replication channel: sealed (encrypted and
//! authenticated) with ChaCha20-Poly1305 under a key only the two nodes
//! hold, and numbered.
//!
//! Like a SIP stream, a TCP byte stream is cut into frames in two steps:
//! [`check`] tells whether a buffer holds a whole frame (and how long it
//! is) without allocating, [`decode`] then opens it (decrypts and checks
//! its tag) and [`parse`] reads the plaintext. A peer without the key
//! cannot produce a frame that opens, nor read one; a frame changed in
//! transit does not open either.
//!
//! Layout (big endian): magic `TSYN`, format version (1 byte), session (8),
//! counter (8), sealed length (4), then the sealed body and its 16-byte
//! tag. The header is authenticated (AEAD associated data); the AEAD nonce
//! is the counter, so a key never seals two frames with one nonce: stream
//! keys are fresh per connection and direction (see [`crate::handshake`]),
//! a heartbeat key is fresh per sender boot (`session`). The counter also
//! lets the receiver drop a replayed or reordered frame
//! ([`crate::replay`]). The plaintext is the sender's epoch (8), the frame
//! type (1) and its fields: the epoch of the sender's role rides on every
//! frame so that a node learns at once of a takeover it missed.

use bytes::{BufMut, Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use crate::record::{Change, Record, RecordId};

const MAGIC: &[u8; 4] = b"TSYN";
/// Format of the frame layout itself (not of the records). 1 was the
/// HMAC-only cleartext layout.
pub const FORMAT: u8 = 2;
const HEADER: usize = 4 + 1 + 8 + 8 + 4;
const TAG: usize = 16;
/// Largest sealed body accepted: a record carries one call's state, far below.
pub const MAX_BODY: usize = 1 << 20;
/// The messages of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Standby → active on connect: who it is, the record schema it
    /// speaks, the epoch of the active node whose changes its copy
    /// follows (`history`; 0: none) and the last sequence number it
    /// applied (None: it has nothing and needs a snapshot). Sequence
    /// numbers only mean something within one history: a copy from
    /// another epoch is always replaced by a snapshot.
    Hello {
        node: String,
        schema: u32,
        history: u64,
        last_seq: Option<u64>,
    },
    /// Active → standby: a full copy follows, reflecting the journal up to
    /// and including `seq`; deltas after it follow the snapshot.
    SnapshotBegin {
        seq: u64,
        records: u64,
    },
    SnapshotRecord(Record),
    SnapshotEnd {
        seq: u64,
    },
    /// One journalled change.
    Delta {
        seq: u64,
        change: Change,
    },
    /// Standby → active: everything up to `seq` is applied.
    Ack {
        seq: u64,
    },
    /// Datagrams each node sends its peer every ping interval on every
    /// link (main and auxiliary): who it is, the role it is in (see
    /// `role::Role::code`), the record schema it speaks and its latest
    /// sequence number. The envelope carries its epoch.
    Heartbeat {
        node: String,
        role: u8,
        priority: u8,
        schema: u32,
        seq: u64,
    },
    /// Active → standby, after the last change: "take over now" (a
    /// controlled switchover). The standby has every change up to `seq`.
    Handover {
        seq: u64,
    },
    /// Active → standby before closing: why it was turned away.
    Refused {
        reason: String,
    },
}

/// Why bytes are not a frame (yet), or not one to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("incomplete frame")]
    Incomplete,
    #[error("not a replication frame (bad magic)")]
    BadMagic,
    #[error("frame format {0} is not supported (this node speaks {FORMAT})")]
    Format(u8),
    #[error("frame body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("authentication failed (wrong shared secret or altered frame)")]
    BadMac,
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// Authentic, but its counter is not above the last one accepted: a
    /// replay (or a reordering) of an older frame.
    #[error("replayed or reordered frame (counter {counter}, last accepted {last})")]
    Replayed { counter: u64, last: u64 },
    /// The pair handshake failed (see [`crate::handshake`]).
    #[error("handshake: {0}")]
    Handshake(&'static str),
}

/// A frame with the epoch of its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub epoch: u64,
    pub frame: Frame,
}

/// Where a sealed frame sits in its sender's sequence: the sender's boot
/// session (heartbeats; 0 on a stream, whose key is per connection) and
/// the frame's counter. Trustworthy only once the frame has opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub session: u64,
    pub counter: u64,
}

/// A sealing key: 32 bytes for ChaCha20-Poly1305, one per direction of a
/// connection or per heartbeat session (derived in [`crate::handshake`]).
pub struct FrameKey(LessSafeKey);

impl FrameKey {
    pub fn new(bytes: &[u8; 32]) -> FrameKey {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .expect("32 bytes is ChaCha20-Poly1305's key length");
        FrameKey(LessSafeKey::new(key))
    }
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey(..)")
    }
}

/// The AEAD nonce of a frame: its counter. Unique per key because a key
/// belongs to one sender's one connection or boot, whose counter only
/// goes up.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Whether `buf` starts with a whole frame; its length if so. Cheap: no
/// decryption, no parsing.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let n = buf.len().min(4);
    if buf[..n] != MAGIC[..n] {
        return Err(FrameError::BadMagic);
    }
    if buf.len() > 4 && buf[4] != FORMAT {
        return Err(FrameError::Format(buf[4]));
    }
    if buf.len() < HEADER {
        return Err(FrameError::Incomplete);
    }
    let body = u32::from_be_bytes(buf[21..25].try_into().expect("4 bytes")) as usize;
    if body > MAX_BODY {
        return Err(FrameError::TooLarge(body));
    }
    if body < TAG {
        return Err(FrameError::Malformed("sealed body shorter than its tag"));
    }
    let total = HEADER + body;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    Ok(total)
}

/// The session of the (whole, see [`check`]) frame at the start of `buf`,
/// before it is opened: which heartbeat key to open it with.
pub fn session(buf: &[u8]) -> Result<u64, FrameError> {
    check(buf)?;
    Ok(u64::from_be_bytes(buf[5..13].try_into().expect("8 bytes")))
}

/// Opens (decrypts and authenticates) and parses the frame at the start
/// of `buf`; returns its seal, the frame and its length. Replays are the
/// caller's to check with the seal ([`crate::replay`]).
pub fn decode(key: &FrameKey, buf: &[u8]) -> Result<(Seal, Envelope, usize), FrameError> {
    let total = check(buf)?;
    let (header, sealed) = buf[..total].split_at(HEADER);
    let seal = Seal {
        session: u64::from_be_bytes(header[5..13].try_into().expect("8 bytes")),
        counter: u64::from_be_bytes(header[13..21].try_into().expect("8 bytes")),
    };
    let mut in_out = sealed.to_vec();
    let plain = key
        .0
        .open_in_place(nonce(seal.counter), Aad::from(header), &mut in_out)
        .map_err(|_| FrameError::BadMac)?;
    Ok((seal, parse(plain)?, total))
}

/// Parses an opened frame's plaintext: the sender's epoch, the frame type
/// and its fields. Never panics; the fuzz target's entry point.
pub fn parse(plain: &[u8]) -> Result<Envelope, FrameError> {
    let mut r = Reader(plain);
    let epoch = r.u64()?;
    let kind = r.u8()?;
    let frame = match kind {
        1 => Frame::Hello {
            node: r.string()?,
            schema: r.u32()?,
            history: r.u64()?,
            last_seq: match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(FrameError::Malformed("last_seq flag")),
            },
        },
        2 => Frame::SnapshotBegin {
            seq: r.u64()?,
            records: r.u64()?,
        },
        3 => Frame::SnapshotRecord(r.record()?),
        4 => Frame::SnapshotEnd { seq: r.u64()? },
        5 => {
            let seq = r.u64()?;
            let change = match r.u8()? {
                0 => Change::Upsert(r.record()?),
                1 => Change::Delete(RecordId {
                    kind: r.string()?,
                    key: r.string()?,
                }),
                _ => return Err(FrameError::Malformed("change type")),
            };
            Frame::Delta { seq, change }
        }
        6 => Frame::Ack { seq: r.u64()? },
        7 => Frame::Heartbeat {
            node: r.string()?,
            role: r.u8()?,
            priority: r.u8()?,
            schema: r.u32()?,
            seq: r.u64()?,
        },
        9 => Frame::Handover { seq: r.u64()? },
        8 => Frame::Refused {
            reason: r.string()?,
        },
        _ => return Err(FrameError::Malformed("frame type")),
    };
    if !r.0.is_empty() {
        return Err(FrameError::Malformed("trailing bytes"));
    }
    Ok(Envelope { epoch, frame })
}

/// The plaintext of `frame` sent in `epoch` (see [`parse`]).
pub fn serialize(epoch: u64, frame: &Frame) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u64(epoch);
    let kind_at = body.len();
    body.put_u8(0);
    let kind: u8 = match frame {
        Frame::Hello {
            node,
            schema,
            history,
            last_seq,
        } => {
            put_string(&mut body, node);
            body.put_u32(*schema);
            body.put_u64(*history);
            match last_seq {
                None => body.put_u8(0),
                Some(s) => {
                    body.put_u8(1);
                    body.put_u64(*s);
                }
            }
            1
        }
        Frame::SnapshotBegin { seq, records } => {
            body.put_u64(*seq);
            body.put_u64(*records);
            2
        }
        Frame::SnapshotRecord(rec) => {
            put_record(&mut body, rec);
            3
        }
        Frame::SnapshotEnd { seq } => {
            body.put_u64(*seq);
            4
        }
        Frame::Delta { seq, change } => {
            body.put_u64(*seq);
            match change {
                Change::Upsert(rec) => {
                    body.put_u8(0);
                    put_record(&mut body, rec);
                }
                Change::Delete(id) => {
                    body.put_u8(1);
                    put_string(&mut body, &id.kind);
                    put_string(&mut body, &id.key);
                }
            }
            5
        }
        Frame::Ack { seq } => {
            body.put_u64(*seq);
            6
        }
        Frame::Heartbeat {
            node,
            role,
            priority,
            schema,
            seq,
        } => {
            put_string(&mut body, node);
            body.put_u8(*role);
            body.put_u8(*priority);
            body.put_u32(*schema);
            body.put_u64(*seq);
            7
        }
        Frame::Handover { seq } => {
            body.put_u64(*seq);
            9
        }
        Frame::Refused { reason } => {
            put_string(&mut body, reason);
            8
        }
    };
    body[kind_at] = kind;
    body
}

/// The bytes of `frame`, sealed with `key` as number `counter` of
/// `session`.
pub fn encode(key: &FrameKey, seal: Seal, epoch: u64, frame: &Frame) -> Bytes {
    let mut plain = serialize(epoch, frame);
    let mut out = BytesMut::with_capacity(HEADER + plain.len() + TAG);
    out.put_slice(MAGIC);
    out.put_u8(FORMAT);
    out.put_u64(seal.session);
    out.put_u64(seal.counter);
    out.put_u32((plain.len() + TAG) as u32);
    let tag = key
        .0
        .seal_in_place_separate_tag(nonce(seal.counter), Aad::from(&out[..]), &mut plain[..])
        .expect("ChaCha20-Poly1305 seals any frame under MAX_BODY");
    out.put_slice(&plain);
    out.put_slice(tag.as_ref());
    out.freeze()
}

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn put_record(b: &mut BytesMut, r: &Record) {
    put_string(b, &r.kind);
    put_string(b, &r.key);
    b.put_u64(r.version);
    b.put_u32(r.data.len() as u32);
    b.put_slice(&r.data);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed("body too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&[u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, FrameError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::Malformed("string is not UTF-8"))
    }
    fn record(&mut self) -> Result<Record, FrameError> {
        Ok(Record {
            kind: self.string()?,
            key: self.string()?,
            version: self.u64()?,
            data: Bytes::copy_from_slice(self.bytes()?),
        })
    }
}

#[cfg(test)]
mod tests;
