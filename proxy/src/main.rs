//! `tandem`: the SIP-aware high-availability B2BUA.
#![forbid(unsafe_code)]

mod admin;
mod b2bua;
mod config;
mod error;
mod ha;
mod media;
mod metrics;
mod pool;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "SIP-aware high-availability B2BUA and media anchor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs Tandem with the given configuration.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validates a configuration file and exits (0: valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Controlled switchover: the active node at this admin address hands
    /// its calls to the standby and steps down.
    Switchover {
        /// The active node's admin address (`admin.listen`).
        #[arg(long)]
        admin: std::net::SocketAddr,
        /// Hand over also to a standby in the upgrade state (incompatible
        /// record schema, so it has no copy): the calls up are lost.
        #[arg(long)]
        force: bool,
    },
    /// Prints a node's role and replication state (JSON).
    Status {
        #[arg(long)]
        admin: std::net::SocketAddr,
    },
    /// With `ha.external_role`: tells the node its state as decided by
    /// the program that owns the floating address (keepalived's notify
    /// script: `tandem notify --admin 127.0.0.1:9090 $3`, lower-cased).
    Notify {
        #[arg(long)]
        admin: std::net::SocketAddr,
        #[arg(value_parser = ["master", "backup", "fault"], ignore_case = true)]
        state: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Switchover { admin, force } => admin_request(
            admin,
            "POST",
            if force {
                "/switchover?force=1"
            } else {
                "/switchover"
            },
        ),
        Command::Status { admin } => admin_request(admin, "GET", "/status"),
        Command::Notify { admin, state } => admin_request(
            admin,
            "POST",
            &format!("/notify/{}", state.to_ascii_lowercase()),
        ),
        Command::Check { config } => match config::Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let config = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // One thread for all signalling: the work per message is a few
            // microseconds, and handing messages between threads would cost
            // more than the work itself. RTP runs on the relay's own threads.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn admin_request(admin: std::net::SocketAddr, method: &str, path: &str) -> ExitCode {
    match admin::request(admin, method, path) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("tandem: {status}: {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::from(2)
        }
    }
}
