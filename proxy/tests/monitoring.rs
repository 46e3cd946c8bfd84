//! Monitoring, end to end: the alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`), the Grafana dashboard passes
//! Grafana's published schema (`@grafana/schema`, checked by `tsc`), and a
//! real Prometheus (Debian's) scrapes a running Tandem with calls up, sees
//! the calls, loads the rules healthy, and runs every expression of the
//! dashboard, whose metric names must all be ones that Tandem exports.
//!
//! Every process listens on fresh 127.0.0.1 ports, every wait has a
//! deadline and every process is killed by pid (SIPp, Tandem, Prometheus:
//! when their handles drop).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testkit::{free_port, http_request, wait_for, Sipp, Tandem, TandemConfig, TEST_ADMIN_TOKEN};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Names the dashboard or the rules use that the Tandem of this test does
/// not export, and why; each must still be a name in the workspace's
/// source (checked), so that a misspelt one fails.
const NOT_IN_THIS_TANDEM: &[(&str, &str)] = &[
    ("tandem_calls_resumed_total", "created by the first resume"),
    ("tandem_resume_seconds", "created by the first resume"),
    ("tandem_register_total", "created by the first REGISTER"),
    ("tandem_registrations_active", "needs [registrar]"),
    ("tandem_wan_state", "needs a [[wan]]"),
    (
        "tandem_upstream_registrations",
        "needs [registrar.upstream]",
    ),
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Fails the test with a clear message when `program` is missing, rather
/// than skipping it: `scripts/test` installs it.
fn require(program: &str, package: &str) {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} not found: install Debian's {package} (scripts/test does)"
    );
}

/// Runs `program` to its end in `dir`, killed by pid at `deadline`;
/// returns whether it succeeded and its output (stdout, then stderr).
async fn run(program: &str, args: &[&str], dir: &Path, deadline: Duration) -> (bool, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        }
        Ok(Err(e)) => panic!("{program}: {e}"),
        // Dropping the future dropped the child: killed by its pid.
        Err(_) => panic!("{program} {args:?} still running after {deadline:?}"),
    }
}

#[tokio::test]
async fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    require("promtool", "prometheus");
    let dir = repo("deploy/prometheus");
    for (what, file) in [
        ("check", "tandem.rules.yml"),
        ("test", "tandem.rules.test.yml"),
    ] {
        let (ok, out) = run("promtool", &[what, "rules", file], &dir, SECS(60)).await;
        assert!(
            ok && out.contains("SUCCESS"),
            "promtool {what} rules:\n{out}"
        );
    }
}

#[tokio::test]
async fn the_grafana_dashboard_passes_grafanas_published_schema() {
    require("npm", "npm");
    let dir = repo("deploy/grafana/check");
    // The pinned @grafana/schema and TypeScript of package-lock.json.
    let (ok, out) = run(
        "npm",
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        &dir,
        SECS(180),
    )
    .await;
    assert!(ok, "npm ci:\n{out}");
    let (ok, out) = run("npm", &["run", "--silent", "check"], &dir, SECS(120)).await;
    assert!(
        ok,
        "deploy/grafana/tandem.json against @grafana/schema:\n{out}"
    );
}

// ---- a real Prometheus ----

