//! Command line of `tandem-load` and its checks: everything that can be
//! wrong with the input is found here, before a socket is opened, and
//! reported with the option's name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sipcore::transport::TransportKind;

use crate::error::{Error, Result};

/// SIP call generator and answerer with real RTP, for load and survival
/// benchmarks of Tandem (or any SIP B2BUA / proxy).
#[derive(Debug, Parser)]
#[command(name = "tandem-load", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place calls (UAC): INVITE, hold with RTP, BYE; measure.
    Call(CallArgs),
    /// Answer calls (UAS), as a stand-in media server: 180 + 200 with SDP,
    /// OPTIONS, BYE, re-INVITE; RTP echo or an own stream.
    Answer(AnswerArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
}

impl From<Transport> for TransportKind {
    fn from(t: Transport) -> TransportKind {
        match t {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RtpMode {
    /// Send every RTP packet back to where it came from.
    Echo,
    /// Send an own PCMA stream to the address of the offer.
    Send,
    /// No RTP (the SDP answer still names a port; nothing is sent).
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Where INVITEs go: IP[:PORT] (port 5060 by default). Host names
    /// other than `localhost` are not resolved.
    #[arg(short, long)]
    pub target: String,
    /// SIP transport.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// Local SIP address IP[:PORT]. Default: the local address that routes
    /// to the target, on an ephemeral port.
    #[arg(long)]
    pub local: Option<String>,
    /// Address for RTP sockets and the SDP. Default: the SIP address.
    #[arg(long)]
    pub media_ip: Option<IpAddr>,
    /// New calls per second. Default 10 unless --concurrency alone is given.
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// At most this many calls at once (with no --rate: keep this many up).
    #[arg(short, long)]
    pub concurrency: Option<u64>,
    /// Calls to place in total.
    #[arg(short = 'n', long)]
    pub calls: Option<u64>,
    /// Stop placing calls after this long (e.g. 60s, 5m).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How long each answered call is held before the BYE.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub hold: Duration,
    /// A call not answered after this long fails with `timeout` (CANCEL is
    /// sent if it rang).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub setup_timeout: Duration,
    /// After the last call was placed, wait at most this long for the calls
    /// to end. Default: hold + setup timeout + 5 s.
    #[arg(long, value_parser = parse_duration)]
    pub drain: Option<Duration>,
    /// Send no RTP (signalling only).
    #[arg(long)]
    pub no_rtp: bool,
    /// User part of the Request-URI and To.
    #[arg(long, default_value = "load")]
    pub user: String,
    /// User part of From.
    #[arg(long, default_value = "tandem-load")]
    pub from_user: String,
    /// Extra header for every INVITE, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Moment of the injected failure, seconds after the start: the calls
    /// up then are reported separately (with --fail-cmd, run it then).
    #[arg(long, value_parser = parse_duration)]
    pub fail_at: Option<Duration>,
    /// Shell command run at --fail-at (e.g. "kill -9 1234"); killed after
    /// 10 s.
    #[arg(long, requires = "fail_at")]
    pub fail_cmd: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Include one record per call in the JSON.
    #[arg(long)]
    pub per_call: bool,
    /// Write SVG plots into this directory (created if missing).
    #[arg(long)]
    pub plot_dir: Option<PathBuf>,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AnswerArgs {
    /// SIP address to listen on (UDP and TCP), IP:PORT.
    #[arg(short, long, default_value = "127.0.0.1:5060")]
    pub listen: String,
    /// Address for RTP sockets and the SDP. Default: the listen address
    /// (required when listening on 0.0.0.0 / ::).
    #[arg(long)]
    pub media_ip: Option<IpAddr>,
    /// What to do with RTP.
    #[arg(long, value_enum, default_value = "echo")]
    pub rtp: RtpMode,
    /// Exit after this long (default: run until SIGINT / SIGTERM).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Forget a call (stop its media) that has not ended after this long.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub max_call: Duration,
    /// Fault injection: ignore the first ACK of every call, as if it had
    /// been lost, so that the 200 is sent again and must be ACKed again.
    #[arg(long)]
    pub lose_first_ack: bool,
    /// Write the results as JSON to this file at exit.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A duration: `1.5` (seconds), `500ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 30, 500ms, 10s, 2m, 1h)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

/// `IP[:PORT]`, `[IPv6]:PORT` or `localhost[:PORT]`, with `default_port`.
pub fn parse_addr(option: &'static str, s: &str, default_port: u16) -> Result<SocketAddr> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| Error::config(option, format!("`{p}` in `{s}` is not a port")))?;
            (h, port)
        }
        _ => (s, default_port),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(Error::config(
        option,
        format!("`{s}` is not IP[:PORT] (host names other than localhost are not resolved)"),
    ))
}

/// Everything a `call` run needs, checked.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub target: SocketAddr,
    pub transport: TransportKind,
    pub local: SocketAddr,
    pub media_ip: IpAddr,
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    pub calls: Option<u64>,
    pub duration: Option<Duration>,
    pub hold: Duration,
    pub setup_timeout: Duration,
    pub drain: Duration,
    pub rtp: bool,
    pub user: String,
    pub from_user: String,
    pub headers: Vec<(String, String)>,
    pub fail_at: Option<Duration>,
    pub fail_cmd: Option<String>,
    pub json: Option<PathBuf>,
    pub per_call: bool,
    pub plot_dir: Option<PathBuf>,
    pub quiet: bool,
}

impl CallArgs {
    pub fn check(&self) -> Result<CallConfig> {
        let target = parse_addr("--target", &self.target, 5060)?;
        if target.port() == 0 || target.ip().is_unspecified() {
            return Err(Error::config(
                "--target",
                format!("`{}` is not an address one can send to", self.target),
            ));
        }
        let local = match &self.local {
            Some(s) => parse_addr("--local", s, 0)?,
            None => SocketAddr::new(route_to(target)?, 0),
        };
        let local = if local.ip().is_unspecified() {
            SocketAddr::new(route_to(target)?, local.port())
        } else {
            local
        };
        let rate = match (self.rate, self.concurrency) {
            (Some(r), _) if !(r.is_finite() && r > 0.0) => {
                return Err(Error::config(
                    "--rate",
                    format!("{r} is not a positive rate"),
                ));
            }
            (Some(r), _) => Some(r),
            (None, Some(_)) => None,
            (None, None) => Some(10.0),
        };
        if self.concurrency == Some(0) {
            return Err(Error::config("--concurrency", "must be at least 1"));
        }
        if self.calls == Some(0) {
            return Err(Error::config("--calls", "must be at least 1"));
        }
        if self.calls.is_none() && self.duration.is_none() {
            return Err(Error::config(
                "--calls / --duration",
                "give --calls N, --duration D or both, so that the run ends",
            ));
        }
        if self.setup_timeout.is_zero() {
            return Err(Error::config("--setup-timeout", "must be above 0"));
        }
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>>>()?;
        if self.user.is_empty() || self.user.contains(['@', ' ', '<', '>', ':']) {
            return Err(Error::config(
                "--user",
                format!("`{}` is not a user part", self.user),
            ));
        }
        if self.from_user.is_empty() || self.from_user.contains(['@', ' ', '<', '>', ':']) {
            return Err(Error::config(
                "--from-user",
                format!("`{}` is not a user part", self.from_user),
            ));
        }
        if let Some(dir) = &self.plot_dir {
            if dir.exists() && !dir.is_dir() {
                return Err(Error::config(
                    "--plot-dir",
                    format!("{} exists and is not a directory", dir.display()),
                ));
            }
        }
        Ok(CallConfig {
            target,
            transport: self.transport.into(),
            local,
            media_ip: self.media_ip.unwrap_or(local.ip()),
            rate,
            concurrency: self.concurrency,
            calls: self.calls,
            duration: self.duration,
            hold: self.hold,
            setup_timeout: self.setup_timeout,
            drain: self
                .drain
                .unwrap_or(self.hold + self.setup_timeout + Duration::from_secs(5)),
            rtp: !self.no_rtp,
            user: self.user.clone(),
            from_user: self.from_user.clone(),
            headers,
            fail_at: self.fail_at,
            fail_cmd: self.fail_cmd.clone(),
            json: self.json.clone(),
            per_call: self.per_call,
            plot_dir: self.plot_dir.clone(),
            quiet: self.quiet,
        })
    }
}

fn parse_header(h: &str) -> Result<(String, String)> {
    let bad = || Error::config("--header", format!("`{h}` is not \"Name: value\""));
    let (name, value) = h.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let value = value.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) || value.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The local address the kernel would use to reach `target` (a connected
/// UDP socket sends nothing).
fn route_to(target: SocketAddr) -> Result<IpAddr> {
    let any = if target.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let probe = UdpSocket::bind(SocketAddr::new(any, 0))
        .map_err(|e| Error::io("probing the local address", e))?;
    probe
        .connect(target)
        .map_err(|e| Error::config("--target", format!("no route to {target}: {e}")))?;
    probe
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| Error::io("probing the local address", e))
}

/// Everything an `answer` run needs, checked.
#[derive(Debug, Clone)]
pub struct AnswerConfig {
    pub listen: SocketAddr,
    pub media_ip: IpAddr,
    pub rtp: RtpMode,
    pub duration: Option<Duration>,
    pub max_call: Duration,
    pub lose_first_ack: bool,
    pub json: Option<PathBuf>,
    pub quiet: bool,
}

impl AnswerArgs {
    pub fn check(&self) -> Result<AnswerConfig> {
        let listen = parse_addr("--listen", &self.listen, 5060)?;
        let media_ip = match self.media_ip {
            Some(ip) if ip.is_unspecified() => {
                return Err(Error::config(
                    "--media-ip",
                    "must be an address the caller can send to, not 0.0.0.0 / ::",
                ))
            }
            Some(ip) => ip,
            None if listen.ip().is_unspecified() => {
                return Err(Error::config(
                    "--media-ip",
                    format!("needed when listening on {listen}: the SDP must name an address"),
                ))
            }
            None => listen.ip(),
        };
        if self.max_call.is_zero() {
            return Err(Error::config("--max-call", "must be above 0"));
        }
        Ok(AnswerConfig {
            listen,
            media_ip,
            rtp: self.rtp,
            duration: self.duration,
            max_call: self.max_call,
            lose_first_ack: self.lose_first_ack,
            json: self.json.clone(),
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests;
