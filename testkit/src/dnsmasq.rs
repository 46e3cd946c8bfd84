//! A DNS server for tests: dnsmasq (Debian's dnsmasq-base, which
//! `scripts/test` installs) on 127.0.0.53 and a free port, serving only
//! the records given on its command line for the zone `tandem.test`.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The address dnsmasq listens on.
pub const DNS_IP: &str = "127.0.0.53";

/// dnsmasq's binary: in /usr/sbin, which a non-root PATH may lack.
fn dnsmasq_binary() -> PathBuf {
    let sbin = Path::new("/usr/sbin/dnsmasq");
    if sbin.exists() {
        return sbin.to_owned();
    }
    assert!(
        crate::runs("dnsmasq", "--version"),
        "dnsmasq not found: run ./scripts/test, which installs Debian's dnsmasq-base"
    );
    PathBuf::from("dnsmasq")
}

/// A dnsmasq serving only the records given, killed (by its pid) and
/// reaped when dropped.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (its `--srv-host=…` and the like)
    /// and waits, at most 10 s, until it listens.
    pub fn start(records: &[&str]) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir for dnsmasq");
        let log = dir.path().join("dnsmasq.log");
        let port = crate::free_port();
        let child = Command::new(dnsmasq_binary())
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--pid-file",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={DNS_IP}"),
                &format!("--port={port}"),
                // Answer every name of the zone from what is given here:
                // a name without records is NXDOMAIN, not REFUSED.
                "--local=/tandem.test/",
                "--local-ttl=300",
                "--log-queries",
            ])
            .args(records)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dnsmasq log file"))
            .spawn()
            .expect("start dnsmasq");
        let mut dns = Dnsmasq {
            child,
            port,
            log,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(10);
        // Listening: our probe can no longer bind its port.
        while UdpSocket::bind((DNS_IP, port)).is_ok() {
            if let Ok(Some(status)) = dns.child.try_wait() {
                panic!("dnsmasq exited ({status}): {}", dns.log());
            }
            assert!(
                Instant::now() < until,
                "dnsmasq did not listen on {DNS_IP}:{port} within 10 s: {}",
                dns.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        dns
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
