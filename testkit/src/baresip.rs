//! A real SIP phone for integration tests: Debian's `baresip` (1.0),
//! headless. It registers with digest authentication, dials, answers and
//! hangs up on command, and sends a 440 Hz tone (`ausine`) as its
//! microphone, so a test can prove that audio arrived at the other end.
//!
//! Everything lives in a temporary directory: `config` written from a
//! [`PhoneConfig`], baresip's output (`baresip.log`) and the audio each
//! call received (`rec/dump-*-dec.wav`, from the `sndfile` filter). The
//! account is added (`uanew`) once the control connection is up, so no
//! registration event comes before anyone listens. The phone is controlled over baresip's `ctrl_tcp`
//! module (netstring-framed JSON commands, responses and events) on
//! 127.0.0.1; a phone in a network namespace listens on that namespace's
//! loopback, reached through a small relay (`python3`) started in the
//! same namespace. No audio device is needed: the player is an
//! `aubridge` device nothing reads from.
//!
//! The process is killed by its pid when [`Phone::stop`] is called or the
//! [`Phone`] is dropped (also when the test panics), and baresip's own
//! `-t` timer ends it anyway after [`PhoneConfig::lifetime`], should the
//! test process itself be killed.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// SIP transport of a phone's registration and calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Who the phone is and where it registers.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    /// The AOR is `sip:USER@DOMAIN`; USER is also the digest user name.
    pub user: String,
    pub password: String,
    pub domain: String,
    /// Every request goes there (baresip's outbound proxy).
    pub registrar: SocketAddr,
    /// The phone's own SIP and RTP address.
    pub local_addr: IpAddr,
    pub transport: Transport,
    /// Answers incoming calls by itself (`answermode=auto`) instead of
    /// waiting for [`Phone::answer`].
    pub auto_answer: bool,
    /// Runs the phone in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Registration refresh interval asked for (seconds).
    pub register_interval_s: u32,
    /// baresip quits by itself after this long (`-t`), whatever happens
    /// to the test.
    pub lifetime: Duration,
}

impl PhoneConfig {
    /// `user` with `password` at `domain`, registering at `registrar` over
    /// UDP from 127.0.0.1, answering on command.
    pub fn new(user: &str, password: &str, domain: &str, registrar: SocketAddr) -> PhoneConfig {
        PhoneConfig {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            registrar,
            local_addr: IpAddr::from([127, 0, 0, 1]),
            transport: Transport::Udp,
            auto_answer: false,
            netns: None,
            register_interval_s: 600,
            lifetime: Duration::from_secs(300),
        }
    }

    /// The phone's address of record, `sip:USER@DOMAIN`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }
}

/// RTP packets of one call as baresip counted them when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpCount {
    pub sent: u64,
    pub received: u64,
}

/// Fails the test with a clear message when baresip is missing, rather
/// than skipping it: `scripts/test` installs it.
pub fn require_baresip() {
    assert!(
        Path::new("/usr/bin/baresip").exists() && Path::new(MODULES).join("ausine.so").exists(),
        "baresip not found: run ./scripts/test, which installs Debian's baresip-core"
    );
}

const MODULES: &str = "/usr/lib/baresip/modules";

/// Bridges stdin/stdout to the phone's control port on the loopback of the
/// namespace it runs in (retrying while baresip starts).
const NETNS_BRIDGE: &str = r#"
import os, socket, sys, threading, time
end = time.time() + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        if time.time() > end:
            sys.exit("no baresip control port")
        time.sleep(0.05)
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            os._exit(0)
        s.sendall(d)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"#;

/// Events kept for [`Phone::events`]; baresip sends a few per call, so
/// this is far above any test's need and bounds memory all the same.
const MAX_EVENTS: usize = 10_000;

/// A running baresip; killed on drop.
pub struct Phone {
    config: PhoneConfig,
    child: Child,
    bridge: Option<Child>,
    dir: tempfile::TempDir,
    commands: Box<dyn Write + Send>,
    messages: mpsc::Receiver<Value>,
    /// Every event so far, in order.
    events: Vec<Value>,
    /// Events before this index have been consumed by a `wait_*`.
    cursor: usize,
    next_token: u64,
    sip_port: u16,
}

