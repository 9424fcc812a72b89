//! What every multi-worker job of a pipeline shares: the resolved config written into the run
//! folder for the ranks to read, and this node's world with rank 0's events appended to the
//! job's `rank0.jsonl` and shown as they come, restarted after a failure while the job's
//! restart budget lasts ([`crate::restarts`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use arl_contract::config::launch::LaunchConfig;
use arl_contract::locations::{events_log, logs_dir};
use arl_contract::rank_env::{RESTART_COUNT_VAR, RUN_TOKEN_VAR};
use arl_contract::{Event, JobConfig};

use crate::console;
use crate::failure::Failure;
use crate::liveness::Liveness;
use crate::membership::{Membership, members_of};
use crate::progress;
use crate::restarts::{RoundRecord, Rounds};
use crate::spawn::WorldSpec;
use crate::spawn::worker_binary;
use crate::topology::Topology;
use crate::watchdog::Limits;
use crate::world::{ROUND_POLL, Watch, WorldEnd, WorldFailure, run_watched};

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
/// When a rank fails or stalls after the job's first completed step, every rank is stopped
/// and the world restarts (resuming from the newest committed checkpoint) after a back-off,
/// up to `launch.max_restarts` times in this launch over every node.
///
/// # Errors
/// A failure before the first completed step ([`Failure::StartUp`]) or after the budget
/// ([`Failure::BudgetSpent`]): the rank named, with the tail of its log.
pub fn run_job(
    config: &JobConfig,
    job: &str,
    args: Vec<String>,
    dir: &Path,
) -> anyhow::Result<JobOutput> {
    let _lock = lock_checkpoints(config, job)?;
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
    let mut spec = WorldSpec {
        program: worker_binary()?,
        args,
        topology: Topology::of(&config.launch)?,
        env: Vec::new(),
        on_rank0_line: Some(Arc::new(on_line)),
        kill_grace: std::time::Duration::from_secs_f64(config.launch.kill_grace_s),
        log_dir: Some(logs_dir(dir)),
    };
    let (rounds, shared) = rounds_dir(config, job, dir);
    let outcome = supervise_restarts(config, job, &mut spec, &rounds, shared);
    console::finish_bar();
    let stopped_by = outcome?;
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(JobOutput { events, stopped_by })
}

/// On the first node, the lock of job `job`'s checkpoint location, held while its worlds run
/// (across restarts): a second run on the same location is refused, naming the owner.
///
/// # Errors
/// Another live run holds it ([`Failure::StartUp`]), or the location cannot be written.
fn lock_checkpoints(
    config: &JobConfig,
    job: &str,
) -> anyhow::Result<Option<arl_checkpoints::lock::LocationLock>> {
    // The node's index as the launch resolves it (SLURM's node id inside a job step).
    if Topology::layout(&config.launch)?.node_rank != 0 {
        return Ok(None);
    }
    let at = config.locations();
    let location = if job == arl_contract::PRETRAIN_JOB {
        at.checkpoints()
    } else {
        at.finetune_checkpoints(job)
    };
    let lock = arl_checkpoints::lock::acquire(&location, &[]).map_err(Failure::start_up)?;
    if let Some(stale) = &lock.taken_over {
        console::line(&format!(
            "arl: took over the lock of {location}: its owner, {stale}, is gone"
        ));
    }
    Ok(Some(lock))
}

/// The rendezvous token of job `job`'s world of round `round`, so that no rank joins a store
/// that is not its world's: from the job, the run (`launch.run_id`, else `SLURM_JOB_ID`, else
/// the job's shared state location, which every node of a run shares) and the round.
pub fn run_token(config: &JobConfig, job: &str, round: u32) -> String {
    let run = match config.launch.run_id.as_str() {
        "" => std::env::var("SLURM_JOB_ID").unwrap_or_else(|_| config.locations().restarts(job)),
        id => id.to_owned(),
    };
    let hash = arl_checkpoints::manifest::sha256_hex(format!("{job}\n{run}\n{round}").as_bytes());
    hash[..16].to_owned()
}

/// The folder of job `job`'s restart rounds and whether the nodes share it: its shared
/// state's ([`arl_contract::Locations::restarts`]), or, when that is an object store, the job
/// folder `dir`, where the count is this node's alone.
fn rounds_dir(config: &JobConfig, job: &str, dir: &Path) -> (PathBuf, bool) {
    let shared = config.locations().restarts(job);
    if shared.contains("://") {
        console::line(&format!(
            "arl: warning: the restart budget is counted per node (in {}), and the job waits for \
             every node: {shared} is an object store",
            dir.join("restarts").display()
        ));
        return (dir.join("restarts"), false);
    }
    (PathBuf::from(shared), true)
}

