//! The CLI's side of the admin API (`tandem switchover|status|notify`):
//! one blocking HTTP/1.0 request over TCP (the token in `Authorization:
//! Bearer`) or over the admin Unix socket.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::AdminToken;

/// An answer larger than this is not from Tandem's admin API.
const MAX_ANSWER_BYTES: u64 = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a node's admin API is.
#[derive(Debug, Clone)]
pub enum AdminAddr {
    Tcp(SocketAddr),
    Socket(PathBuf),
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddr::Tcp(addr) => write!(f, "{addr}"),
            AdminAddr::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One request to a running node: its status and body.
pub fn request(
    admin: &AdminAddr,
    method: &str,
    path: &str,
    token: Option<&AdminToken>,
) -> Result<(u16, String), String> {
    let unreachable = |e: std::io::Error| format!("cannot reach the admin API at {admin}: {e}");
    let answer = match admin {
        AdminAddr::Tcp(addr) => {
            let s = std::net::TcpStream::connect_timeout(addr, TIMEOUT).map_err(unreachable)?;
            let _ = s.set_read_timeout(Some(TIMEOUT));
            let _ = s.set_write_timeout(Some(TIMEOUT));
            exchange(s, method, path, token)
        }
        AdminAddr::Socket(socket) => {
            let s = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
            let _ = s.set_read_timeout(Some(TIMEOUT));
            let _ = s.set_write_timeout(Some(TIMEOUT));
            exchange(s, method, path, token)
        }
    };
    answer.map_err(|e| format!("{admin}: {e}"))
}

fn exchange(
    mut s: impl Read + Write,
    method: &str,
    path: &str,
    token: Option<&AdminToken>,
) -> Result<(u16, String), String> {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.as_str()))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: tandem\r\n{authorization}Content-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.take(MAX_ANSWER_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("not an HTTP answer")?;
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}
