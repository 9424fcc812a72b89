//! This node's share of a world: its ranks ([`crate::spawn`]) supervised until all exit.
//!
//! - The first rank to fail ends the world: the others are killed, and the failure names the
//!   rank, its exit status and the last lines of its log.
//! - A watched world ([`run_watched`]) also ends when the hang watchdog finds a stalled rank
//!   ([`crate::watchdog`]), which it names, or when another node has started a newer round;
//!   on a failure each rank's last collectives are written to `collectives.round<N>.json` in
//!   the log folder (the flight recorder).
//! - SIGINT, SIGTERM and SIGUSR1 are forwarded to every rank, which checkpoint at the next step
//!   boundary and exit; a second SIGINT or SIGTERM kills them after `launch.kill_grace_s` (a
//!   commit in flight finishes), a third at once.

use std::os::unix::process::ExitStatusExt;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nix::sys::signal::Signal;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGKILL, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::console;
use crate::heartbeats::RankProgress;
use crate::liveness::{self, Liveness};
use crate::restarts::unix_now;
use crate::spawn::{RankProcess, WorldSpec, free_port};
use crate::watchdog::{Limits, Stall, Watched, find_stall};

/// How a world ended without a failure.
#[derive(Debug)]
pub struct WorldOutput {
    /// Each local rank's standard output lines.
    pub stdout: Vec<Vec<String>>,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<i32>,
}

/// What a watched world looks out for besides failed ranks.
pub struct Watch<'a> {
    /// The watchdog's limits.
    pub limits: Limits,
    /// The world's round (restarts of the job so far).
    pub round: u32,
    /// A round newer than this world's, if another node has started one.
    pub newer_round: &'a dyn Fn() -> Option<u32>,
    /// The job's nodes, when there are several.
    pub liveness: Option<&'a Liveness>,
}

/// A world that failed.
#[derive(Debug)]
pub struct WorldFailure {
    /// The global rank blamed.
    pub rank: usize,
    /// What happened to it, in a few words.
    pub reason: String,
    /// The whole account: the rank, the tail of its log, the collectives.
    pub message: String,
    /// When the launcher decided, in seconds since the Unix epoch.
    pub decided_at: f64,
    /// A stop signal the user had sent (the ranks were then killed on a second one).
    pub stopped_by: Option<i32>,
}

/// How a watched world ended.
#[derive(Debug)]
pub enum WorldEnd {
    /// Every rank exited successfully.
    Done(WorldOutput),
    /// A rank failed or stalled; every rank was stopped.
    Failed(WorldFailure),
    /// Another node started round `round`; every rank was stopped.
    Superseded {
        /// The newer round.
        round: u32,
    },
}

/// A watched world's end, and whether any of its ranks completed a step.
#[derive(Debug)]
pub struct Supervised {
    /// How it ended.
    pub end: WorldEnd,
    /// Whether a rank of this node completed a step in it.
    pub stepped: bool,
}

/// Runs this node's ranks to completion, without heartbeats (ranks that die of a stop signal
/// the user sent end it as stopped).
///
/// # Errors
/// A rank that cannot start or that exits unsuccessfully: named, with its exit status and the
/// tail of its log.
pub fn run_world(spec: &WorldSpec) -> anyhow::Result<WorldOutput> {
    match run(spec, None)?.end {
        WorldEnd::Done(output) => Ok(output),
        // The ranks died of the user's stop signal: a stop, not a failure.
        WorldEnd::Failed(WorldFailure {
            stopped_by: Some(signal),
            ..
        }) => Ok(WorldOutput {
            stdout: Vec::new(),
            stopped_by: Some(signal),
        }),
        WorldEnd::Failed(failure) => Err(anyhow!(failure.message)),
        WorldEnd::Superseded { .. } => unreachable!("an unwatched world is never superseded"),
    }
}

/// Runs this node's ranks with heartbeats, under `watch`.
///
/// # Errors
/// A rank that cannot start.
pub fn run_watched(spec: &WorldSpec, watch: &Watch<'_>) -> anyhow::Result<Supervised> {
    run(spec, Some(watch))
}

