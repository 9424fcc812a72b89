//! A rank's heartbeats ([`arl_contract::heartbeat`]) as its launcher keeps them: the step and
//! phase it is in, when it last spoke, how long its steps take, and its last
//! [`FLIGHT_RECORDS`] collectives (the flight recorder written out when a world fails).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use arl_contract::heartbeat::{Beat, Phase};
use serde_json::{Value, json};

/// Collectives kept per rank.
pub const FLIGHT_RECORDS: usize = 32;

/// Step durations kept per rank (their median is the step time).
const STEP_TIMES: usize = 20;

/// One collective as a rank reported it.
#[derive(Debug, Clone)]
pub struct CollectiveRecord {
    /// Sequence number in the rank's group.
    pub seq: u64,
    /// The operation.
    pub op: String,
    /// Elements of each tensor.
    pub sizes: Vec<i64>,
    /// When the rank entered it.
    pub entered: Instant,
    /// When it left it (none: still inside, or it failed there).
    pub left: Option<Instant>,
}

/// What the launcher knows of one rank's progress.
#[derive(Debug)]
pub struct RankProgress {
    /// When the last beat came (or the rank started).
    pub last: Instant,
    /// The step in progress (from 1; 0 before the first).
    pub step: u64,
    /// Its phase (none: start-up).
    pub phase: Option<Phase>,
    /// The last step completed.
    pub completed: Option<u64>,
    completed_at: Option<Instant>,
    step_seconds: VecDeque<f64>,
    /// The last collectives, oldest first.
    pub collectives: VecDeque<CollectiveRecord>,
    /// The object it waits for while storage does not answer.
    pub storage: Option<String>,
}

impl RankProgress {
    /// A rank that has just started.
    pub fn new(now: Instant) -> Self {
        Self {
            last: now,
            step: 0,
            phase: None,
            completed: None,
            completed_at: None,
            step_seconds: VecDeque::with_capacity(STEP_TIMES),
            collectives: VecDeque::with_capacity(FLIGHT_RECORDS),
            storage: None,
        }
    }

    /// Takes in one beat that came at `now`.
    pub fn apply(&mut self, beat: Beat, now: Instant) {
        self.last = now;
        match beat {
            Beat::Phase { step, phase } => {
                self.step = step;
                self.phase = Some(phase);
            }
            Beat::Stepped { step } => {
                // The first step of a world includes its start-up: not a step time.
                if let Some(previous) = self.completed_at {
                    if self.step_seconds.len() == STEP_TIMES {
                        self.step_seconds.pop_front();
                    }
                    self.step_seconds
                        .push_back(now.duration_since(previous).as_secs_f64());
                }
                self.completed = Some(step);
                self.completed_at = Some(now);
            }
            Beat::Enter { seq, op, sizes } => {
                if self.collectives.len() == FLIGHT_RECORDS {
                    self.collectives.pop_front();
                }
                self.collectives.push_back(CollectiveRecord {
                    seq,
                    op,
                    sizes,
                    entered: now,
                    left: None,
                });
            }
            Beat::Leave { seq } => {
                if let Some(record) = self.collectives.iter_mut().rev().find(|c| c.seq == seq) {
                    record.left = Some(now);
                }
            }
            Beat::Storage { object } => self.storage = object,
        }
    }

    /// The median of the recent step durations, in seconds (none before two steps).
    pub fn step_time(&self) -> Option<f64> {
        let mut times: Vec<f64> = self.step_seconds.iter().copied().collect();
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied()
    }

    /// The last collective entered.
    pub fn last_collective(&self) -> Option<&CollectiveRecord> {
        self.collectives.back()
    }

    /// "step 7, phase forward, silent for 3.2 s" (or start-up).
    pub fn describe(&self, now: Instant) -> String {
        let silent = now.duration_since(self.last).as_secs_f64();
        let at = match self.phase {
            Some(phase) => format!("step {}, phase {}", self.step, phase.name()),
            None => "start-up".to_owned(),
        };
        let collective = self.last_collective().map_or(String::new(), |c| {
            format!(
                "; last collective #{} {} {}",
                c.seq,
                c.op,
                if c.left.is_some() {
                    "(left)"
                } else {
                    "(inside)"
                }
            )
        });
        let storage = self
            .storage
            .as_ref()
            .map_or(String::new(), |o| format!("; waiting for storage: {o}"));
        format!("{at}, silent for {silent:.1} s{collective}{storage}")
    }

    /// The flight record of rank `rank`: its state and last collectives, ages in seconds
    /// before `now`.
    pub fn flight_record(&self, rank: usize, now: Instant) -> Value {
        let age = |at: Instant| now.duration_since(at).as_secs_f64();
        json!({
            "rank": rank,
            "step": self.step,
            "phase": self.phase.map_or("start-up", Phase::name),
            "completed": self.completed,
            "silent_s": age(self.last),
            "waiting_for_storage": self.storage,
            "collectives": self.collectives.iter().map(|c| json!({
                "seq": c.seq,
                "op": c.op,
                "sizes": c.sizes,
                "entered_s_ago": age(c.entered),
                "left_s_ago": c.left.map(age),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Reads a rank's heartbeat pipe into `progress` until the rank closes it; a line that is no
/// beat is ignored (the rank's own output goes elsewhere).
pub fn read_heartbeats(
    pipe: std::io::PipeReader,
    progress: Arc<Mutex<RankProgress>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(beat) = Beat::parse(&line) {
                let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                progress.apply(beat, Instant::now());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn beats_give_the_phase_the_step_time_and_the_last_collectives() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut rank = RankProgress::new(t0);
        assert_eq!(rank.step_time(), None);
        for (i, step) in (1..=4u64).enumerate() {
            let base = 1000 * i as u64;
            rank.apply(
                Beat::Phase {
                    step,
                    phase: Phase::Data,
                },
                at(base),
            );
            rank.apply(
                Beat::Enter {
                    seq: step,
                    op: "allreduce".into(),
                    sizes: vec![4],
                },
                at(base + 10),
            );
            rank.apply(Beat::Leave { seq: step }, at(base + 20));
            // Step durations 1 s, 1 s and 3 s after the first step.
            let done = base + 100 + if step == 4 { 2000 } else { 0 };
            rank.apply(Beat::Stepped { step }, at(done));
        }
        assert_eq!(rank.completed, Some(4));
        assert_eq!(rank.step_time(), Some(1.0));
        rank.apply(
            Beat::Enter {
                seq: 5,
                op: "barrier".into(),
                sizes: vec![],
            },
            at(9000),
        );
        let record = rank.flight_record(1, at(10_000));
        let collectives = record["collectives"].as_array().unwrap();
        assert_eq!(collectives.len(), 5);
        assert_eq!(collectives[4]["op"], "barrier");
        assert!(collectives[4]["left_s_ago"].is_null());
        assert_eq!(collectives[3]["left_s_ago"], 6.98);
        assert!(
            rank.describe(at(10_000))
                .ends_with("silent for 1.0 s; last collective #5 barrier (inside)"),
            "{}",
            rank.describe(at(10_000))
        );
        for seq in 6..50 {
            rank.apply(
                Beat::Enter {
                    seq,
                    op: "allreduce".into(),
                    sizes: vec![1],
                },
                at(10_000),
            );
        }
        assert_eq!(rank.collectives.len(), FLIGHT_RECORDS);
        assert_eq!(rank.collectives[0].seq, 50 - FLIGHT_RECORDS as u64);
    }
}
