//! Tandem itself as a peer of the tests: a generated configuration on
//! fresh loopback ports, the real `tandem` binary started with it (killed
//! when the handle is dropped), its Prometheus metrics and its CDR lines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{free_port, port_range, wait_for};

/// Relay ports per Tandem: 32 RTP/RTCP pairs, plenty for a test's calls.
const MEDIA_PORTS: u16 = 64;

/// The parts of a Tandem configuration a test chooses; the listen ports
/// and the media port range are picked when Tandem starts.
#[derive(Debug, Clone)]
pub struct TandemConfig {
    members: Vec<(String, SocketAddr)>,
    strategy: String,
    trunk_networks: Vec<String>,
    member_answer_timeout_ms: u64,
    /// interval, timeout, failures to down, successes to up
    health: (u64, u64, u32, u32),
    health_enabled: bool,
    t1_ms: u64,
    /// `sip.unknown_source`, when not the default.
    unknown_source: Option<String>,
    shards: Option<usize>,
    media_ports: u16,
    /// `[media] latching`, if not the default.
    media_latching: Option<String>,
    /// `[media] fast_path`, if not the default.
    media_fast_path: Option<String>,
    /// Raw TOML appended after the generated tables (`[[group]]`,
    /// `[[rule]]`, …).
    extra_toml: String,
    /// The admin token, written to `admin.token` beside the config (mode
    /// 0600) and named by `admin.token_file`; none: no token.
    admin_token: Option<String>,
    /// Lines added to the `[admin]` table.
    admin_toml: String,
    /// Files written beside the config before Tandem starts: name, text,
    /// mode.
    files: Vec<(String, String, u32)>,
    /// Environment variables of the process.
    env: Vec<(String, String)>,
    /// The address SIP and the relay listen on (127.0.0.1 by default).
    listen_ip: std::net::IpAddr,
}

/// The admin token of the Tandems tests start (not a secret: the tests'
/// listeners are on loopback and live for one test).
pub const TEST_ADMIN_TOKEN: &str = "testkit-admin-token-0123456789";

impl TandemConfig {
    /// A pool of `members` (name, address), round-robin, every loopback
    /// source a trunk, OPTIONS every 500 ms.
    pub fn new<S: Into<String>>(members: impl IntoIterator<Item = (S, SocketAddr)>) -> Self {
        TandemConfig {
            members: members.into_iter().map(|(n, a)| (n.into(), a)).collect(),
            strategy: "round-robin".into(),
            trunk_networks: vec!["127.0.0.0/8".into()],
            member_answer_timeout_ms: 4000,
            health: (500, 400, 2, 2),
            health_enabled: true,
            t1_ms: 500,
            unknown_source: None,
            shards: None,
            media_ports: MEDIA_PORTS,
            media_latching: None,
            media_fast_path: None,
            extra_toml: String::new(),
            admin_token: Some(TEST_ADMIN_TOKEN.into()),
            admin_toml: String::new(),
            files: Vec::new(),
            env: Vec::new(),
            listen_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// SIP and the relay listen on `ip` (an address of a network lab)
    /// instead of 127.0.0.1; the admin API stays on loopback.
    pub fn listen_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.listen_ip = ip;
        self
    }

    /// An environment variable of the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The admin token (`None`: no `admin.token_file`; POSTs are then
    /// refused).
    pub fn admin_token(mut self, token: Option<&str>) -> Self {
        self.admin_token = token.map(Into::into);
        self
    }

    /// Adds a line to the `[admin]` table (`metrics_token_file = "…"`).
    pub fn admin_toml(mut self, line: &str) -> Self {
        self.admin_toml += line;
        self.admin_toml.push('\n');
        self
    }

    /// A file written beside the configuration (a relative path in the
    /// config finds it) with this mode before Tandem starts.
    pub fn file(mut self, name: &str, text: &str, mode: u32) -> Self {
        self.files.push((name.into(), text.into(), mode));
        self
    }

    pub fn strategy(mut self, strategy: &str) -> Self {
        self.strategy = strategy.into();
        self
    }

    /// The networks of the one `[[trunk]]`.
    pub fn trunk_networks<S: Into<String>>(mut self, nets: impl IntoIterator<Item = S>) -> Self {
        self.trunk_networks = nets.into_iter().map(Into::into).collect();
        self
    }

    pub fn member_answer_timeout_ms(mut self, ms: u64) -> Self {
        self.member_answer_timeout_ms = ms;
        self
    }

    pub fn health(
        mut self,
        interval_ms: u64,
        timeout_ms: u64,
        failures_to_down: u32,
        successes_to_up: u32,
    ) -> Self {
        self.health = (interval_ms, timeout_ms, failures_to_down, successes_to_up);
        self
    }

    /// No OPTIONS probes: every member stays up.
    pub fn without_health(mut self) -> Self {
        self.health_enabled = false;
        self
    }

    /// Size of the relay's port range (4 ports per call; default 64).
    pub fn media_ports(mut self, ports: u16) -> Self {
        self.media_ports = ports;
        self
    }

    /// `[media] latching` (`strict`, `signalled-ip`, `any`).
    pub fn media_latching(mut self, mode: &str) -> Self {
        self.media_latching = Some(mode.into());
        self
    }

    /// `[media] fast_path` (`off`, `auto`, `on`).
    pub fn media_fast_path(mut self, mode: &str) -> Self {
        self.media_fast_path = Some(mode.into());
        self
    }

    pub fn t1_ms(mut self, ms: u64) -> Self {
        self.t1_ms = ms;
        self
    }

    /// `sip.unknown_source` (`"drop"` or `"403"`).
    pub fn unknown_source(mut self, mode: &str) -> Self {
        self.unknown_source = Some(mode.into());
        self
    }

    /// `sip.shards`: signalling threads.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Appends raw TOML after the generated tables: tables the builder
    /// does not know (`[[group]]`, `[[rule]]`). Only array tables and
    /// tables not generated here may be given (`[pool]`, `[calls]`, … are
    /// already written). Calls accumulate.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        if !self.extra_toml.is_empty() && !self.extra_toml.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self.extra_toml += toml;
        self
    }