fn run(spec: &WorldSpec, watch: Option<&Watch<'_>>) -> anyhow::Result<Supervised> {
    let topology = &spec.topology;
    let port = match topology.master_port {
        0 => free_port(&topology.master_addr)?,
        port => port,
    };
    if let Some(dir) = &spec.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut signals = caught_signals()?;
    if let Some(signal) = signals.pending().next() {
        // Asked to stop before this world started: start nothing.
        return Ok(Supervised {
            end: WorldEnd::Done(WorldOutput {
                stdout: Vec::new(),
                stopped_by: Some(signal),
            }),
            stepped: false,
        });
    }
    let round = watch.map_or(0, |w| w.round);
    let mut ranks = Vec::with_capacity(topology.nproc_per_node);
    for local in 0..topology.nproc_per_node {
        match RankProcess::start(spec, local, port, watch.is_some(), round) {
            Ok(rank) => ranks.push(rank),
            Err(error) => {
                kill_all(&mut ranks);
                return Err(error);
            }
        }
    }
    let ended = supervise(&mut ranks, &mut signals, watch, spec.kill_grace);
    let decided_at = unix_now();
    let flight = watch.and(spec.log_dir.as_ref()).map(|dir| {
        let path = dir.join(format!("collectives.round{round}.json"));
        (path, flight_records(&ranks))
    });
    let stdout: Vec<Vec<String>> = ranks.iter_mut().map(RankProcess::join).collect();
    let stepped = ranks.iter().any(|r| {
        r.progress
            .as_ref()
            .is_some_and(|p| lock(p).completed.is_some())
    });
    let world = topology.world_size();
    let (blamed, reason, stopped_by) = match ended {
        Ended::Done { stopped_by } => {
            let end = WorldEnd::Done(WorldOutput { stdout, stopped_by });
            return Ok(Supervised { end, stepped });
        }
        Ended::Superseded { round } => {
            let end = WorldEnd::Superseded { round };
            return Ok(Supervised { end, stepped });
        }
        Ended::Failed {
            local,
            status,
            stopped_by,
        } => (local, format!("failed ({status})"), stopped_by),
        Ended::Stalled {
            stall,
            described,
            stopped_by,
        } => {
            let stopped = if stall.stopped {
                ", its process stopped"
            } else {
                ""
            };
            let reason = format!(
                "stalled: no progress past the watchdog's limit of {:.1} s ({described}{stopped})",
                stall.limit_s
            );
            (stall.local, reason, stopped_by)
        }
    };
    let rank = &ranks[blamed];
    let lost = watch
        .and_then(|w| w.liveness)
        .map(liveness::losses)
        .filter(|losses| !losses.is_empty())
        .map_or(String::new(), |losses| format!(" Nodes: {losses}."));
    let mut message = format!(
        "rank {} of {world} {reason}; the other ranks were stopped.{lost}{}",
        rank.rank,
        rank.tail()
    );
    if let Some((path, records)) = flight {
        let written = serde_json::to_vec_pretty(&json!({ "round": round, "ranks": records }))
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(std::fs::write(&path, bytes)?));
        match written {
            Ok(()) => message.push_str(&format!(
                "\nEach rank's last collectives: {}",
                path.display()
            )),
            Err(error) => console::line(&format!("arl: writing {}: {error}", path.display())),
        }
    }
    let failure = WorldFailure {
        rank: rank.rank,
        reason,
        message,
        decided_at,
        stopped_by,
    };
    Ok(Supervised {
        end: WorldEnd::Failed(failure),
        stepped,
    })
}

/// Every watched rank's flight record.
fn flight_records(ranks: &[RankProcess]) -> Vec<serde_json::Value> {
    let now = Instant::now();
    ranks
        .iter()
        .filter_map(|r| Some(lock(r.progress.as_ref()?).flight_record(r.rank, now)))
        .collect()
}

fn lock(progress: &Mutex<RankProgress>) -> MutexGuard<'_, RankProgress> {
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

/// The launcher's stop signals, caught from the first world on for the life of the process
/// (signal handlers cannot be given back), so one that arrives between worlds is kept for the
/// next one instead of being lost.
fn caught_signals() -> anyhow::Result<MutexGuard<'static, Signals>> {
    static SIGNALS: OnceLock<Mutex<Signals>> = OnceLock::new();
    let signals = match SIGNALS.get() {
        Some(signals) => signals,
        None => {
            let signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).context("catching signals")?;
            SIGNALS.get_or_init(|| Mutex::new(signals))
        }
    };
    Ok(signals.lock().unwrap_or_else(|e| e.into_inner()))
}

/// How supervision ended.
enum Ended {
    Failed {
        local: usize,
        status: std::process::ExitStatus,
        stopped_by: Option<i32>,
    },
    Stalled {
        stall: Stall,
        described: String,
        stopped_by: Option<i32>,
    },
    Superseded {
        round: u32,
    },
    Done {
        stopped_by: Option<i32>,
    },
}

/// How often a watched world looks for a newer round.
pub const ROUND_POLL: Duration = Duration::from_millis(500);