impl Phone {
    /// Writes the configuration and starts baresip; returns once its
    /// control connection is up (or fails the test).
    pub fn start(config: PhoneConfig) -> Phone {
        require_baresip();
        let dir = crate::work_dir(&format!("baresip {}", config.aor()));
        std::fs::create_dir_all(dir.path().join("rec")).expect("phone rec dir");
        // No account at start: it is added (and registers) once the control
        // connection is up, so its REGISTER_OK cannot be missed.
        std::fs::write(dir.path().join("accounts"), "").expect("write baresip accounts");
        // The ports come from `free_port` (bound, then released), which
        // other tests running at the same time may take first: a baresip
        // that exits before its control port is up is started again on
        // fresh ports.
        const STARTS: usize = 3;
        let mut attempt = 0;
        let (child, sip_port, ctrl_port, first_stream) = loop {
            attempt += 1;
            let sip_port = crate::free_port();
            let ctrl_port = crate::free_port();
            let rtp_base = crate::port_range(64);
            std::fs::write(
                dir.path().join("config"),
                config_file(&config, sip_port, ctrl_port, rtp_base, dir.path()),
            )
            .expect("write baresip config");
            let log = std::fs::File::create(dir.path().join("baresip.log")).expect("baresip log");
            let mut cmd = in_netns(config.netns.as_deref(), "baresip");
            cmd.arg("-f")
                .arg(dir.path())
                .arg("-t")
                .arg(config.lifetime.as_secs().max(1).to_string())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log);
            let mut child = cmd.spawn().expect("start baresip");
            if config.netns.is_some() {
                break (child, sip_port, ctrl_port, None);
            }
            match connect_retrying(&mut child, ctrl_port, Duration::from_secs(10)) {
                Ok(stream) => break (child, sip_port, ctrl_port, Some(stream)),
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log =
                        std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
                    assert!(
                        attempt < STARTS,
                        "{why} (start {attempt} of {STARTS}); baresip's log:\n{log}"
                    );
                    eprintln!("baresip: {why}; starting it again on other ports; its log:\n{log}");
                }
            }
        };

        let (reader, commands, bridge): (Box<dyn Read + Send>, Box<dyn Write + Send>, _) =
            match (&config.netns, first_stream) {
                (None, Some(stream)) => {
                    let reader = stream.try_clone().expect("clone control stream");
                    (Box::new(reader), Box::new(stream), None)
                }
                (Some(ns), _) => {
                    let mut bridge = in_netns(Some(ns), "python3")
                        .args(["-c", NETNS_BRIDGE, &ctrl_port.to_string()])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start the control bridge (python3) in the namespace");
                    let reader = bridge.stdout.take().expect("bridge stdout");
                    let writer = bridge.stdin.take().expect("bridge stdin");
                    (Box::new(reader), Box::new(writer), Some(bridge))
                }
                (None, None) => unreachable!("a phone outside a namespace has its control stream"),
            };
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || read_netstrings(reader, tx));

        let account = account_line(&config);
        let mut phone = Phone {
            config,
            child,
            bridge,
            dir,
            commands,
            messages,
            events: Vec::new(),
            cursor: 0,
            next_token: 0,
            sip_port,
        };
        phone.command("uanew", account.trim_end());
        phone
    }

    pub fn config(&self) -> &PhoneConfig {
        &self.config
    }

    /// Where the phone listens for SIP (its Contact's address).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.config.local_addr, self.sip_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// Every event baresip reported so far (its JSON objects).
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Takes in the events that arrive within `wait` (see [`Phone::events`]).
    pub fn poll_events(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while let Ok(message) = self
            .messages
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.keep_event(message);
        }
    }

    /// Waits for `REGISTER_OK`; a `REGISTER_FAIL` fails the test at once.
    pub fn wait_registered(&mut self, deadline: Duration) -> Value {
        self.wait_event_failing_on("REGISTER_OK", &["REGISTER_FAIL"], deadline)
    }

    /// Calls `uri` (e.g. `sip:bob@example.test`).
    pub fn dial(&mut self, uri: &str) {
        self.command("dial", uri);
    }

    /// Waits for an incoming call (`CALL_INCOMING`). A phone with
    /// `auto_answer` does not report one: wait for the call to be
    /// established instead.
    pub fn wait_incoming(&mut self, deadline: Duration) -> Value {
        self.wait_event_failing_on("CALL_INCOMING", &[], deadline)
    }

    /// Answers the ringing call.
    pub fn answer(&mut self) {
        self.command("accept", "");
    }

    /// Waits until the call is up (`CALL_ESTABLISHED`); a call that ends
    /// first fails the test.
    pub fn wait_established(&mut self, deadline: Duration) -> Value {
        self.wait_event_failing_on("CALL_ESTABLISHED", &["CALL_CLOSED"], deadline)
    }

    /// Hangs up the current call.
    pub fn hangup(&mut self) {
        self.command("hangup", "");
    }

    /// Waits until the call has ended (`CALL_CLOSED`, which carries the
    /// reason in `param`).
    pub fn wait_closed(&mut self, deadline: Duration) -> Value {
        self.wait_event_failing_on("CALL_CLOSED", &[], deadline)
    }

    /// The RTP packets of the last call that ended, from the summary
    /// baresip prints then (`packets: SENT RECEIVED`); `None` before.
    pub fn last_call_rtp(&self) -> Option<RtpCount> {
        let log = std::fs::read_to_string(self.dir.path().join("baresip.log")).ok()?;
        let line = log
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with("packets:"))?;
        let mut numbers = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse::<u64>().ok());
        Some(RtpCount {
            sent: numbers.next()?,
            received: numbers.next()?,
        })
    }

    /// The loudest sample of all the audio the phone received and decoded
    /// (`rec/*-dec.wav`, 16-bit PCM): 0 when nothing but silence (or
    /// nothing at all) arrived; the other phone's tone gives thousands.
    pub fn received_audio_peak(&self) -> u16 {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("rec")) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .map(|wav| wav_peak(&wav))
            .max()
            .unwrap_or(0)
    }

    /// The last `lines` lines of baresip's output, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default();
        // The status line redraws itself with \r, not \n.
        let all: Vec<&str> = text.lines().flat_map(|l| l.rsplit('\r').next()).collect();
        format!(
            "baresip {} ({}):\n{}",
            self.config.aor(),
            self.dir.path().display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// Kills baresip (SIGKILL, by pid) and waits for it.
    pub fn stop(&mut self) {
        if let Some(bridge) = &mut self.bridge {
            let _ = bridge.kill();
            let _ = bridge.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `command` and waits for its response; a refused command
    /// fails the test.
    fn command(&mut self, command: &str, params: &str) -> Value {
        self.next_token += 1;
        let token = format!("t{}", self.next_token);
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        if let Err(e) = self
            .commands
            .write_all(frame.as_bytes())
            .and_then(|()| self.commands.flush())
        {
            panic!("send {command} to baresip: {e}\n{}", self.log_tail(30));
        }
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let message = self.next_message(until, &format!("response to {command}"));
            if message.get("response").is_some() {
                if message.get("token").and_then(Value::as_str) != Some(token.as_str()) {
                    continue;
                }
                assert!(
                    message.get("ok").and_then(Value::as_bool) == Some(true),
                    "baresip refused {command} {params}: {message}\n{}",
                    self.log_tail(30)
                );
                return message;
            }
            self.keep_event(message);
        }
    }

    /// The first event of type `wanted` not yet consumed; fails the test on
    /// an event of a type in `failing` first, or at `deadline`.
    fn wait_event_failing_on(
        &mut self,
        wanted: &str,
        failing: &[&str],
        deadline: Duration,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            while self.cursor < self.events.len() {
                let event = self.events[self.cursor].clone();
                self.cursor += 1;
                let kind = event
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if kind == wanted {
                    return event;
                }
                assert!(
                    !failing.contains(&kind),
                    "waiting for {wanted}, baresip reported {event}\n{}",
                    self.log_tail(30)
                );
            }
            let message = self.next_message(until, wanted);
            self.keep_event(message);
        }
    }

    fn keep_event(&mut self, message: Value) {
        if message.get("event").is_some() && self.events.len() < MAX_EVENTS {
            self.events.push(message);
        }
    }

    fn next_message(&mut self, until: Instant, what: &str) -> Value {
        let left = until.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("timed out waiting for {what}\n{}", self.log_tail(40))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "baresip's control connection closed (exit: {status:?}) waiting for {what}\n{}",
                    self.log_tail(40)
                )
            }
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `program` to run in `netns` when there is one.
fn in_netns(netns: Option<&str>, program: &str) -> Command {
    match netns {
        None => Command::new(program),
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, program]);
            cmd
        }
    }
}

