//! `tandem`: the SIP-aware high-availability B2BUA.
#![forbid(unsafe_code)]

mod admin;
mod b2bua;
mod cdr;
mod config;
mod driver;
mod error;
mod ha;
mod media;
mod metrics;
mod pool;
mod registrar;
mod routing;
mod server;
mod upstream;
mod wan;

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
    /// Validates a configuration file and exits (0: valid, perhaps with
    /// warnings such as unreachable rules; 2: invalid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Dry run of the routing rules: which rule a request would match,
    /// what it does, the rewritten Request-URI and the member chosen
    /// (from a fresh pool, all members up). Sends nothing.
    Route {
        #[arg(long, short)]
        config: PathBuf,
        /// The request's source address (finds its trunk).
        #[arg(long)]
        from: std::net::IpAddr,
        /// The Request-URI, e.g. `sip:+4930123@pbx.example`.
        #[arg(long)]
        to: String,
        /// The From URI's user.
        #[arg(long, default_value = "")]
        from_user: String,
        /// A header, `Name: value`; repeat for more.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Time of day, `HH:MM` UTC (default: now).
        #[arg(long)]
        time: Option<String>,
        /// The Call-ID, for `hash-call-id` groups.
        #[arg(long, default_value = "tandem-route-dry-run")]
        call_id: String,
        /// Take this `[[wan]]` as down (rules with `wan = "down"`);
        /// repeat for more.
        #[arg(long = "wan-down", value_name = "WAN")]
        wans_down: Vec<String>,
    },
    /// Resolves the DNS-named members of the destination groups
    /// (`[[group.dns]]`, RFC 3263) and prints them with the member a new
    /// call would go to, as `tandem route` does for rules.
    Resolve {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this group (default: every group with `[[group.dns]]`).
        #[arg(long)]
        group: Option<String>,
        /// Treat this member as down when choosing; repeat for more.
        #[arg(long, value_name = "MEMBER")]
        down: Vec<String>,
        /// The random number of the weighted choice (default: drawn).
        #[arg(long)]
        random: Option<u32>,
    },
    /// Controlled switchover: the active node at this admin address hands
    /// its calls to the standby and steps down.
    Switchover {
        #[command(flatten)]
        target: AdminTarget,
        /// Hand over also to a standby in the upgrade state (incompatible
        /// record schema, so it has no copy): the calls up are lost.
        #[arg(long)]
        force: bool,
    },
    /// Prints the registrar's bindings (JSON): every AOR with its
    /// contacts, remaining seconds, flow and User-Agent.
    Registrations {
        #[command(flatten)]
        target: AdminTarget,
        /// Only this AOR (`user@domain`).
        #[arg(long)]
        aor: Option<String>,
    },
    /// The WANs' states (JSON); with NAME and MODE, forces WAN NAME
    /// `down` or `up` for planned work, or gives it back (`auto`).
    Wan {
        #[command(flatten)]
        target: AdminTarget,
        name: Option<String>,
        #[arg(value_parser = ["down", "up", "auto"], requires = "name")]
        mode: Option<String>,
    },
    /// Prints a node's role and replication state (JSON).
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// With `ha.external_role`: tells the node its state as decided by
    /// the program that owns the floating address (keepalived's notify
    /// script: `tandem notify --config /etc/tandem/tandem.toml $3`,
    /// lower-cased).
    Notify {
        #[command(flatten)]
        target: AdminTarget,
        #[arg(value_parser = ["master", "backup", "fault"], ignore_case = true)]
        state: String,
    },
    /// Sets a user's digest password in a registrar credentials file:
    /// reads the password from standard input (one line) and writes the
    /// user's HA1 lines (MD5, SHA-256, SHA-512-256), replacing the old
    /// ones. Creates the file (mode 0600) if missing.
    Passwd {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        realm: String,
        #[arg(long)]
        user: String,
    },
}