/// Waits for every rank, forwarding signals; on the first failure, stall or newer round kills
/// them all. Of ranks found failed in the same pass, one killed by a signal is blamed first
/// (the others usually failed because it vanished from their collectives).
fn supervise(
    ranks: &mut [RankProcess],
    signals: &mut Signals,
    watch: Option<&Watch<'_>>,
    grace: Duration,
) -> Ended {
    let mut done = vec![false; ranks.len()];
    let mut stopped_by = None;
    let mut interrupts = 0;
    let mut kill_at: Option<Instant> = None;
    let mut polled = Instant::now();
    let mut reported_lost = false;
    while done.iter().any(|d| !d) {
        for signal in signals.pending() {
            // SIGUSR1 (a scheduler's warning) never escalates; a repeated SIGINT or SIGTERM
            // kills.
            if signal != SIGUSR1 {
                interrupts += 1;
            }
            stopped_by.get_or_insert(signal);
            match interrupts {
                2 => {
                    kill_at = Some(Instant::now() + grace);
                    console::line(&format!(
                        "arl: the ranks are killed in {:.0} s unless they finish first (a \
                         checkpoint being committed is kept); send it again to kill them now",
                        grace.as_secs_f64()
                    ));
                }
                _ => forward(ranks, &done, signal, interrupts > 2),
            }
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            kill_at = None;
            forward(ranks, &done, SIGKILL, true);
        }
        let mut failed = Vec::new();
        for (local, rank) in ranks.iter_mut().enumerate() {
            if done[local] {
                continue;
            }
            match rank.child.try_wait() {
                Ok(Some(status)) if status.success() => done[local] = true,
                Ok(Some(status)) => failed.push((local, status)),
                Ok(None) | Err(_) => {}
            }
        }
        if let Some(&(local, status)) = failed
            .iter()
            .find(|(_, status)| status.signal().is_some())
            .or(failed.first())
        {
            kill_all(ranks);
            return Ended::Failed {
                local,
                status,
                stopped_by,
            };
        }
        if let Some(watch) = watch {
            if let Some((stall, described)) = stalled(ranks, &done, &watch.limits) {
                kill_all(ranks);
                return Ended::Stalled {
                    stall,
                    described,
                    stopped_by,
                };
            }
            if polled.elapsed() >= ROUND_POLL {
                polled = Instant::now();
                if let Some(round) = (watch.newer_round)() {
                    kill_all(ranks);
                    return Ended::Superseded { round };
                }
                if let Some(liveness) = watch.liveness {
                    beat_and_report(liveness, &mut reported_lost);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ended::Done { stopped_by }
}

/// Beats this node's liveness and, once per world, says which nodes are lost or unreachable.
fn beat_and_report(liveness: &Liveness, reported: &mut bool) {
    liveness.beat();
    let losses = liveness::losses(liveness);
    if !losses.is_empty() && !*reported {
        *reported = true;
        console::line(&format!(
            "arl: {losses}; this node's ranks wait for it (at most dist.init_timeout_s at a \
             rendezvous, dist.timeout_s in a collective)"
        ));
    }
}

/// The stalled rank among those still running, with its state in words.
fn stalled(ranks: &[RankProcess], done: &[bool], limits: &Limits) -> Option<(Stall, String)> {
    let running: Vec<(usize, MutexGuard<'_, RankProgress>, u32)> = ranks
        .iter()
        .enumerate()
        .filter(|(local, _)| !done[*local])
        .filter_map(|(local, r)| Some((local, lock(r.progress.as_ref()?), r.child.id())))
        .collect();
    let watched: Vec<Watched<'_>> = running
        .iter()
        .map(|(_, progress, pid)| Watched {
            pid: *pid,
            progress,
        })
        .collect();
    let now = Instant::now();
    let mut stall = find_stall(&watched, limits, now)?;
    let described = running[stall.local].1.describe(now);
    stall.local = running[stall.local].0;
    Some((stall, described))
}

/// Forwards a stop signal to the running ranks (SIGKILL when `forced`).
fn forward(ranks: &[RankProcess], done: &[bool], signal: i32, forced: bool) {
    let forward = match Signal::try_from(signal) {
        _ if forced => Signal::SIGKILL,
        Ok(forward) => forward,
        Err(_) => return,
    };
    console::line(&format!(
        "arl: {} ranks: {forward}{}",
        if forced {
            "killing the"
        } else {
            "forwarding to the"
        },
        if forced {
            ""
        } else {
            " (they checkpoint at the next step boundary; a second signal kills them after \
             launch.kill_grace_s)"
        }
    ));
    for (local, rank) in ranks.iter().enumerate() {
        if !done[local] {
            rank.signal(forward);
        }
    }
}

fn kill_all(ranks: &mut [RankProcess]) {
    for rank in ranks {
        let _ = rank.child.kill();
        let _ = rank.child.wait();
    }
}
