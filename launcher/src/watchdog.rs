//! The hang watchdog: finds the rank of this node that stalled, from its heartbeats.
//!
//! A rank is stalled when it has been silent longer than the limit of the phase it is in:
//! - steady state (data, forward, backward, optimizer): twice the step time plus
//!   `launch.hang_margin_s` (the step time is the slowest rank's median of its recent steps);
//! - start-up, checkpoint and evaluation, and any phase before the step time is known:
//!   `launch.hang_slow_s`;
//! - a collective: `dist.timeout_s` plus the margin, since a rank inside a collective is
//!   usually waiting for another one, and the collective fails by itself at its timeout;
//! - waiting for storage (the rank said so, naming the object): `data.storage_wait_s` plus
//!   the margin, since the rank gives up by itself at its budget;
//! - a process that is stopped (SIGSTOP, a debugger) gets the steady limit whatever its phase.
//!
//! Of several stalled ranks, a stopped one is named first, then the one furthest behind (fewest
//! steps completed, then the oldest collective): the others are victims waiting for it.

use std::time::Instant;

use arl_contract::JobConfig;
use arl_contract::heartbeat::Phase;

use crate::heartbeats::RankProgress;

/// The watchdog's limits, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Added to twice the step time in steady state.
    pub margin_s: f64,
    /// Start-up, checkpoint, evaluation, and before the step time is known.
    pub slow_s: f64,
    /// Inside a collective.
    pub collective_s: f64,
    /// Waiting for storage.
    pub storage_s: f64,
}

impl Limits {
    /// The limits `config` sets.
    pub fn of(config: &JobConfig) -> Self {
        Self {
            margin_s: config.launch.hang_margin_s,
            slow_s: config.launch.hang_slow_s,
            collective_s: config.dist.timeout_s + config.launch.hang_margin_s,
            storage_s: config.data.storage_wait_s + config.launch.hang_margin_s,
        }
    }
}

/// A stalled rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    /// Its local index.
    pub local: usize,
    /// Seconds since its last heartbeat.
    pub silent_s: f64,
    /// The limit it passed.
    pub limit_s: f64,
    /// Whether its process is stopped.
    pub stopped: bool,
}

/// A rank under watch: its process id and progress.
pub struct Watched<'a> {
    /// Process id.
    pub pid: u32,
    /// Its heartbeats so far.
    pub progress: &'a RankProgress,
}