    /// One node of a pair whose peer never comes, its role given by
    /// `/notify` (`ha.external_role`): what keepalived's notify script
    /// drives. The pair's secret file is written in `dir` (mode 0600, an
    /// absolute path).
    pub fn external_role_node(self, dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let secret = dir.join("pair.secret");
        std::fs::write(&secret, "q8Vt3LwZ0rN5yXe2KcH7mJpA9sUdF4gB\n").expect("write the secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the secret");
        let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
        self.extra_toml(&format!(
            "[ha]\nnode = \"a\"\nsecret_file = \"{}\"\n\
             realtime_priority = 0\nexternal_role = true\n\
             link = {{ listen = \"{}\", peer = \"{}\" }}\n",
            secret.display(),
            localhost(free_port()),
            localhost(free_port()),
        ))
    }

    /// Writes the configuration for the given ports as `tandem.toml` in
    /// `dir`, with the admin token file and the [`TandemConfig::file`]s
    /// beside it; returns its path.
    pub fn write(
        &self,
        dir: &Path,
        sip: SocketAddr,
        admin: SocketAddr,
        media: RangeInclusive<u16>,
    ) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let token = self
            .admin_token
            .as_ref()
            .map(|t| ("admin.token".to_owned(), format!("{t}\n"), 0o600));
        for (name, text, mode) in token.iter().chain(&self.files) {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a file beside the config");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                .expect("chmod a file beside the config");
        }
        let path = dir.join("tandem.toml");
        std::fs::write(&path, self.render(sip, admin, media)).expect("write config");
        path
    }

    /// The TOML text for the given ports.
    pub fn render(&self, sip: SocketAddr, admin: SocketAddr, media: RangeInclusive<u16>) -> String {
        let mut t = String::new();
        t += &format!(
            "[sip]\nlisten = [\"{sip}\"]\nt1_ms = {}\nt2_ms = 4000\n",
            self.t1_ms
        );
        if let Some(mode) = &self.unknown_source {
            t += &format!("unknown_source = \"{mode}\"\n");
        }
        if let Some(shards) = self.shards {
            t += &format!("shards = {shards}\n");
        }
        t += "\n";
        t += &format!("[admin]\nlisten = \"{admin}\"\n");
        if self.admin_token.is_some() {
            t += "token_file = \"admin.token\"\n";
        }
        t += &self.admin_toml;
        t += "\n";
        t += &format!(
            "[media]\nip = \"{}\"\nport_min = {}\nport_max = {}\nworkers = 1\n",
            self.listen_ip,
            media.start(),
            media.end()
        );
        if let Some(mode) = &self.media_latching {
            t += &format!("latching = \"{mode}\"\n");
        }
        if let Some(mode) = &self.media_fast_path {
            t += &format!("fast_path = \"{mode}\"\n");
        }
        t += "\n";
        t += &format!(
            "[calls]\nmember_answer_timeout_ms = {}\n\n",
            self.member_answer_timeout_ms
        );
        let nets: Vec<String> = self
            .trunk_networks
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        t += &format!(
            "[[trunk]]\nname = \"trunk\"\nnetworks = [{}]\n\n",
            nets.join(", ")
        );
        t += &format!(
            "[pool]\nname = \"media\"\nstrategy = \"{}\"\n\n",
            self.strategy
        );
        let (interval, timeout, down, up) = self.health;
        t += &format!(
            "[pool.health]\nenabled = {}\ninterval_ms = {interval}\ntimeout_ms = {timeout}\n\
             failures_to_down = {down}\nsuccesses_to_up = {up}\n\n",
            self.health_enabled
        );
        for (name, addr) in &self.members {
            t += &format!("[[pool.member]]\nname = \"{name}\"\naddress = \"{addr}\"\n\n");
        }
        t += &self.extra_toml;
        t
    }
}

