//! The branch lab (`testkit::branchlab`) driven from outside Rust: the
//! branch survival benchmark (`loadtest/bench/branch/run`, Python) builds
//! its lab here, so the bench and the tests share one lab.
//!
//! It builds a lab, prints one JSON line with its names and addresses, then
//! reads commands, one a line, from stdin and answers each with one line
//! (`ok` or `error: …`):
//!
//! ```text
//! cut | heal | loss PERCENT | delay MS | addr HOST | quit
//! ```
//!
//! The lab is torn down (every process in its namespaces killed by pid,
//! links and namespaces deleted) on `quit` and at the end of stdin (the
//! harness died and its pipe closed). A signal would kill this process
//! without the teardown, so the harness ends it by closing stdin, never
//! by a signal.

use std::io::{BufRead, Write};

use testkit::branchlab::BranchLab;

fn main() -> anyhow::Result<()> {
    let lab = BranchLab::new()?;
    let info = serde_json::json!({
        "name": lab.name(),
        "branch_ns": lab.branch_ns(),
        "router_ns": lab.router_ns(),
        "dc_ns": lab.dc_ns(),
        "branch_addr": lab.branch_addr().to_string(),
        "tandem_branch_addr": lab.tandem_branch_addr().to_string(),
        "tandem_wan_addr": lab.tandem_wan_addr().to_string(),
        "dc_addr": lab.dc_addr().to_string(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{info}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["quit"] => break,
            words => run(&lab, words),
        };
        match answer {
            Ok(text) => writeln!(out, "ok{text}")?,
            Err(e) => writeln!(out, "error: {e:#}")?,
        }
        out.flush()?;
    }
    // `lab` drops here: the teardown.
    Ok(())
}

/// One command; what follows `ok` in the answer.
fn run(lab: &BranchLab, words: &[&str]) -> anyhow::Result<String> {
    match words {
        ["cut"] => lab.cut().map(|()| String::new()),
        ["heal"] => lab.heal().map(|()| String::new()),
        ["loss", percent] => lab.set_loss(percent.parse()?).map(|()| String::new()),
        ["delay", ms] => lab.set_delay(ms.parse()?).map(|()| String::new()),
        ["addr", host] => lab.add_branch_addr(host.parse()?).map(|a| format!(" {a}")),
        other => anyhow::bail!("unknown command {other:?}"),
    }
}
