//! Drives the hot-standby building blocks by hand or from tests, inside a
//! network namespace (`ip netns exec LAB-a ha-tool …`):
//!
//! ```text
//! ha-tool vip-acquire IFACE ADDR/PREFIX   add the address, send gratuitous ARP / unsolicited NA
//! ha-tool vip-release IFACE ADDR/PREFIX   remove the address
//! ha-tool vip-held    IFACE ADDR/PREFIX   exit 0 if the address is there, else 1
//! ha-tool ping HOST [TIMEOUT_MS]          exit 0 if HOST answers (default 1000 ms)
//! ```
//!
//! Exit status 2 for usage and operational errors.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use state_sync::netcheck;
use state_sync::vip::{FloatingIp, VipConfig};

const USAGE: &str = "usage: ha-tool vip-acquire|vip-release|vip-held IFACE ADDR/PREFIX\n       ha-tool ping HOST [TIMEOUT_MS]";

fn usage(why: &str) -> ExitCode {
    eprintln!("ha-tool: {why}\n{USAGE}");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [cmd @ ("vip-acquire" | "vip-release" | "vip-held"), iface, addr] => {
            let address = match addr.parse() {
                Ok(a) => a,
                Err(e) => return usage(&format!("{addr}: {e}")),
            };
            let cfg = VipConfig {
                addresses: vec![address],
                interface: (*iface).to_owned(),
                ..VipConfig::default()
            };
            match vip(cmd, cfg).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("ha-tool: {e}");
                    ExitCode::from(2)
                }
            }
        }
        ["ping", host, rest @ ..] if rest.len() <= 1 => {
            let host: IpAddr = match host.parse() {
                Ok(h) => h,
                Err(e) => return usage(&format!("{host}: {e}")),
            };
            let ms = match rest.first().map(|t| t.parse::<u64>()) {
                None => 1000,
                Some(Ok(ms)) => ms,
                Some(Err(e)) => return usage(&format!("timeout: {e}")),
            };
            if netcheck::ping(host, Duration::from_millis(ms)).await {
                println!("{host} is reachable");
                ExitCode::SUCCESS
            } else {
                println!("{host} did not answer within {ms} ms");
                ExitCode::from(1)
            }
        }
        _ => usage("bad arguments"),
    }
}

async fn vip(cmd: &str, cfg: VipConfig) -> Result<bool, state_sync::vip::VipError> {
    let ip = FloatingIp::new(cfg).await?;
    match cmd {
        "vip-acquire" => ip.acquire().await.map(|()| true),
        "vip-release" => ip.release().await.map(|()| true),
        _ => ip.held().await,
    }
}