/// A running `tandem run`; killed (SIGKILL) when dropped.
pub struct Tandem {
    child: Child,
    dir: tempfile::TempDir,
    sip: SocketAddr,
    admin: SocketAddr,
    media: RangeInclusive<u16>,
    admin_token: Option<String>,
}

impl Tandem {
    /// Starts the binary `bin` (`env!("CARGO_BIN_EXE_tandem")`) with
    /// `config` on fresh ports and waits until it serves SIP and
    /// `/metrics`.
    pub async fn start(bin: impl AsRef<Path>, config: TandemConfig) -> Tandem {
        let dir = crate::work_dir("tandem");
        let sip = SocketAddr::new(config.listen_ip, free_port());
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let base = port_range(config.media_ports);
        let media = base..=base + config.media_ports - 1;
        let path = config.write(dir.path(), sip, admin, media.clone());
        let log = std::fs::File::create(dir.path().join("tandem.log")).expect("tandem log");
        let child = Command::new(bin.as_ref())
            .args(["run", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("TANDEM_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log file")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.as_ref().display()));
        let mut tandem = Tandem {
            child,
            dir,
            sip,
            admin,
            media,
            admin_token: config.admin_token.clone(),
        };
        tandem.wait_ready(Duration::from_secs(10)).await;
        tandem
    }

    async fn wait_ready(&mut self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tandem exited at start ({status}):\n{}", self.log_tail(40));
            }
            let sip_bound = std::net::UdpSocket::bind(self.sip).is_err();
            if sip_bound && self.try_metrics().await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "tandem not ready after {deadline:?}:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The admin token it was started with.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The process id (for `prlimit`, `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The relay's port range (`[media] port_min..=port_max`).
    pub fn media_ports(&self) -> RangeInclusive<u16> {
        self.media.clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tandem.toml")
    }

