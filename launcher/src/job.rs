//! What every multi-worker job of a pipeline shares: the resolved config written into the run
//! folder, the worker's check of it before any rank starts, and this node's world with rank 0's
//! JSON lines appended to the job's `rank0.jsonl` and turned into progress as they come.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

use crate::config::Config;
use crate::console;
use crate::paths;
use crate::topology::Topology;
use crate::world::{WorldOutput, WorldSpec, log_dir, run_world};

/// Writes `config` as `<dir>/config.toml` (whole, then renamed into place: the other nodes of
/// a job may be reading it); returns its path.
///
/// # Errors
/// The folder or the file cannot be written.
pub fn write_resolved(config: &Config, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let resolved = dir.join("config.toml");
    let staged = dir.join(format!(".config.toml.{}", std::process::id()));
    std::fs::write(&staged, toml::to_string(config)?)
        .and_then(|()| std::fs::rename(&staged, &resolved))
        .with_context(|| format!("writing {}", resolved.display()))?;
    Ok(resolved)
}

/// Runs `arl-worker ARGS` once, as a check: its error message becomes ours.
///
/// # Errors
/// The check fails (the worker's message), or the worker cannot start.
pub fn worker_check(args: &[&str]) -> anyhow::Result<()> {
    let check = std::process::Command::new(paths::worker_binary()?)
        .args(args)
        .output()?;
    if !check.status.success() {
        bail!("{}", String::from_utf8_lossy(&check.stderr).trim());
    }
    Ok(())
}

/// Runs this node's ranks of `arl-worker ARGS`; rank 0's lines are appended to
/// `<dir>/rank0.jsonl` (one log across restarts) and handed to `progress`; the ranks' logs go
/// to `<dir>/logs`.
///
/// # Errors
/// A rank that fails (named, with the tail of its log).
pub fn run_job(
    config: &Config,
    args: Vec<String>,
    dir: &Path,
    progress: fn(&str),
) -> anyhow::Result<WorldOutput> {
    let log = dir.join("rank0.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let file = Mutex::new(file);
    let on_line = move |line: &str| {
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = writeln!(file, "{line}") {
            console::line(&format!("arl: writing {}: {error}", log.display()));
        }
        progress(line);
    };
    let spec = WorldSpec {
        program: paths::worker_binary()?,
        args,
        topology: Topology::of(&config.launch)?,
        env: Vec::new(),
        on_rank0_line: Some(Arc::new(on_line)),
        log_dir: Some(log_dir(dir)),
    };
    let outcome = run_world(&spec);
    console::finish_bar();
    outcome
}

/// The step of the last `{"stopped": STEP}` line of rank 0.
pub fn stopped_at(output: &WorldOutput) -> Option<u64> {
    output.stdout.first()?.iter().rev().find_map(|line| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["stopped"].as_u64())
    })
}