fn config_file(
    config: &PhoneConfig,
    sip_port: u16,
    ctrl_port: u16,
    rtp_base: u16,
    dir: &Path,
) -> String {
    let sip_listen = SocketAddr::new(config.local_addr, sip_port);
    let sink = format!("sink-{}", config.user);
    format!(
        "poll_method\tepoll\n\
         sip_listen\t{sip_listen}\n\
         net_interface\t{local}\n\
         call_local_timeout\t60\n\
         call_max_calls\t2\n\
         audio_source\tausine,440\n\
         audio_player\taubridge,{sink}\n\
         audio_alert\taubridge,{sink}\n\
         ausrc_srate\t48000\n\
         ausrc_channels\t2\n\
         auplay_srate\t48000\n\
         auplay_channels\t2\n\
         audio_buffer\t20-160\n\
         rtp_ports\t{rtp_lo}-{rtp_hi}\n\
         rtp_stats\tyes\n\
         module_path\t{MODULES}\n\
         module\tg711.so\n\
         module\tausine.so\n\
         module\taubridge.so\n\
         module\tsndfile.so\n\
         module_app\taccount.so\n\
         module_app\tmenu.so\n\
         module_app\tctrl_tcp.so\n\
         ctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n\
         snd_path\t{rec}\n",
        // An address, not an interface name: baresip takes its Contact
        // and SDP address from it (and finds no address on `lo`).
        local = config.local_addr,
        rtp_lo = rtp_base,
        rtp_hi = rtp_base + 63,
        rec = dir.join("rec").display(),
    )
}