/// A Prometheus on 127.0.0.1 with a config and data directory of its own,
/// killed by pid when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target`'s `/metrics` every second with `token` as bearer
    /// credential, and evaluates `rules` every second.
    fn start(target: SocketAddr, token: &str, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: tandem\n    \
                 authorization:\n      credentials: {token}\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                rules = rules.display(),
            ),
        )
        .expect("write prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, dir }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("prometheus.log"));
        let log = log.unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// GET `path` of the HTTP API, as JSON (any status: errors are JSON
    /// too).
    async fn get(&self, path: &str) -> Result<Value, String> {
        let answer = http_request(self.addr, "GET", path, &[], "").await?;
        serde_json::from_str(&answer.body).map_err(|e| format!("{e}: {}", answer.body))
    }

    /// `/api/v1/query` of `expr`: its answer, `status` success or not.
    async fn query(&self, expr: &str) -> Result<Value, String> {
        self.get(&format!("/api/v1/query?query={}", url_encode(expr)))
            .await
    }

    /// Waits until the instant query `expr` returns exactly one sample
    /// equal to `want`.
    async fn wait_value(&self, expr: &str, want: f64) {
        wait_for(&format!("{expr} == {want}"), SECS(20), || async {
            let answer = self.query(expr).await?;
            let result = &answer["data"]["result"];
            let values: Vec<f64> = result
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect();
            if values == [want] {
                Ok(())
            } else {
                Err(format!("{answer}\n{}", self.log_tail()))
            }
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter (everything but RFC 3986's
/// unreserved characters).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The metric names (`tandem_…`) and recording rule names (`a:b…`) a
/// PromQL expression reads. Quoted strings (label values, Grafana's
/// `$instance`) are skipped; label names and functions never start with
/// `tandem_` nor hold a colon.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut quote = None;
    let mut token = String::new();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for c in expr.chars().chain([' ']) {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if is_name(c) && !(token.is_empty() && c.is_ascii_digit()) {
            token.push(c);
            continue;
        }
        if token.starts_with("tandem_") || (token.contains(':') && !token.starts_with(':')) {
            names.insert(std::mem::take(&mut token));
        }
        token.clear();
        if matches!(c, '"' | '\'' | '`') {
            quote = Some(c);
        }
    }
    names
}

/// Names in `/metrics`: every sample's name and every `# TYPE`'d family
/// (a histogram `h` also answers for `h_bucket`, `h_sum`, `h_count`).
fn exported_names(metrics_text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics_text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_owned());
                if kind == "histogram" || kind == "summary" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// Whether the workspace's Rust source holds `"name"` (a metric's name
/// as the code spells it).
fn in_source(name: &str) -> bool {
    let needle = format!("\"{name}\"");
    let crates = [
        "proxy/src",
        "state-sync/src",
        "media-relay/src",
        "sipcore/src",
    ];
    fn walk(dir: &Path, needle: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle)
            } else {
                p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
            }
        })
    }
    crates.iter().any(|c| walk(&repo(c), &needle))
}

/// The names among `used` that are neither exported (`exported`), nor
/// recorded by the rules (`recorded`), nor known to be missing from this
/// Tandem for a stated reason.
fn unknown_names(
    used: &BTreeSet<String>,
    exported: &BTreeSet<String>,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let histogram_base = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_owned()
    };
    used.iter()
        .filter(|n| !exported.contains(*n) && !recorded.contains(*n))
        .filter(|n| {
            let base = histogram_base(n);
            let stated = NOT_IN_THIS_TANDEM.iter().any(|(m, _)| *m == base);
            !(stated && in_source(&base))
        })
        .cloned()
        .collect()
}

/// Every PromQL expression of the dashboard (panel targets and the
/// template variable's query), as written.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    exprs
}