    /// Sends the process a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status once the process has ended (None while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resident memory of the process in KiB (`VmRSS` of /proc), while it
    /// runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// Everything Tandem logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tandem.log")).unwrap_or_default()
    }

    /// Waits until the log holds `text` (panics with the log's tail after
    /// `deadline`).
    pub async fn wait_log(&self, text: &str, deadline: Duration) {
        wait_for(&format!("{text:?} in the log"), deadline, || async {
            if self.log().contains(text) {
                Ok(())
            } else {
                Err(self.log_tail(10))
            }
        })
        .await;
    }

    /// The last `lines` lines of the log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        format!(
            "--- tandem log (last {lines} lines) ---\n{}",
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// One request to the admin API (`headers`: extra header lines, e.g.
    /// `Cookie: …`), 2 s limit.
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> Result<HttpAnswer, String> {
        http_request(self.admin, method, path, headers, body).await
    }

    /// [`Tandem::admin_request`] with `Authorization: Bearer` and the
    /// admin token.
    pub async fn admin_request_with_token(
        &self,
        method: &str,
        path: &str,
    ) -> Result<HttpAnswer, String> {
        let auth = self
            .admin_token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        self.admin_request(method, path, &headers, "").await
    }

    /// `GET /registrations?aor=AOR` (the registrar's bindings of one
    /// AOR, and its upstream registration), failing the test unless 200.
    pub async fn registrations(&self, aor: &str) -> String {
        let answer = self
            .admin_request("GET", &format!("/registrations?aor={aor}"), &[], "")
            .await
            .unwrap_or_else(|e| panic!("/registrations: {e}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// GET /metrics once (2 s limit), with the admin token when there is
    /// one (it opens /metrics also when a metrics token is configured).
    pub async fn try_metrics(&self) -> Result<Metrics, String> {
        let answer = self.admin_request_with_token("GET", "/metrics").await?;
        if answer.status != 200 {
            return Err(format!("unexpected answer: {}", answer.head));
        }
        Ok(Metrics::parse(&answer.body))
    }

    /// GET /metrics, failing the test when it does not answer.
    pub async fn metrics(&self) -> Metrics {
        match self.try_metrics().await {
            Ok(m) => m,
            Err(e) => panic!("/metrics: {e}\n{}", self.log_tail(30)),
        }
    }

    /// Waits until the series `name{labels}` (summed over the series that
    /// carry at least these labels) equals `value`.
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        deadline: Duration,
    ) {
        wait_for(
            &format!("{name}{labels:?} == {value}"),
            deadline,
            || async {
                let m = self.try_metrics().await?;
                match m.value(name, labels) {
                    Some(v) if v == value => Ok(()),
                    other => Err(format!("{other:?}\n{}", self.log_tail(15))),
                }
            },
        )
        .await
    }

    /// The CDR lines logged so far (`call ended`), in order.
    pub fn cdrs(&self) -> Vec<Cdr> {
        self.log()
            .lines()
            .filter(|l| l.contains("call ended"))
            .map(Cdr::parse)
            .collect()
    }

    /// Waits until at least `n` CDR lines were logged.
    pub async fn wait_cdrs(&self, n: usize, deadline: Duration) -> Vec<Cdr> {
        wait_for(&format!("{n} CDR lines"), deadline, || async {
            let cdrs = self.cdrs();
            if cdrs.len() >= n {
                Ok(cdrs)
            } else {
                Err(format!("{} CDRs\n{}", cdrs.len(), self.log_tail(20)))
            }
        })
        .await
    }
}

/// An HTTP answer: status, head (status line and headers), body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), the first if many.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.0 request (`Connection: close` semantics), 2 s limit.
pub async fn http_request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Result<HttpAnswer, String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(to)
            .await
            .map_err(|e| format!("connect {to}: {e}"))?;
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: tandem\r\n");
        for h in headers {
            request += h;
            request += "\r\n";
        }
        request += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not HTTP: {text:?}"))?;
        let status = head
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not HTTP: {head:?}"))?;
        Ok(HttpAnswer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .map_err(|_| format!("{method} {path} took over 2 s"))?
}

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    series: Vec<Sample>,
    text: String,
}

impl Metrics {
    /// Parses the Prometheus text format (samples only; comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (key, Vec::new()),
            };
            series.push((name.to_owned(), labels, value));
        }
        Metrics {
            series,
            text: text.to_owned(),
        }
    }

    /// The sum of the series named `name` that carry all of `labels`;
    /// `None` when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for (n, ls, v) in &self.series {
            if n != name {
                continue;
            }
            let all = labels
                .iter()
                .all(|(k, val)| ls.iter().any(|(lk, lv)| lk == k && lv == val));
            if all {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// [`Metrics::value`], 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The scraped text, for assertion messages.
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((k.trim().trim_start_matches(',').trim().to_owned(), value));
        rest = &r[end..];
    }
    out
}

/// One CDR line of Tandem's log: its `key=value` fields.
#[derive(Debug, Clone)]
pub struct Cdr {
    pub fields: HashMap<String, String>,
    pub line: String,
}

impl Cdr {
    fn parse(line: &str) -> Cdr {
        let fields = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        Cdr {
            fields,
            line: line.to_owned(),
        }
    }

    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }

    /// A numeric field; 0 when absent.
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(0)
    }

    /// The media servers the call used, by name, in order.
    pub fn servers(&self) -> Vec<String> {
        self.get("servers")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.split('@').next().unwrap_or(s).to_owned())
            .collect()
    }
}

/// A credentials file's text as `tandem passwd` (binary `bin`) writes it
/// for `users` (user, password) in `realm`: give it to
/// [`TandemConfig::file`] with mode 0600.
pub fn credentials_file(bin: impl AsRef<Path>, realm: &str, users: &[(&str, &str)]) -> String {
    use std::io::Write;
    let dir = crate::work_dir("credentials");
    let file = dir.path().join("credentials");
    for (user, password) in users {
        let mut passwd = std::process::Command::new(bin.as_ref())
            .args(["passwd", "--realm", realm, "--user", user, "--file"])
            .arg(&file)
            .stdin(Stdio::piped())
            .spawn()
            .expect("tandem passwd");
        writeln!(passwd.stdin.take().expect("stdin"), "{password}").expect("a password");
        assert!(
            passwd.wait().expect("tandem passwd").success(),
            "tandem passwd {user}"
        );
    }
    std::fs::read_to_string(&file).expect("the credentials file")
}
