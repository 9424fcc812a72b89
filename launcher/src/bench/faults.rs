//! The fault injector of `arl bench chaos`: it watches a running `arl pretrain` through its run
//! folder (the events log, the restart rounds, the checkpoints) and its workers through /proc,
//! and kills or stops a rank at the moment a fault asks for.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use arl_contract::Event;
use arl_contract::locations::events_log;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::restarts::{Rounds, unix_now};

/// When a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// After a delay into the world's training.
    Random,
    /// While rank 0 writes a checkpoint (a checkpoint folder without its commit marker).
    CheckpointWrite,
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// SIGKILL or SIGSTOP.
    pub signal: Signal,
    /// The rank it strikes.
    pub rank: usize,
    /// When.
    pub moment: Moment,
    /// Seconds after the world's first step, for [`Moment::Random`].
    pub delay_s: f64,
}

/// What became of a fault.
#[derive(Debug, Clone)]
pub struct Injected {
    /// The fault.
    pub fault: Fault,
    /// The last step logged before it struck.
    pub step: u64,
    /// Whether it struck while a checkpoint was being written.
    pub in_checkpoint_write: bool,
    /// Seconds from the fault to the launcher's decision.
    pub detect_s: f64,
    /// Seconds from the decision to the first step of the new world.
    pub restart_s: f64,
    /// What the launcher said of it.
    pub reason: String,
}

/// The run under test.
pub struct Target {
    /// Its run folder.
    pub run_dir: PathBuf,
    /// Its checkpoint folder.
    pub checkpoints: PathBuf,
    /// Its restart rounds.
    pub restarts: PathBuf,
}

/// How long any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(600);

impl Target {
    /// The steps logged so far (every step event, in order).
    fn steps(&self) -> Vec<u64> {
        let text = std::fs::read_to_string(events_log(&self.run_dir)).unwrap_or_default();
        text.lines()
            .filter_map(|line| match Event::parse(line) {
                Ok(Event::Step(step)) => Some(step.step),
                _ => None,
            })
            .collect()
    }

    /// Waits until a step is logged beyond the first `seen` step events; returns when.
    fn wait_for_new_step(&self, seen: usize, running: &dyn Fn() -> bool) -> anyhow::Result<f64> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.steps().len() > seen {
                return Ok(unix_now());
            }
            if !running() {
                bail!("the run ended while a step was awaited");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("no new step within {PATIENCE:?}")
    }

    /// Whether a checkpoint is being written: a folder without its commit marker that gained
    /// files after `since` (a killed write leaves one behind, untouched).
    fn writing_checkpoint(&self, since: SystemTime) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.checkpoints) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let dir = entry.path();
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && !dir.join("COMMITTED").exists()
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified > since)
        })
    }

    /// Strikes with `fault` once the world has stepped; waits for the launcher's decision and
    /// the new world's first step. `running` says whether `arl` still runs.
    ///
    /// # Errors
    /// The run ended, or never reached the moment, or never restarted.
    pub fn inject(&self, fault: Fault, running: &dyn Fn() -> bool) -> anyhow::Result<Injected> {
        let rounds = Rounds::open(&self.restarts)?;
        let round = rounds.latest()?;
        let seen = self.steps().len();
        self.wait_for_new_step(seen.saturating_sub(1), running)?;
        // Found before the moment, so that the signal follows it at once.
        let pid = worker_pid(&self.run_dir, fault.rank)
            .with_context(|| format!("no worker of rank {}", fault.rank))?;
        let deadline = Instant::now() + PATIENCE;
        let waiting_since = SystemTime::now();
        loop {
            if Instant::now() > deadline || !running() {
                bail!("the run never reached the moment of {fault:?}");
            }
            match fault.moment {
                Moment::Random => {
                    std::thread::sleep(Duration::from_secs_f64(fault.delay_s));
                    break;
                }
                Moment::CheckpointWrite if self.writing_checkpoint(waiting_since) => break,
                Moment::CheckpointWrite => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        kill(Pid::from_raw(pid), fault.signal)
            .with_context(|| format!("signalling rank {}", fault.rank))?;
        let struck_at = unix_now();
        let in_checkpoint_write = self.writing_checkpoint(waiting_since);
        let step = self.steps().last().copied().unwrap_or(0);
        let next = round + 1;
        let deadline = Instant::now() + PATIENCE;
        let record = loop {
            if let Ok(record) = rounds.read(next) {
                break record;
            }
            if Instant::now() > deadline || !running() {
                bail!("the launcher never restarted after {fault:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let seen = self.steps().len();
        let first_step = self.wait_for_new_step(seen, running)?;
        Ok(Injected {
            fault,
            step,
            in_checkpoint_write,
            detect_s: record.decided_at - struck_at,
            restart_s: first_step - record.decided_at,
            reason: format!("rank {} {}", record.rank, record.reason),
        })
    }
}

/// The pid of the `arl-worker` of rank `rank` of the run in `run_dir`, if one runs: found in
/// /proc by the run's config path on its command line and `RANK` in its environment.
pub fn worker_pid(run_dir: &Path, rank: usize) -> Option<i32> {
    let config = run_dir.join("config.toml");
    let config = config.to_string_lossy();
    let wanted = format!("RANK={rank}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !cmdline.contains("arl-worker") || !cmdline.contains(config.as_ref()) {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|&b| b == 0)
                .any(|v| v == wanted.as_bytes())
                .then_some(pid)
        })
}