/// A running node's admin API, for `switchover`, `status` and `notify`,
/// and the token it needs (every POST does; a GET only when the admin
/// address is not a loopback address).
#[derive(clap::Args)]
struct AdminTarget {
    /// The node's admin address (default: from --config).
    #[arg(long, conflicts_with = "socket")]
    admin: Option<std::net::SocketAddr>,
    /// The node's admin Unix socket (`admin.socket`; no token needed).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The node's configuration: its `admin.socket` is used when it has
    /// one, else `admin.listen` with `admin.token_file`.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The file holding the admin token (mode 0600), instead of the one
    /// --config names.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Switchover { target, force } => admin_request(
            &target,
            "POST",
            if force {
                "/switchover?force=1"
            } else {
                "/switchover"
            },
        ),
        Command::Passwd { file, realm, user } => {
            let written = registrar::credentials::read_password(std::io::stdin().lock()).and_then(
                |password| registrar::credentials::write_passwd(&file, &user, &realm, &password),
            );
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem passwd: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Status { target } => admin_request(&target, "GET", "/status"),
        Command::Wan { target, name, mode } => match (name, mode) {
            (Some(name), Some(mode)) => admin_request(
                &target,
                "POST",
                &format!("/wan/{}/{mode}", query_escape(&name)),
            ),
            _ => admin_request(&target, "GET", "/wan"),
        },
        Command::Registrations { target, aor } => admin_request(
            &target,
            "GET",
            &match aor {
                Some(aor) => format!("/registrations?aor={}", query_escape(&aor)),
                None => "/registrations".to_owned(),
            },
        ),
        Command::Notify { target, state } => admin_request(
            &target,
            "POST",
            &format!("/notify/{}", state.to_ascii_lowercase()),
        ),
        Command::Check { config } => match load_with_router(&config) {
            Ok((_, router)) => {
                for s in router.shadowed() {
                    println!(
                        "{}: warning: rule[{}] {:?} is unreachable: rule[{}] {:?} matches every call it would",
                        config.display(),
                        s.rule,
                        s.rule_name,
                        s.by,
                        s.by_name
                    );
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Route {
            config,
            from,
            to,
            from_user,
            headers,
            time,
            call_id,
            wans_down,
        } => {
            let (config, router) = match load_with_router(&config) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let minute_of_day = match time.as_deref().map(parse_time_of_day) {
                None => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    (now.as_secs() % 86_400 / 60) as u16
                }
                Some(Some(minute)) => minute,
                Some(None) => {
                    eprintln!("tandem: --time: expected HH:MM (UTC)");
                    return ExitCode::from(2);
                }
            };
            let request = routing::DryRun {
                from,
                to: &to,
                from_user: &from_user,
                headers: &headers,
                call_id: &call_id,
                minute_of_day,
                wans_down,
            };
            match routing::dry_run(&config, &router, &request) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tandem: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Resolve {
            config,
            group,
            down,
            random,
        } => {
            let config = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let random = random.unwrap_or_else(rand::random);
            runtime.block_on(resolve_groups(&config, group.as_deref(), &down, random))
        }
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let (config, router) = match load_with_router(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // One thread for all signalling: the work per message is a few
            // microseconds, and handing messages between threads would cost
            // more than the work itself. RTP runs on the relay's own threads.
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(server::run(config, router)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads a config and compiles its rules (loading checks them already;
/// the router is kept for warnings and dry runs).
/// The single-threaded tokio runtime Tandem runs on.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn load_with_router(
    path: &std::path::Path,
) -> Result<(config::Config, routing::Router), config::ConfigError> {
    let config = config::Config::load(path)?;
    let router = routing::Router::compile(&config)?;
    Ok((config, router))
}

/// `tandem resolve`: each group's DNS members, or the first error.
async fn resolve_groups(
    config: &config::Config,
    only: Option<&str>,
    down: &[String],
    random: u32,
) -> ExitCode {
    use routing::dns;
    let groups: Vec<&config::GroupConfig> = config
        .groups
        .iter()
        .filter(|g| only.is_none_or(|name| g.name == name))
        .filter(|g| only.is_some() || !g.dns_members.is_empty())
        .collect();
    if groups.is_empty() {
        eprintln!(
            "tandem: {}",
            match only {
                Some(name) => format!("no [[group]] named {name:?}"),
                None => "no [[group]] has [[group.dns]] members".into(),
            }
        );
        return ExitCode::from(2);
    }
    let resolver = match dns::Resolver::new(&config.dns) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    for g in groups {
        match dns::resolve_group(&resolver, g).await {
            Ok(resolved) => print!("{}", dns::describe(&g.name, &resolved, down, random)),
            Err(e) => {
                eprintln!("tandem: group {:?}: {e}", g.name);
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// `HH:MM` as minutes since midnight.
fn parse_time_of_day(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// The address and token `target` names.
fn admin_target(
    target: &AdminTarget,
) -> Result<(admin::AdminAddr, Option<config::AdminToken>), String> {
    let config = match &target.config {
        Some(path) => Some(config::Config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let token = match &target.token_file {
        Some(path) => Some(
            config::AdminToken::read_file(path)
                .map_err(|m| format!("--token-file {}: {m}", path.display()))?,
        ),
        None => config.as_ref().and_then(|c| c.admin.token.clone()),
    };
    if let Some(socket) = &target.socket {
        return Ok((admin::AdminAddr::Socket(socket.clone()), token));
    }
    let admin_config = config.as_ref().map(|c| &c.admin);
    if let (None, Some(socket)) = (target.admin, admin_config.and_then(|a| a.socket.as_ref())) {
        return Ok((admin::AdminAddr::Socket(socket.clone()), token));
    }
    let listen = admin_config.and_then(|a| a.listen);
    let admin = match (target.admin, listen) {
        (Some(admin), _) => admin,
        // A node listening on every address is reached on loopback.
        (None, Some(listen)) if listen.ip().is_unspecified() => std::net::SocketAddr::new(
            match listen {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            },
            listen.port(),
        ),
        (None, Some(listen)) => listen,
        (None, None) => {
            return Err(
                "--admin ADDR or --socket PATH is needed (or --config of a node with \
                 admin.socket or admin.listen)"
                    .into(),
            );
        }
    };
    Ok((admin::AdminAddr::Tcp(admin), token))
}

fn admin_request(target: &AdminTarget, method: &str, path: &str) -> ExitCode {
    let (admin, token) = match admin_target(target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    match admin::request(&admin, method, path, token.as_ref()) {
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

/// A query-string value with everything but unreserved characters
/// percent-encoded (an AOR has `@`, maybe `+`).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