/// Grafana's variables as Prometheus takes them: every node, a fixed
/// rate window.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$instance", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_tandem_and_runs_every_rule_and_dashboard_expression() {
    require("prometheus", "prometheus");
    testkit::require_sipp();
    let mut member = Sipp::builtin("uas", None).arg("-aa").spawn();
    member.wait_ready(SECS(5)).await;
    // One node of a pair (its role given by /notify): the HA metrics exist.
    let secrets = tempfile::tempdir().unwrap();
    let config = TandemConfig::new([("ms1", member.addr())]).external_role_node(secrets.path());
    let tandem = Tandem::start(TANDEM, config).await;
    let answer = tandem
        .admin_request_with_token("POST", "/notify/master")
        .await
        .expect("/notify/master");
    assert!(answer.status < 300, "{}", answer.head);
    tandem
        .wait_metric("tandem_ha_role", &[("role", "active")], 1.0, SECS(10))
        .await;

    // One short call (a finished call's counters), then 3 long ones that
    // stay up until SIPp is killed.
    let uac = repo("deploy/sipp/uac.xml");
    let short = Sipp::scenario_file(&uac, Some(tandem.sip_addr()))
        .args(["-s", "1000", "-m", "1", "-d", "100"])
        .run(SECS(20))
        .await;
    assert_eq!(
        short.successful,
        1,
        "{}\n{}",
        short.log,
        tandem.log_tail(20)
    );
    let mut long = Sipp::scenario_file(&uac, Some(tandem.sip_addr()))
        .args([
            "-s", "1000", "-m", "3", "-r", "3", "-l", "3", "-d", "120000",
        ])
        .spawn();
    tandem
        .wait_metric("tandem_calls_active", &[], 3.0, SECS(15))
        .await;

    let rules_file = repo("deploy/prometheus/tandem.rules.yml");
    let prometheus = Prometheus::start(tandem.admin_addr(), TEST_ADMIN_TOKEN, &rules_file);

    // The scrape: Prometheus sees the 3 calls.
    prometheus.wait_value("tandem_calls_active", 3.0).await;

    // The rules: all loaded and evaluated without error.
    let rules_text = std::fs::read_to_string(&rules_file).unwrap();
    let rule_count = rules_text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    let rules = wait_for("every rule loaded and healthy", SECS(20), || async {
        let answer = prometheus.get("/api/v1/rules").await?;
        let rules: Vec<Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let healthy = rules.iter().filter(|r| r["health"] == "ok").count();
        if rules.len() == rule_count && healthy == rule_count {
            Ok(rules)
        } else {
            Err(format!("{healthy} of {rule_count} healthy: {answer}"))
        }
    })
    .await;
    // The group info series and its join: the pool is a group of one,
    // up.
    prometheus
        .wait_value("group:tandem_media_servers:count{group=\"media\"}", 1.0)
        .await;
    prometheus
        .wait_value("group:tandem_media_servers_up:sum{group=\"media\"}", 1.0)
        .await;

    // Every dashboard expression runs on Prometheus (it parses and its
    // types fit), and every name it or a rule reads is Tandem's.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/tandem.json")).unwrap())
            .expect("tandem.json");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() > 20, "{exprs:?}");
    for expr in &exprs {
        if expr.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL
        }
        let answer = prometheus
            .query(&without_grafana_variables(expr))
            .await
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    let recorded: BTreeSet<String> = rules
        .iter()
        .filter(|r| r["type"] == "recording")
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    let mut used: BTreeSet<String> = exprs.iter().flat_map(|e| names_in(e)).collect();
    // The rules' expressions as Prometheus parsed them.
    used.extend(
        rules
            .iter()
            .flat_map(|r| names_in(r["query"].as_str().unwrap_or(""))),
    );
    let metrics = tandem.metrics().await;
    let exported = exported_names(metrics.text());
    assert!(
        used.len() > 25 && used.contains("tandem_call_setup_seconds_bucket"),
        "{used:?}"
    );
    // The kernel fast path's counters have panels of their own (they are
    // not in the user-space relay's), and Tandem exports them even with the
    // fast path off: the check below covers them.
    for name in [
        "tandem_rtp_fast_path_packets_total",
        "tandem_rtp_fast_path_bytes_total",
    ] {
        assert!(used.contains(name), "no dashboard panel reads {name}");
        assert!(exported.contains(name), "{name} not in /metrics");
    }
    let unknown = unknown_names(&used, &exported, &recorded);
    assert!(
        unknown.is_empty(),
        "names the dashboard or the rules read that Tandem does not export: {unknown:?}"
    );

    // The check itself catches a misspelt name in a dashboard expression.
    let misspelt = dashboard_exprs(&dashboard)
        .iter()
        .map(|e| e.replace("tandem_calls_active", "tandem_calls_activ"))
        .flat_map(|e| names_in(&e))
        .collect();
    assert_eq!(
        unknown_names(&misspelt, &exported, &recorded),
        ["tandem_calls_activ"]
    );

    long.kill().await;
    member.kill().await;
}
