//! Frames of the replication channel, authenticated with HMAC-SHA256 over
//! a shared secret.
//!
//! Like a SIP stream, a TCP byte stream is cut into frames in two steps:
//! [`check`] tells whether a buffer holds a whole frame (and how long it
//! is) without allocating, [`decode`] then verifies its MAC and parses it.
//! A peer that does not know the secret cannot produce a frame that
//! decodes; a frame changed in transit does not decode either.
//!
//! Layout (big endian): magic `TSYN`, format version (1 byte), frame type
//! (1 byte), epoch (8), body length (4), body, HMAC-SHA256 of everything
//! before it (32). The epoch of the sender's role rides on every frame so
//! that a node learns at once of a takeover it missed.

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::record::{Change, Record, RecordId};

const MAGIC: &[u8; 4] = b"TSYN";
/// Format of the frame layout itself (not of the records).
pub const FORMAT: u8 = 1;
const HEADER: usize = 4 + 1 + 1 + 8 + 4;
const MAC: usize = 32;
/// Largest body accepted: a record carries one call's state, far below.
pub const MAX_BODY: usize = 1 << 20;

type HmacSha256 = Hmac<Sha256>;

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

/// Why bytes are not a frame (yet).
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
}

/// A frame with the epoch of its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub epoch: u64,
    pub frame: Frame,
}

/// Whether `buf` starts with a whole frame; its length if so. Cheap: no
/// MAC, no parsing.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let n = buf.len().min(4);
    if buf[..n] != MAGIC[..n] {
        return Err(FrameError::BadMagic);
    }
    if buf.len() < HEADER {
        return Err(FrameError::Incomplete);
    }
    if buf[4] != FORMAT {
        return Err(FrameError::Format(buf[4]));
    }
    let body = u32::from_be_bytes(buf[14..18].try_into().expect("4 bytes")) as usize;
    if body > MAX_BODY {
        return Err(FrameError::TooLarge(body));
    }
    let total = HEADER + body + MAC;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    Ok(total)
}

/// Verifies and parses the frame at the start of `buf` (see [`check`]);
/// returns it and its length.
pub fn decode(secret: &[u8], buf: &[u8]) -> Result<(Envelope, usize), FrameError> {
    let total = check(buf)?;
    let (signed, mac) = buf[..total].split_at(total - MAC);
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(signed);
    m.verify_slice(mac).map_err(|_| FrameError::BadMac)?;
    let kind = signed[5];
    let epoch = u64::from_be_bytes(signed[6..14].try_into().expect("8 bytes"));
    let mut r = Reader(&signed[HEADER..]);
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
    Ok((Envelope { epoch, frame }, total))
}

/// The bytes of `frame`, signed with `secret`.
pub fn encode(secret: &[u8], epoch: u64, frame: &Frame) -> Bytes {
    let mut body = BytesMut::new();
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
    let mut out = BytesMut::with_capacity(HEADER + body.len() + MAC);
    out.put_slice(MAGIC);
    out.put_u8(FORMAT);
    out.put_u8(kind);
    out.put_u64(epoch);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(&out);
    out.put_slice(&m.finalize().into_bytes());
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
