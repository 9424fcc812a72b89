//! The asynchronous checkpoint writer: the training thread pays only for copying the state into
//! host memory ([`Staging`]); a background thread writes, commits and applies retention. At
//! most one save is in flight: the next one waits for it, and says how long. A failed save is
//! returned by the next [`AsyncSaver::poll`], and never touches the previous checkpoint.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::manifest::TrainingState;
use crate::retention::Retention;
use crate::staging::{Staging, TensorSpec};
use crate::store::{Checkpoints, SaveReport};

/// Settings of the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaverConfig {
    /// Which checkpoints to keep after each commit.
    pub retention: Retention,
}

enum Job {
    Reserve(Vec<TensorSpec>),
    Save(Box<TrainingState>),
}

struct Returned {
    staging: Staging,
    outcome: Option<anyhow::Result<SaveReport>>,
}

/// The staging area for the next snapshot, and how long it took to get it.
#[derive(Debug)]
pub struct Begin {
    /// Host memory to copy the state into (cleared; the last save's buffers are reused).
    pub staging: Staging,
    /// Time spent waiting for the previous save to finish.
    pub waited: Duration,
}

/// A background checkpoint writer.
pub struct AsyncSaver {
    jobs: Option<mpsc::Sender<(Staging, Job)>>,
    returned: mpsc::Receiver<Returned>,
    thread: Option<JoinHandle<()>>,
    idle: Option<Staging>,
    busy_with: Option<Option<u64>>,
    unreported: Vec<anyhow::Result<SaveReport>>,
}

fn run(checkpoints: &Checkpoints, config: SaverConfig, mut staging: Staging, job: Job) -> Returned {
    match job {
        Job::Reserve(layout) => {
            staging.reserve(&layout);
            Returned {
                staging,
                outcome: None,
            }
        }
        Job::Save(state) => {
            let outcome = checkpoints.save(&staging, &state).map(|mut report| {
                match checkpoints.retain(&config.retention) {
                    Ok(deleted) => report.deleted = deleted,
                    Err(error) => tracing::warn!(error = %format!("{error:#}"),
                        "retention after the checkpoint of step {} failed", report.step),
                }
                report
            });
            let outcome = outcome.with_context(|| {
                format!(
                    "checkpoint of step {} to {} failed (earlier checkpoints are untouched)",
                    state.step,
                    checkpoints.location()
                )
            });
            staging.drop_spares();
            Returned {
                staging,
                outcome: Some(outcome),
            }
        }
    }
}

impl AsyncSaver {
    /// Starts the writer thread for `checkpoints`, after removing the partial folders that
    /// earlier saves cut short left there (no save of this run is in flight yet).
    ///
    /// # Errors
    /// The partial folders cannot be removed, or the thread cannot be started.
    pub fn new(checkpoints: Checkpoints, config: SaverConfig) -> anyhow::Result<Self> {
        let cleared = checkpoints.clear_partials()?;
        if !cleared.is_empty() {
            tracing::info!(steps = ?cleared, "removed the partial checkpoints of saves cut short");
        }
        let (jobs, inbox) = mpsc::channel::<(Staging, Job)>();
        let (outbox, returned) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("arl-checkpoint".into())
            .spawn(move || {
                for (staging, job) in inbox {
                    if outbox
                        .send(run(&checkpoints, config, staging, job))
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .context("starting the checkpoint writer thread")?;
        Ok(Self {
            jobs: Some(jobs),
            returned,
            thread: Some(thread),
            idle: Some(Staging::default()),
            busy_with: None,
            unreported: Vec::new(),
        })
    }

    /// Waits for the job in flight, if any; returns the time waited.
    fn settle(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if self.busy_with.take().is_some() {
            let returned = self
                .returned
                .recv()
                .context("the checkpoint writer thread stopped")?;
            self.unreported.extend(returned.outcome);
            self.idle = Some(returned.staging);
        }
        Ok(started.elapsed())
    }

    fn send(&mut self, staging: Staging, job: Job, step: Option<u64>) -> anyhow::Result<()> {
        self.jobs
            .as_ref()
            .context("the checkpoint writer is closed")?
            .send((staging, job))
            .ok()
            .context("the checkpoint writer thread stopped")?;
        self.busy_with = Some(step);
        Ok(())
    }

    /// Allocates and maps the staging memory for `layout` in the background, so that the first
    /// snapshot is as fast as the later ones.
    ///
    /// # Errors
    /// The writer thread stopped.
    pub fn reserve(&mut self, layout: Vec<TensorSpec>) -> anyhow::Result<()> {
        self.settle()?;
        let staging = self.idle.take().unwrap_or_default();
        self.send(staging, Job::Reserve(layout), None)
    }

    /// The staging area for a snapshot, once the save in flight (if any) has finished.
    ///
    /// # Errors
    /// The writer thread stopped.
    pub fn begin(&mut self) -> anyhow::Result<Begin> {
        let waiting_for = self.in_flight();
        let waited = self.settle()?;
        if let Some(step) = waiting_for
            && waited > Duration::from_millis(10)
        {
            tracing::warn!(
                "waited {:.2} s for the checkpoint of step {step} to finish writing",
                waited.as_secs_f64()
            );
        }
        let mut staging = self.idle.take().unwrap_or_default();
        staging.clear();
        Ok(Begin { staging, waited })
    }

    /// Hands a filled staging area and its state to the writer, and returns at once.
    ///
    /// # Errors
    /// The writer thread stopped.
    pub fn submit(&mut self, staging: Staging, state: TrainingState) -> anyhow::Result<()> {
        // `begin` has settled the previous job; this only guards against two submits in a row.
        self.settle()?;
        let step = state.step;
        self.send(staging, Job::Save(Box::new(state)), Some(step))
    }

    /// The step being saved, if a save is in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.busy_with.flatten()
    }

    /// The outcomes of saves finished since the last call, without waiting.
    pub fn poll(&mut self) -> Vec<anyhow::Result<SaveReport>> {
        if self.busy_with.is_some() {
            match self.returned.try_recv() {
                Ok(returned) => {
                    self.busy_with = None;
                    self.unreported.extend(returned.outcome);
                    self.idle = Some(returned.staging);
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    let step = self.busy_with.take().flatten();
                    self.unreported.push(Err(anyhow::anyhow!(
                        "the checkpoint writer thread died (saving step {step:?})"
                    )));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
        std::mem::take(&mut self.unreported)
    }

    /// Waits for the save in flight and returns the unreported outcomes.
    ///
    /// # Errors
    /// The writer thread stopped.
    pub fn finish(&mut self) -> anyhow::Result<Vec<anyhow::Result<SaveReport>>> {
        self.settle()?;
        Ok(std::mem::take(&mut self.unreported))
    }
}

impl Drop for AsyncSaver {
    /// Lets the save in flight finish: a clean exit never abandons a checkpoint half-written.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
