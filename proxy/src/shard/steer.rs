//! Which shard a SIP message belongs to, and the kernel program that
//! delivers it there.
//!
//! The shard of a message is a keyed hash of its Call-ID value (FNV-1a
//! 64 from a random key, then a finaliser), modulo the number of shards.
//! `proxy/bpf/steer.c` computes the same in the kernel for every UDP
//! datagram (an SK_REUSEPORT program); [`CallIdSteering`] computes it here
//! for the Call-IDs a shard makes itself (leg B, probes), so that their
//! answers come back to it. The key is drawn at start and stays inside
//! the process: a stranger cannot choose Call-IDs that all land on one
//! shard.

use std::os::fd::{AsRawFd, BorrowedFd};

use aya::maps::{Array, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::Ebpf;

use crate::error::Error;

/// A steering failure: Tandem's own side (no program, no privilege), and
/// what a caller would get were one waiting: 503.
fn steering_error(detail: String) -> Error {
    Error::internal(503, "Service Unavailable", detail)
}

/// The program, built by build.rs (empty when clang was missing).
static STEER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.o"));

/// Longest Call-ID prefix hashed (`MAX_VALUE` in steer.c).
const MAX_VALUE: usize = 256;

/// The keyed hash of a Call-ID value: its bytes up to the first blank,
/// CR or LF, at most [`MAX_VALUE`] of them (as steer.c reads them).
pub fn call_id_hash(key: u64, value: &[u8]) -> u64 {
    let mut h = key ^ 0xcbf2_9ce4_8422_2325;
    for &c in value
        .iter()
        .take(MAX_VALUE)
        .take_while(|&&c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
    {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// What a shard needs to make Call-IDs that the kernel steers back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallIdSteering {
    pub key: u64,
    pub shards: u32,
    pub shard: u32,
}

impl CallIdSteering {
    /// The shard the kernel delivers a message with this Call-ID to.
    pub fn shard_of(&self, call_id: &str) -> u32 {
        (call_id_hash(self.key, call_id.as_bytes()) % u64::from(self.shards.max(1))) as u32
    }

    /// Whether a message with this Call-ID reaches this shard.
    pub fn owns(&self, call_id: &str) -> bool {
        self.shard_of(call_id) == self.shard
    }
}

/// The Call-ID value of a datagram as steer.c finds it: the first header
/// line named `Call-ID` or `i` (any case, blanks before the colon) in its
/// first 2048 bytes, blanks after the colon skipped. None: steer.c sends
/// it to shard 0. (Tests check the kernel's choice against it.)
#[cfg(test)]
pub fn find_call_id(datagram: &[u8]) -> Option<&[u8]> {
    let scan = &datagram[..datagram.len().min(2048)];
    let mut lines = memchr_lines(scan);
    lines.find_map(|start| {
        let rest = &scan[start..];
        let after_name = if rest.first().map(|c| c | 0x20) == Some(b'i') {
            1
        } else if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"call-id") {
            7
        } else {
            return None;
        };
        let rest = skip_blanks(&rest[after_name..]);
        let rest = rest.strip_prefix(b":")?;
        let value = skip_blanks(rest);
        (!value.is_empty() && !matches!(value[0], b'\r' | b'\n')).then_some(value)
    })
}

/// Where each line after the first begins.
#[cfg(test)]
fn memchr_lines(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    buf.iter()
        .enumerate()
        .filter(|(_, &c)| c == b'\n')
        .map(|(i, _)| i + 1)
        .filter(move |&i| i < buf.len())
}

/// steer.c skips at most 8 blanks on each side of the colon.
#[cfg(test)]
fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take(8)
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    &s[n..]
}

/// The loaded program and its maps; the sockets of every shard are added
/// as they are bound (shard 0 first: it attaches the program).
pub struct Steering {
    ebpf: Ebpf,
}

impl Steering {
    /// Loads the program for `shards` shards with hash `key`.
    pub fn load(key: u64, shards: u32) -> Result<Steering, Error> {
        if STEER_OBJECT.is_empty() {
            return Err(steering_error(
                "this build has no steering program (clang was missing at build time)".into(),
            ));
        }
        let load = |e: &dyn std::fmt::Display| {
            steering_error(format!(
                "loading the steering program (needs CAP_BPF or root): {e}"
            ))
        };
        let mut ebpf = Ebpf::load(STEER_OBJECT).map_err(|e| load(&e))?;
        {
            let map = ebpf
                .map_mut("steer_config")
                .ok_or_else(|| load(&"no steer_config map"))?;
            let mut config: Array<_, u64> = Array::try_from(map).map_err(|e| load(&e))?;
            config.set(0, key, 0).map_err(|e| load(&e))?;
            config.set(1, u64::from(shards), 0).map_err(|e| load(&e))?;
        }
        for name in ["steer_udp", "steer_tcp"] {
            let program: &mut SkReuseport = ebpf
                .program_mut(name)
                .ok_or_else(|| load(&format!("no program {name}")))?
                .try_into()
                .map_err(|e| load(&e))?;
            program.load().map_err(|e| load(&e))?;
        }
        Ok(Steering { ebpf })
    }

    /// Shard `shard`'s UDP socket: into the program's socket array; shard
    /// 0's also gets the program (for the whole reuseport group).
    pub fn add_udp(&mut self, shard: u32, socket: BorrowedFd<'_>) -> Result<(), Error> {
        self.add(shard, socket, "udp_sockets", "steer_udp", shard)
    }

    /// Shard 0's TCP listener takes every connection; the others' are
    /// never chosen.
    pub fn add_tcp(&mut self, shard: u32, socket: BorrowedFd<'_>) -> Result<(), Error> {
        if shard != 0 {
            return Ok(());
        }
        self.add(shard, socket, "tcp_sockets", "steer_tcp", 0)
    }

    fn add(
        &mut self,
        shard: u32,
        socket: BorrowedFd<'_>,
        map: &str,
        program: &str,
        index: u32,
    ) -> Result<(), Error> {
        let failed = |e: &dyn std::fmt::Display| {
            steering_error(format!("registering shard {shard}'s socket: {e}"))
        };
        let sockets = self
            .ebpf
            .map_mut(map)
            .ok_or_else(|| failed(&format!("no map {map}")))?;
        let mut sockets = ReusePortSockArray::try_from(sockets).map_err(|e| failed(&e))?;
        sockets
            .set(index, &socket.as_raw_fd(), 0)
            .map_err(|e| failed(&e))?;
        if shard == 0 {
            let program: &mut SkReuseport = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| failed(&format!("no program {program}")))?
                .try_into()
                .map_err(|e| failed(&e))?;
            program.attach(socket).map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    /// Datagrams steered by their Call-ID, and sent to shard 0 because no
    /// Call-ID was found (summed over the CPUs).
    pub fn counts(&self) -> (u64, u64) {
        let Some(map) = self.ebpf.map("steer_counts") else {
            return (0, 0);
        };
        let Ok(counts) = aya::maps::PerCpuArray::<_, u64>::try_from(map) else {
            return (0, 0);
        };
        let sum = |i: u32| {
            counts
                .get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        };
        (sum(0), sum(1))
    }
}

#[cfg(test)]
mod tests;
