//! `tandem-load`: see the crate README for usage.
//!
//! Exit status: 0 when every call attempted was completed (`call`) or the
//! answerer stopped normally (`answer`); 1 when the run could not be done
//! (bad input, a port in use, an unwritable output file); 2 for a command
//! line clap rejects; 3 when the run finished but some calls failed, were
//! dropped or were left unfinished.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use loadtest::cli::{Cli, Command};
use loadtest::report::write_json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Our errors print their sources already; add only what a
            // context wrapper left out.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !msg.contains(&cause) {
                    msg = format!("{msg}: {cause}");
                }
            }
            eprintln!("tandem-load: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Call(args) => {
            let cfg = args.check()?;
            let report = runtime.block_on(loadtest::call::run(cfg.clone()))?;
            print!("{}", report.summary());
            if let Some(path) = &cfg.json {
                write_json(path, &report)?;
            }
            if let Some(dir) = &cfg.plot_dir {
                let files = loadtest::plot::write_all(dir, &report)?;
                if !cfg.quiet {
                    eprintln!("plots: {}", files.len());
                    for f in files {
                        eprintln!("  {}", f.display());
                    }
                }
            }
            Ok(if report.all_completed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Answer(args) => {
            let cfg = args.check()?;
            let report = runtime.block_on(loadtest::answer::run(cfg.clone()))?;
            print!("{}", report.summary());
            if let Some(path) = &cfg.json {
                write_json(path, &report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
