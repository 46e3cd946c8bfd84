//! The CLI's side of the admin API (`tandem switchover|status|notify`):
//! one blocking HTTP/1.0 request, the token in `Authorization: Bearer`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::AdminToken;

/// An answer larger than this is not from Tandem's admin API.
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// One request to a running node: its status and body.
pub fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&AdminToken>,
) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let authorization = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.as_str()))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: tandem\r\n{authorization}Content-Length: 0\r\n\r\n"
    )
    .map_err(|e| format!("{admin}: {e}"))?;
    let mut out = Vec::new();
    s.take(MAX_ANSWER_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| format!("{admin}: {e}"))?;
    let out = String::from_utf8_lossy(&out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{admin}: not an HTTP answer"))?;
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}
