//! The data-parallel step loop every job runs (pretraining and each fine-tune). A job brings
//! what differs through [`Job`]: its forward pass and losses, the names of what it logs, when it
//! checks replicas and saves, and its evaluation. The loop does the rest, the same for all:
//!
//! for each step: the rank's batch → micro-batches (forward, backward at 1/accum; the last
//! backward all-reduces gradient buckets as they fill, [`GradSync`]) → the rank-mean gradients
//! → one all-rank decision on non-finite gradients and stop signals →
//! clip and AdamW under the schedule → replica checksum → report → evaluation → checkpoint →
//! stop.
//!
//! Every step's randomness is derived from (seed, step, rank): the job's generator is a ChaCha
//! stream seeded with it and torch's generator is re-seeded with it, so a resumed run continues
//! the exact trajectory.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, ensure};
use arl_contract::Event;
use arl_contract::events::StepReport;
use arl_contract::heartbeat::Phase;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::checkpointing::Checkpointer;
use super::grad_sync::GradSync;
use super::optim::{AdamW, GROUPS};
use super::rank::{GradientSync, Rank};
use super::report::{MimPicture, Reporter, emit};
use super::sample_log::SampleLog;
use super::schedule::Schedule;
use super::seed::step_seed;
use super::stop::{StopRequest, signal_name};
use crate::data::loader::Loader;
use crate::data::sampler::SamplerState;
use crate::data::stream::Sample;
use crate::heartbeat;
use crate::train_state::Named;

/// Consecutive steps with non-finite gradients after which the job stops.
const MAX_NONFINITE_STEPS: u32 = 3;

/// One micro-batch's forward pass.
pub struct Forward {
    /// The loss to backpropagate (scaled by the loop).
    pub loss: Tensor,
    /// Scalars to log, in the order of [`Job::describe`] (averaged over micro-batches and ranks).
    pub logged: Vec<Tensor>,
    /// A MIM reconstruction to show, when asked for.
    pub picture: Option<MimPicture>,
}

/// A step's logged numbers, named.
pub struct Described {
    /// The total loss.
    pub loss: f64,
    /// Its parts.
    pub losses: BTreeMap<String, f64>,
    /// Accuracies.
    pub accuracy: BTreeMap<String, f64>,
}

/// What a job brings to the loop.
pub trait Job {
    /// The forward pass of one micro-batch (`images` as the loader gives them, on the CPU);
    /// `picture`: also return a MIM reconstruction.
    ///
    /// # Errors
    /// A sample the job cannot use (named).
    fn forward(
        &mut self,
        images: &Tensor,
        samples: &[Sample],
        rng: &mut ChaCha8Rng,
        picture: bool,
    ) -> anyhow::Result<Forward>;

    /// Names the rank means of [`Forward::logged`].
    fn describe(&self, logged: &[f64]) -> Described;

    /// Whether the replicas are compared after step `done` (always at the end and on a stop).
    fn checks_replicas_at(&self, done: u64) -> bool;

    /// Whether a checkpoint is saved after step `done` (always at the end and on a stop).
    fn checkpoints_at(&self, done: u64) -> bool;

    /// Runs after the update of step `done` on every rank (an evaluation), before its
    /// checkpoint; `reporter` is rank 0's.
    ///
    /// # Errors
    /// A failed evaluation.
    fn after_step(&mut self, done: u64, reporter: Option<&mut Reporter>) -> anyhow::Result<()>;

    /// What the checkpoint keeps besides tensors.
    ///
    /// # Errors
    /// A value that cannot be written.
    fn extra(&self) -> anyhow::Result<BTreeMap<String, serde_json::Value>>;
}

