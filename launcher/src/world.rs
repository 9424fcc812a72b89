//! This node's share of a world: its ranks ([`crate::spawn`]) supervised until all exit.
//!
//! - The first rank to fail ends the world: the others are killed, and the error names the
//!   rank, its exit status and the last lines of its log.
//! - SIGINT, SIGTERM and SIGUSR1 are forwarded to every rank, which checkpoint at the next step
//!   boundary and exit; a second SIGINT or SIGTERM kills them at once.

use std::os::unix::process::ExitStatusExt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::console;
use crate::spawn::{RankProcess, WorldSpec, free_port};

/// How a world ended without a failure.
#[derive(Debug)]
pub struct WorldOutput {
    /// Each local rank's standard output lines.
    pub stdout: Vec<Vec<String>>,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<i32>,
}

/// Runs this node's ranks to completion.
///
/// # Errors
/// A rank that cannot start or that exits unsuccessfully: named, with its exit status and the
/// tail of its log.
pub fn run_world(spec: &WorldSpec) -> anyhow::Result<WorldOutput> {
    let topology = &spec.topology;
    let port = match topology.master_port {
        0 => free_port(&topology.master_addr)?,
        port => port,
    };
    if let Some(dir) = &spec.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut signals = caught_signals()?.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(signal) = signals.pending().next() {
        // Asked to stop before this world started: start nothing.
        return Ok(WorldOutput {
            stdout: Vec::new(),
            stopped_by: Some(signal),
        });
    }
    let mut ranks = Vec::with_capacity(topology.nproc_per_node);
    for local in 0..topology.nproc_per_node {
        match RankProcess::start(spec, local, port) {
            Ok(rank) => ranks.push(rank),
            Err(error) => {
                for rank in &mut ranks {
                    let _ = rank.child.kill();
                    let _ = rank.child.wait();
                }
                return Err(error);
            }
        }
    }
    let ended = supervise(&mut ranks, &mut signals);
    let stdout = ranks.iter_mut().map(RankProcess::join).collect();
    match ended {
        Ended::Failed { local, status } => {
            let rank = &ranks[local];
            bail!(
                "rank {} of {} failed ({status}); the other ranks were stopped.{}",
                rank.rank,
                topology.world_size(),
                rank.tail()
            )
        }
        Ended::Done { stopped_by } => Ok(WorldOutput { stdout, stopped_by }),
    }
}

/// The launcher's stop signals, caught from the first world on for the life of the process
/// (signal handlers cannot be given back), so one that arrives between worlds is kept for the
/// next one instead of being lost.
fn caught_signals() -> anyhow::Result<&'static Mutex<Signals>> {
    static SIGNALS: OnceLock<Mutex<Signals>> = OnceLock::new();
    if let Some(signals) = SIGNALS.get() {
        return Ok(signals);
    }
    let signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).context("catching signals")?;
    Ok(SIGNALS.get_or_init(|| Mutex::new(signals)))
}

/// How supervision ended.
enum Ended {
    Failed {
        local: usize,
        status: std::process::ExitStatus,
    },
    Done {
        stopped_by: Option<i32>,
    },
}

/// Waits for every rank, forwarding signals; on the first failure kills the rest. Of ranks
/// found failed in the same pass, one killed by a signal is blamed first (the others usually
/// failed because it vanished from their collectives).
fn supervise(ranks: &mut [RankProcess], signals: &mut Signals) -> Ended {
    let mut done = vec![false; ranks.len()];
    let mut stopped_by = None;
    let mut interrupts = 0;
    while done.iter().any(|d| !d) {
        for signal in signals.pending() {
            // SIGUSR1 (a scheduler's warning) never escalates; a repeated SIGINT or SIGTERM
            // kills.
            if signal != SIGUSR1 {
                interrupts += 1;
            }
            stopped_by.get_or_insert(signal);
            let forced = interrupts > 1;
            let forward = match Signal::try_from(signal) {
                _ if forced => Signal::SIGKILL,
                Ok(forward) => forward,
                Err(_) => continue,
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
                    " (they checkpoint at the next step boundary; send it again to kill them)"
                }
            ));
            for (local, rank) in ranks.iter().enumerate() {
                if !done[local] {
                    rank.signal(forward);
                }
            }
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
            for rank in ranks.iter_mut() {
                let _ = rank.child.kill();
                let _ = rank.child.wait();
            }
            return Ended::Failed { local, status };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ended::Done { stopped_by }
}
