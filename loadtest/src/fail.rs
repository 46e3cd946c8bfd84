//! The injected failure: a shell command run at a given moment of the run
//! (`kill -9 <pid>`, `ip link set … down`), bounded in time.

use std::process::Stdio;
use std::time::Duration;

/// What the failure command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutcome {
    pub exit_code: Option<i32>,
    /// Still running at the limit, so it was killed (with its process
    /// group).
    pub timed_out: bool,
    /// It could not be started.
    pub error: Option<String>,
    /// Standard output then standard error, at most 4 KiB.
    pub output: String,
}

const OUTPUT_LIMIT: usize = 4096;

/// Runs `sh -c command` in its own process group and waits at most
/// `limit`; past it the whole group is killed.
pub async fn run(command: &str, limit: Duration) -> CommandOutcome {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return CommandOutcome {
                error: Some(format!("cannot start sh: {e}")),
                ..CommandOutcome::default()
            }
        }
    };
    let pid = child.id();
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if text.len() > OUTPUT_LIMIT {
                let mut cut = OUTPUT_LIMIT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            CommandOutcome {
                exit_code: out.status.code(),
                output: text,
                ..CommandOutcome::default()
            }
        }
        Ok(Err(e)) => CommandOutcome {
            error: Some(format!("waiting for the command: {e}")),
            ..CommandOutcome::default()
        },
        Err(_) => {
            // The child itself was killed when its future was dropped; its
            // process group may hold more (a pipeline, a background job).
            if let Some(pid) = pid {
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
            CommandOutcome {
                timed_out: true,
                ..CommandOutcome::default()
            }
        }
    }
}

#[cfg(test)]
mod tests;
