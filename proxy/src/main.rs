//! `tandem`: the SIP-aware high-availability B2BUA.
#![forbid(unsafe_code)]

mod admin;
mod b2bua;
mod capabilities;
mod cdr;
mod config;
mod driver;
mod error;
mod ha;
mod hep;
mod log_fields;
mod media;
mod metrics;
mod ops;
mod pool;
mod registrar;
mod routing;
mod server;
mod shard;
mod systemd;
mod upstream;
mod wan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The maps of the call store and its Call-ID indexes hash like the
/// transaction layer's: with foldhash under a seed from the OS's random
/// generator (see `sipcore::hash` for why).
pub(crate) use sipcore::hash::{Hasher, Map, Set};

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
    /// Prints a node's role, peer, epoch, replication lag and WANs
    /// (`--json`: the raw `/status`).
    Status {
        #[command(flatten)]
        target: AdminTarget,
        #[arg(long)]
        json: bool,
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
    /// The calls in progress, oldest first: call id, caller → callee,
    /// trunk, group, member, state, age, resumes.
    Calls {
        #[command(flatten)]
        target: AdminTarget,
        /// Only the calls on this member.
        #[arg(long)]
        member: Option<String>,
        /// At most this many (the node's default: 1,000).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Every destination member: group, address, state, draining, calls.
    Members {
        #[command(flatten)]
        target: AdminTarget,
        #[arg(long)]
        json: bool,
    },
    /// Planned work: `tandem drain member ms1` sends no new calls to ms1
    /// (it keeps its calls; move them with `tandem move --from ms1`);
    /// `--off` gives it calls again.
    Drain {
        #[command(subcommand)]
        what: DrainWhat,
    },
    /// `tandem undrain member ms1`: ms1 gets new calls again.
    Undrain {
        #[command(subcommand)]
        what: DrainWhat,
    },
    /// Moves the answered calls on a member to the other members of its
    /// group, with the caller on the line (the call-survival path: a new
    /// INVITE to the new member, the relay switches over, the old member
    /// gets a BYE), paced as resumes are. Calls not answered yet stay.
    Move {
        #[command(flatten)]
        target: AdminTarget,
        #[arg(long)]
        from: String,
        /// Move them to this member (while it can take them; else any).
        #[arg(long)]
        to: Option<String>,
        /// At most this many calls, oldest first.
        #[arg(long)]
        max: Option<usize>,
        /// Wait until no call is left on the member, at most this many
        /// seconds (`--wait` alone: 60).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
}

/// What `tandem drain` and `undrain` act on.
#[derive(Subcommand)]
enum DrainWhat {
    /// One destination member, by name.
    Member {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
        /// Undrain instead (as `tandem undrain member`).
        #[arg(long)]
        off: bool,
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
        Command::Status { target, json } => {
            admin_show(&target, "/status", json, ops::describe_status)
        }
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
        Command::Calls {
            target,
            member,
            limit,
            json,
        } => {
            let mut query = Vec::new();
            if let Some(m) = member {
                query.push(format!("member={}", query_escape(&m)));
            }
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            let path = match query.is_empty() {
                true => "/calls".to_owned(),
                false => format!("/calls?{}", query.join("&")),
            };
            admin_show(&target, &path, json, ops::describe_calls)
        }
        Command::Members { target, json } => {
            admin_show(&target, "/members", json, ops::describe_members)
        }
        Command::Drain {
            what: DrainWhat::Member { name, target, off },
        } => drain_member(&target, &name, !off),
        Command::Undrain {
            what: DrainWhat::Member { name, target, .. },
        } => drain_member(&target, &name, false),
        Command::Move {
            target,
            from,
            to,
            max,
            wait,
        } => move_calls(&target, &from, to.as_deref(), max, wait),
        Command::Check { config } => match load_with_router(&config) {
            Ok((loaded, router)) => {
                // What the unit must grant (AmbientCapabilities=); `run`
                // refuses to start without it.
                let port_start = capabilities::PRIVILEGED_PORTS_BELOW;
                for need in capabilities::needs(&loaded, port_start) {
                    println!(
                        "{}: needs {} ({} {})",
                        config.display(),
                        need.capability,
                        need.key,
                        need.why
                    );
                }
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
                .fmt_fields(log_fields::LeanFields)
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
    match admin_body(target, method, path) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The body of a 200 answer; anything else is said on stderr and is the
/// exit code (1: the node said no, 2: it could not be asked).
fn admin_body(target: &AdminTarget, method: &str, path: &str) -> Result<String, ExitCode> {
    let (admin, token) = admin_target(target).map_err(|e| {
        eprintln!("tandem: {e}");
        ExitCode::from(2)
    })?;
    match admin::request(&admin, method, path, token.as_ref()) {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => {
            eprint!("tandem: {status}: {body}");
            Err(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// A GET whose JSON answer is printed as is (`json`) or for people.
fn admin_show(
    target: &AdminTarget,
    path: &str,
    json: bool,
    describe: fn(&serde_json::Value) -> String,
) -> ExitCode {
    let body = match admin_body(target, "GET", path) {
        Ok(b) => b,
        Err(code) => return code,
    };
    if json {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => {
            print!("{}", describe(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: the node's answer is not JSON ({e}): {body}");
            ExitCode::FAILURE
        }
    }
}

/// `tandem drain|undrain member NAME`.
fn drain_member(target: &AdminTarget, name: &str, on: bool) -> ExitCode {
    let mode = if on { "drain" } else { "undrain" };
    let path = format!("/members/{}/{mode}", query_escape(name));
    match admin_body(target, "POST", &path) {
        Ok(body) => {
            print!("{name}: {body}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `tandem move --from NAME`: schedules the moves, then (with `--wait`)
/// watches the member's calls until none is left or the time is up.
fn move_calls(
    target: &AdminTarget,
    from: &str,
    to: Option<&str>,
    max: Option<usize>,
    wait: Option<u64>,
) -> ExitCode {
    let mut path = format!("/move?from={}", query_escape(from));
    if let Some(to) = to {
        path.push_str(&format!("&to={}", query_escape(to)));
    }
    if let Some(max) = max {
        path.push_str(&format!("&max={max}"));
    }
    let report = match admin_body(target, "POST", &path) {
        Ok(body) => body,
        Err(code) => return code,
    };
    let report: serde_json::Value = serde_json::from_str(&report).unwrap_or_default();
    print!("{}", ops::describe_move(from, &report));
    let Some(seconds) = wait else {
        return ExitCode::SUCCESS;
    };
    let calls_path = format!("/calls?member={}", query_escape(from));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut last = None;
    loop {
        let left = admin_body(target, "GET", &calls_path)
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v.as_array().map(Vec::len));
        if left == Some(0) {
            println!("{from}: no call left");
            return ExitCode::SUCCESS;
        }
        if left != last {
            if let Some(n) = left {
                println!("{from}: {n} calls left");
            }
            last = left;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "tandem: {from} still has {} calls after {seconds} s (calls not answered yet stay until they end)",
                left.map_or("some".to_owned(), |n| n.to_string())
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
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