/// The stalled rank to blame, if any rank is stalled at `now`.
pub fn find_stall(ranks: &[Watched<'_>], limits: &Limits, now: Instant) -> Option<Stall> {
    let step_time = ranks
        .iter()
        .filter_map(|r| r.progress.step_time())
        .max_by(f64::total_cmp);
    let steady = step_time.map_or(limits.slow_s, |t| 2.0 * t + limits.margin_s);
    let stalled = ranks.iter().enumerate().filter_map(|(local, rank)| {
        let progress = rank.progress;
        let silent_s = now.duration_since(progress.last).as_secs_f64();
        let phase_limit = match progress.phase {
            _ if progress.storage.is_some() => limits.storage_s,
            None => limits.slow_s,
            Some(phase) if phase.is_slow() => limits.slow_s,
            Some(Phase::Collective) => limits.collective_s,
            Some(_) => steady,
        };
        let stopped_limit = phase_limit.min(steady);
        // /proc is read only for a rank already silent past the steady limit.
        let stopped = silent_s > stopped_limit && is_stopped(rank.pid);
        let limit_s = if stopped { stopped_limit } else { phase_limit };
        (silent_s > limit_s).then_some(Stall {
            local,
            silent_s,
            limit_s,
            stopped,
        })
    });
    stalled.min_by_key(|stall| {
        let progress = ranks[stall.local].progress;
        (
            !stall.stopped,
            progress.completed,
            progress.last_collective().map(|c| c.seq),
            progress.last,
        )
    })
}

/// Whether process `pid` is stopped (state `T` or `t` in `/proc/<pid>/stat`).
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (command) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "T" || state == "t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arl_contract::heartbeat::Beat;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        margin_s: 5.0,
        slow_s: 100.0,
        collective_s: 50.0,
        storage_s: 70.0,
    };

    /// A rank that completed steps 1–3 a second apart, then entered `phase` of step 4 at 3 s.
    fn rank(t0: Instant, phase: Phase, seq: u64) -> RankProgress {
        let mut progress = RankProgress::new(t0);
        for step in 1..=3u64 {
            progress.apply(Beat::Stepped { step }, t0 + Duration::from_secs(step - 1));
        }
        progress.apply(
            Beat::Enter {
                seq,
                op: "allreduce".into(),
                sizes: vec![1],
            },
            t0 + Duration::from_secs(3),
        );
        progress.apply(Beat::Phase { step: 4, phase }, t0 + Duration::from_secs(3));
        progress
    }

    /// This process's id can never be stopped while it runs the test; a huge pid is no process.
    const NO_PROCESS: u32 = u32::MAX;

    #[test]
    fn the_rank_stuck_in_its_step_is_named_not_the_one_waiting_in_the_collective() {
        let t0 = Instant::now();
        let forward = rank(t0, Phase::Forward, 10);
        let waiting = rank(t0, Phase::Collective, 11);
        let ranks = [
            Watched {
                pid: NO_PROCESS,
                progress: &waiting,
            },
            Watched {
                pid: NO_PROCESS,
                progress: &forward,
            },
        ];
        // Steady limit: 2 × 1 s + 5 s = 7 s of silence, from 3 s on.
        assert_eq!(
            find_stall(&ranks, &LIMITS, t0 + Duration::from_secs(9)),
            None
        );
        let stall = find_stall(&ranks, &LIMITS, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!((stall.local, stall.limit_s, stall.stopped), (1, 7.0, false));
        // Past the collective's limit too, the one behind (older collective) is still named.
        let stall = find_stall(&ranks, &LIMITS, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(stall.local, 1);
    }

    #[test]
    fn checkpoints_start_up_and_collectives_get_their_longer_limits() {
        let t0 = Instant::now();
        let saving = rank(t0, Phase::Checkpoint, 10);
        let starting = RankProgress::new(t0);
        let waiting = rank(t0, Phase::Collective, 10);
        let watch = |progress| {
            [Watched {
                pid: NO_PROCESS,
                progress,
            }]
        };
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(find_stall(&watch(&saving), &LIMITS, at(90)), None);
        assert_eq!(
            find_stall(&watch(&saving), &LIMITS, at(104))
                .unwrap()
                .limit_s,
            100.0
        );
        assert_eq!(find_stall(&watch(&starting), &LIMITS, at(99)), None);
        assert!(find_stall(&watch(&starting), &LIMITS, at(101)).is_some());
        assert_eq!(find_stall(&watch(&waiting), &LIMITS, at(50)), None);
        assert_eq!(
            find_stall(&watch(&waiting), &LIMITS, at(54))
                .unwrap()
                .limit_s,
            50.0
        );
    }

    #[test]
    fn a_rank_waiting_for_storage_gets_the_storage_limit_until_storage_answers() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let stall_at = |progress: &RankProgress, s| {
            let ranks = [Watched {
                pid: NO_PROCESS,
                progress,
            }];
            find_stall(&ranks, &LIMITS, at(s)).map(|stall| stall.limit_s)
        };
        let mut reading = rank(t0, Phase::Data, 10);
        let object = "s3://data/shard-00002.arrow";
        reading.apply(
            Beat::Storage {
                object: Some(object.into()),
            },
            at(3),
        );
        // Past the steady limit (7 s), within the storage limit (70 s): not hung.
        assert_eq!(stall_at(&reading, 60), None);
        assert_eq!(stall_at(&reading, 74), Some(70.0));
        assert!(
            reading
                .describe(at(74))
                .ends_with(&format!("waiting for storage: {object}"))
        );
        reading.apply(Beat::Storage { object: None }, at(20));
        assert_eq!(stall_at(&reading, 28), Some(7.0));
    }

    #[test]
    fn a_stopped_process_gets_the_steady_limit_in_any_phase() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGSTOP,
        );
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let waiting = rank(t0, Phase::Collective, 10);
        let ranks = [Watched {
            pid,
            progress: &waiting,
        }];
        let stall = find_stall(&ranks, &LIMITS, t0 + Duration::from_secs(11));
        let _ = child.kill();
        let _ = child.wait();
        let stall = stall.expect("a stopped rank inside a collective is stalled");
        assert_eq!((stall.limit_s, stall.stopped), (7.0, true));
    }
}
