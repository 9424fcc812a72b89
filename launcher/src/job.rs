//! What every multi-worker job of a pipeline shares: the resolved config written into the run
//! folder for the ranks to read, and this node's world with rank 0's events appended to the
//! job's `rank0.jsonl` and shown as they come.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arl_contract::locations::{events_log, logs_dir};
use arl_contract::{Event, JobConfig};

use crate::console;
use crate::progress;
use crate::spawn::WorldSpec;
use crate::spawn::worker_binary;
use crate::topology::Topology;
use crate::world::run_world;

/// Writes `config` as the run folder's `config.toml` (whole, then renamed into place: the other
/// nodes of a job may be reading it); returns its path.
///
/// # Errors
/// The folder or the file cannot be written.
pub fn write_resolved(config: &JobConfig) -> anyhow::Result<PathBuf> {
    let resolved = config.locations().resolved_config();
    let dir = resolved.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staged = dir.join(format!(".config.toml.{}", std::process::id()));
    std::fs::write(&staged, config.resolved_toml()?)
        .and_then(|()| std::fs::rename(&staged, &resolved))
        .with_context(|| format!("writing {}", resolved.display()))?;
    Ok(resolved)
}

/// How a job's world ended without a failure.
#[derive(Debug, Default)]
pub struct JobOutput {
    /// Rank 0's events (on the node of rank 0).
    pub events: Vec<Event>,
    /// The signal that stopped the job early, if one did.
    pub stopped_by: Option<i32>,
}

impl JobOutput {
    /// The signal that stopped the job and the step of its last checkpoint, if one did.
    pub fn stopped(&self) -> Option<(i32, Option<u64>)> {
        let signal = self.stopped_by?;
        let step = self.events.iter().rev().find_map(|event| match event {
            Event::Stopped { step, .. } => Some(*step),
            _ => None,
        });
        Some((signal, step))
    }
}

/// Runs this node's ranks of `arl-worker ARGS`; rank 0's events are appended to
/// `<dir>/rank0.jsonl` (one log across restarts) and shown; the ranks' logs go to
/// `<dir>/logs`. A line of rank 0 that is not an event is shown as a warning, never dropped.
///
/// # Errors
/// A rank that fails (named, with the tail of its log).
pub fn run_job(config: &JobConfig, args: Vec<String>, dir: &Path) -> anyhow::Result<JobOutput> {
    let log = events_log(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let file = Mutex::new(file);
    let events = Arc::new(Mutex::new(Vec::new()));
    let collected = events.clone();
    let on_line = move |line: &str| {
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = writeln!(file, "{line}") {
            console::line(&format!("arl: writing {}: {error}", log.display()));
        }
        match Event::parse(line) {
            Ok(event) => {
                progress::show(&event);
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(event);
            }
            Err(error) => console::line(&format!("arl: warning: rank 0 printed {error:#}")),
        }
    };
    let spec = WorldSpec {
        program: worker_binary()?,
        args,
        topology: Topology::of(&config.launch)?,
        env: Vec::new(),
        on_rank0_line: Some(Arc::new(on_line)),
        log_dir: Some(logs_dir(dir)),
    };
    let outcome = run_world(&spec);
    console::finish_bar();
    let stopped_by = outcome?.stopped_by;
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(JobOutput { events, stopped_by })
}

/// The command line of `arl-worker SUBCOMMAND --config <resolved config>`.
pub fn worker_args(subcommand: &str, resolved: &Path) -> Vec<String> {
    vec![
        subcommand.to_owned(),
        "--config".to_owned(),
        resolved.to_string_lossy().into_owned(),
    ]
}