/// The state the loop trains.
pub struct StepLoop<'a> {
    /// This rank and the group.
    pub ranks: &'a Rank<'a>,
    /// The model's variables, sorted by name.
    pub variables: &'a [Named],
    /// The optimiser over them.
    pub optimizer: &'a mut AdamW,
    /// The learning-rate schedule.
    pub schedule: &'a Schedule,
    /// The rank's batches, from the first step on.
    pub loader: &'a Loader,
    /// The sample-order position after a number of steps (what a checkpoint records).
    pub position: &'a dyn Fn(u64) -> SamplerState,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// The seed of every step's randomness.
    pub seed: u64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    /// Autocast the forward passes to bfloat16.
    pub bf16: bool,
    /// Stop signals.
    pub stop: &'a StopRequest,
    /// Rank 0's saver.
    pub checkpointer: Option<Checkpointer>,
    /// Rank 0's events and TensorBoard.
    pub reporter: Option<Reporter>,
    /// This rank's sample log, when asked for.
    pub sample_log: Option<SampleLog>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It reached its last step.
    Done,
    /// A stop signal ended it after a step, with a checkpoint.
    Stopped,
}

impl StepLoop<'_> {
    /// Trains steps `start + 1 ..= end` (steps counted from 1), or until a stop signal.
    ///
    /// # Errors
    /// Bad input (named), non-finite gradients for several steps in a row, diverged replicas,
    /// a failed save or collective.
    pub fn run(&mut self, job: &mut impl Job, start: u64, end: u64) -> anyhow::Result<Ended> {
        let mut nonfinite_run = 0;
        let mut grads = GradSync::new(self.ranks.group, &self.optimizer.parameters())?;
        for step in start..end {
            let done = step + 1;
            let started = Instant::now();
            heartbeat::begin_step(done);
            let batch = self.loader.next_batch()?;
            let data_wait = started.elapsed();
            for bad in &batch.bad {
                tracing::warn!(rank = self.ranks.rank, step, reason = %bad.reason, "skipped a sample");
            }
            if let Some(log) = self.sample_log.as_mut() {
                log.record(done, &batch.samples)?;
            }
            let samples = batch.samples.len();
            ensure!(
                samples >= self.grad_accum,
                "rank {} has {samples} usable samples at step {done}, fewer than its {} \
                 micro-batches",
                self.ranks.rank,
                self.grad_accum
            );
            let seed = step_seed(self.seed, step, self.ranks.rank);
            tch::manual_seed(seed as i64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let wants_picture = self.reporter.as_ref().is_some_and(|r| r.wants_image(done));
            let (logged, picture) =
                self.accumulate(job, &grads, &batch, &mut rng, wants_picture)?;

            // Gradients: the rank-mean, then one decision on non-finite values and stop requests.
            heartbeat::phase(Phase::Collective);
            let reduced = grads.finish(done)?;
            let GradientSync {
                bad_ranks,
                stop: stop_signal,
            } = self.ranks.decide(reduced.finite, self.stop.signal())?;
            let world = self.ranks.world as f64;
            let logged: Vec<f64> = self.ranks.sum(&logged)?.iter().map(|s| s / world).collect();
            let last = done == end || stop_signal.is_some();
            if bad_ranks.is_empty() {
                nonfinite_run = 0;
                heartbeat::phase(Phase::Optimizer);
                let grad_norm = if self.max_grad_norm > 0.0 {
                    self.optimizer.clip_grad_norm(self.max_grad_norm)
                } else {
                    self.optimizer.grad_norm()
                };
                let factor = self.schedule.factor(self.optimizer.steps());
                self.optimizer.step(factor);
                heartbeat::phase(Phase::Collective);
                if job.checks_replicas_at(done) || last {
                    self.ranks.check_replicas(self.variables, done)?;
                }
                if let Some(reporter) = self.reporter.as_mut() {
                    let seconds = started.elapsed().as_secs_f64();
                    let Described {
                        loss,
                        losses,
                        accuracy,
                    } = job.describe(&logged);
                    let report = StepReport {
                        step: done,
                        loss,
                        losses,
                        accuracy,
                        lr: GROUPS
                            .iter()
                            .enumerate()
                            .map(|(g, name)| {
                                ((*name).to_owned(), factor * self.optimizer.peak_lr(g))
                            })
                            .collect(),
                        grad_norm,
                        samples_per_s: (samples * self.ranks.world) as f64 / seconds,
                        data_wait: data_wait.as_secs_f64() / seconds,
                        comm_exposed: reduced.exposed.as_secs_f64() / seconds,
                        // Filled by the reporter from the job's throughput model.
                        tflops: None,
                        mfu: None,
                    };
                    reporter.step(report, picture);
                }
            } else {
                nonfinite_run += 1;
                if self.ranks.rank == 0 {
                    emit(Event::Skipped {
                        step: done,
                        ranks: bad_ranks.clone(),
                    });
                }
                if nonfinite_run >= MAX_NONFINITE_STEPS {
                    bail!(
                        "non-finite gradients on ranks {bad_ranks:?} for {nonfinite_run} steps \
                         in a row (last: step {done})"
                    );
                }
                if job.checks_replicas_at(done) || last {
                    self.ranks.check_replicas(self.variables, done)?;
                }
            }
            job.after_step(done, self.reporter.as_mut())?;
            if let Some(checkpointer) = self.checkpointer.as_mut() {
                heartbeat::phase(Phase::Checkpoint);
                checkpointer.poll()?;
                if job.checkpoints_at(done) || last {
                    checkpointer.save(
                        done,
                        (self.position)(done),
                        self.variables,
                        self.optimizer,
                        self.schedule,
                        job.extra()?,
                    )?;
                }
            }
            heartbeat::stepped();
            if let Some(signal) = stop_signal {
                if self.ranks.rank == 0 {
                    emit(Event::Stopped {
                        step: done,
                        signal: signal_name(signal).to_owned(),
                    });
                }
                return Ok(Ended::Stopped);
            }
        }
        Ok(Ended::Done)
    }

    /// The micro-batches of one step: near-equal slices of the rank's batch, gradients summed
    /// at 1/accum (the last backward reduces them); returns the logged values averaged over
    /// them, and the picture.
    fn accumulate(
        &mut self,
        job: &mut impl Job,
        grads: &GradSync,
        batch: &crate::data::loader::Batch,
        rng: &mut ChaCha8Rng,
        wants_picture: bool,
    ) -> anyhow::Result<(Tensor, Option<MimPicture>)> {
        let (samples, accum) = (batch.samples.len(), self.grad_accum);
        let mut logged: Option<Tensor> = None;
        let mut picture = None;
        grads.zero_grad()?;
        for k in 0..accum {
            let (from, to) = (k * samples / accum, (k + 1) * samples / accum);
            let images = batch.images.narrow(0, from as i64, (to - from) as i64);
            heartbeat::phase(Phase::Forward);
            let forward = arl_c10d::autocast_bf16(self.ranks.device, self.bf16, || {
                job.forward(
                    &images,
                    &batch.samples[from..to],
                    rng,
                    wants_picture && k == 0,
                )
            })??;
            heartbeat::phase(Phase::Backward);
            grads.arm(k + 1 == accum)?;
            (&forward.loss / accum as f64).backward();
            let values: Vec<Tensor> = forward
                .logged
                .iter()
                .map(|t| t.detach().to_kind(Kind::Double))
                .collect();
            let values = Tensor::stack(&values, 0) / accum as f64;
            logged = Some(match logged {
                None => Tensor::zeros_like(&values) + values,
                Some(sum) => sum + values,
            });
            picture = picture.or(forward.picture);
        }
        Ok((logged.expect("at least one micro-batch"), picture))
    }

    /// Ends the loop: rank 0 commits its last checkpoint and every rank meets at a barrier.
    /// With `commit_first`, the commit comes before the barrier, so that every rank may read the
    /// checkpoints afterwards; else the ranks go on while rank 0 alone waits for the commit.
    /// Returns rank 0's reporter, for what the job reports after training.
    ///
    /// # Errors
    /// A failed save or barrier.
    pub fn close(self, commit_first: bool) -> anyhow::Result<Option<Reporter>> {
        let group = self.ranks.group;
        heartbeat::phase(Phase::Checkpoint);
        if commit_first {
            if let Some(checkpointer) = self.checkpointer {
                checkpointer.finish()?;
            }
            group.barrier()?;
        } else {
            group.barrier()?;
            if let Some(checkpointer) = self.checkpointer {
                checkpointer.finish()?;
            }
        }
        Ok(self.reporter)
    }
}