/// Runs worlds of `spec` until one ends without a failure (returns the stop signal, if one
/// ended it) or the failures may not be retried.
fn supervise_restarts(
    config: &JobConfig,
    job: &str,
    spec: &mut WorldSpec,
    rounds_dir: &Path,
    shared: bool,
) -> anyhow::Result<Option<i32>> {
    let launch = &config.launch;
    let rounds = Rounds::open(rounds_dir)?;
    let full = spec.topology.clone();
    let membership = (full.nnodes > 1).then(|| Membership {
        liveness: Liveness::new(rounds_dir, full.node_rank, full.nnodes, &full.node_addr),
        // Without a folder every node sees, no node could tell a lost one from its own
        // isolation: the world waits for all.
        min_nnodes: if shared {
            launch.min_nodes()
        } else {
            full.nnodes
        },
        rejoin_timeout: Duration::from_secs_f64(launch.rejoin_timeout_s),
        full: full.clone(),
    });
    let mut round = rounds.base();
    // The nodes of this round's world (those of the round this launch joins).
    let mut members = match &membership {
        Some(m) if round > 0 => members_of(&rounds, round, m).unwrap_or_else(|| m.all()),
        Some(m) => m.all(),
        None => Vec::new(),
    };
    let mut stepped = false;
    // Worlds in a row that failed without completing a step (they double the back-off).
    let mut barren = 0;
    loop {
        if let Some(membership) = &membership {
            match membership.topology(&members)? {
                Some(topology) => spec.topology = topology,
                None => {
                    (round, members) = membership.wait_for_admission(&rounds, round)?;
                    continue;
                }
            }
        }
        let restarts = round - rounds.base();
        spec.env = vec![
            (RESTART_COUNT_VAR.to_owned(), restarts.to_string()),
            (RUN_TOKEN_VAR.to_owned(), run_token(config, job, round)),
        ];
        let newer_round = || rounds.latest().ok().filter(|&latest| latest > round);
        let watch = Watch {
            limits: Limits::of(config),
            round,
            newer_round: &newer_round,
            liveness: membership.as_ref().map(|m| &m.liveness),
        };
        let supervised = run_watched(spec, &watch)?;
        stepped |= supervised.stepped;
        barren = if supervised.stepped { 0 } else { barren + 1 };
        let failure = match supervised.end {
            WorldEnd::Done(output) => return Ok(output.stopped_by),
            WorldEnd::Superseded { round: newer } => {
                console::line(&format!(
                    "arl: another node started round {newer} of the job; this node's ranks \
                     were stopped and join it"
                ));
                round = newer;
                if let Some(membership) = &membership {
                    members = wait_members(&rounds, round, membership);
                }
                continue;
            }
            WorldEnd::Failed(failure) => failure,
        };
        if let Some(end) = ending(&failure, stepped, restarts, launch.max_restarts) {
            return end;
        }
        let backoff = backoff_s(launch, barren, full.nnodes);
        let next = membership.as_ref().map(Membership::after_failure);
        round = restart(&rounds, round + 1, &failure, config, backoff, next.clone())?;
        if let (Some(membership), Some(_)) = (&membership, next) {
            members = wait_members(&rounds, round, membership);
        }
    }
}

/// How the job ends after `failure`, unless it may restart: with the stop signal the user sent,
/// or with a failure before the first completed step, or after the budget.
fn ending(
    failure: &WorldFailure,
    stepped: bool,
    restarts: u32,
    max_restarts: u32,
) -> Option<anyhow::Result<Option<i32>>> {
    if let Some(signal) = failure.stopped_by {
        console::line(&format!("arl: {}", failure.message));
        return Some(Ok(Some(signal)));
    }
    if !stepped {
        return Some(Err(Failure::StartUp(format!(
            "{} (before the first completed step: not retried)",
            failure.message
        ))
        .into()));
    }
    (restarts >= max_restarts).then(|| {
        Err(Failure::BudgetSpent {
            message: failure.message.clone(),
            restarts,
            max: max_restarts,
        }
        .into())
    })
}

/// Seconds to wait before a restart after `barren` worlds in a row without a step; on several
/// nodes long enough that every other node has seen the new round and stopped its old world
/// (whose rank 0 serves the store on the same port) before this node's new ranks connect.
fn backoff_s(launch: &LaunchConfig, barren: u32, nnodes: usize) -> f64 {
    let backoff = launch.backoff_s(barren);
    match nnodes {
        1 => backoff,
        _ => backoff.max(3.0 * ROUND_POLL.as_secs_f64()),
    }
}

/// The members of round `round`, once its record can be read.
fn wait_members(rounds: &Rounds, round: u32, membership: &Membership) -> Vec<usize> {
    for _ in 0..200 {
        if let Some(members) = members_of(rounds, round, membership) {
            return members;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    membership.all()
}

/// Claims round `next` for `failure` (or joins it, when another node already has), waits the
/// back-off, and returns the round to run.
fn restart(
    rounds: &Rounds,
    next: u32,
    failure: &WorldFailure,
    config: &JobConfig,
    backoff: f64,
    members: Option<Vec<usize>>,
) -> anyhow::Result<u32> {
    let restart = next - rounds.base();
    let record = RoundRecord {
        round: next,
        node: config.launch.node_rank,
        rank: failure.rank,
        reason: failure.reason.clone(),
        decided_at: failure.decided_at,
        members: members.unwrap_or_default(),
    };
    let by = match rounds.claim(&record)? {
        true => String::new(),
        false => " (claimed by another node)".to_owned(),
    };
    console::line(&format!(
        "arl: {}\narl: restart {restart} of {}{by}: every rank resumes from the newest committed \
         checkpoint in {backoff:.1} s",
        failure.message, config.launch.max_restarts
    ));
    std::thread::sleep(std::time::Duration::from_secs_f64(backoff));
    Ok(next)
}

/// The command line of `arl-worker SUBCOMMAND --config <resolved config>`.
pub fn worker_args(subcommand: &str, resolved: &Path) -> Vec<String> {
    vec![
        subcommand.to_owned(),
        "--config".to_owned(),
        resolved.to_string_lossy().into_owned(),
    ]
}