fn account_line(config: &PhoneConfig) -> String {
    let transport = config.transport.param();
    format!(
        "<{aor};transport={transport}>;auth_pass={password};\
         outbound=\"sip:{registrar};transport={transport}\";regint={regint};\
         answermode={answer};audio_codecs=PCMU,PCMA\n",
        aor = config.aor(),
        password = config.password,
        registrar = config.registrar,
        regint = config.register_interval_s,
        answer = if config.auto_answer { "auto" } else { "manual" },
    )
}

fn connect_retrying(
    child: &mut std::process::Child,
    port: u16,
    deadline: Duration,
) -> Result<TcpStream, String> {
    let until = Instant::now() + deadline;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= until => {
                return Err(format!(
                    "baresip's control port 127.0.0.1:{port} not up within {deadline:?}: {e}"
                ))
            }
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "baresip exited ({status}) before its control port 127.0.0.1:{port} was up: {e}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads `LEN:JSON,` frames until the stream ends, sending each parsed
/// object on. A frame longer than 1 MiB or malformed ends the reading
/// (the waits then report the connection closed).
fn read_netstrings(reader: Box<dyn Read + Send>, tx: mpsc::Sender<Value>) {
    let mut reader = BufReader::new(reader);
    loop {
        let mut len = 0usize;
        let mut byte = [0u8; 1];
        loop {
            if reader.read_exact(&mut byte).is_err() {
                return;
            }
            match byte[0] {
                b'0'..=b'9' if len < 1 << 20 => len = len * 10 + usize::from(byte[0] - b'0'),
                b':' => break,
                _ => return,
            }
        }
        let mut body = vec![0u8; len + 1];
        if reader.read_exact(&mut body).is_err() || body[len] != b',' {
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&body[..len]) else {
            return;
        };
        if tx.send(value).is_err() {
            return;
        }
    }
}

/// The largest absolute 16-bit sample after a WAV file's 44-byte header.
fn wav_peak(wav: &[u8]) -> u16 {
    wav.get(44..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

impl Phone {
    /// The RTP summary baresip prints as a call closes, waited for up to
    /// `deadline`.
    pub fn wait_rtp_summary(&self, deadline: Duration) -> RtpCount {
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(rtp) = self.last_call_rtp() {
                return rtp;
            }
            assert!(
                std::time::Instant::now() < until,
                "no RTP summary\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One call from `caller` to `callee`'s AOR: answered, ~2 s of tone both
/// ways, hung up by the caller; then each phone's RTP counters and decoded
/// audio show the other's tone arrived. `context` adds the server's side
/// (its log) to a failure's message.
pub fn call_with_tone(
    caller: &mut Phone,
    callee: &mut Phone,
    deadline: Duration,
    context: &dyn Fn() -> String,
) {
    caller.dial(&callee.config().aor());
    callee.wait_incoming(deadline);
    callee.answer();
    callee.wait_established(deadline);
    caller.wait_established(deadline);
    std::thread::sleep(Duration::from_secs(2));
    caller.hangup();
    caller.wait_closed(deadline);
    callee.wait_closed(deadline);
    for phone in [&*caller, &*callee] {
        let rtp = phone.wait_rtp_summary(deadline);
        // 20 ms packets for about 2 s: 100 each way, far more than any
        // stray packet; fewer than 50 means audio did not really flow.
        assert!(
            rtp.sent >= 50 && rtp.received >= 50,
            "{} RTP {rtp:?}\n{}\nserver:\n{}",
            phone.config().aor(),
            phone.log_tail(30),
            context()
        );
        let peak = phone.received_audio_peak();
        assert!(
            peak > 1000,
            "{} decoded no tone (peak {peak})\n{}",
            phone.config().aor(),
            phone.log_tail(30)
        );
    }
}
