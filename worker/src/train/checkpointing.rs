//! Rank 0's side of checkpointing during pretraining: the asynchronous saver with its staging
//! memory reserved up front, the manifest's training state (step, epoch, hashes, every rank's
//! step generator, sampler position, schedule), and the JSON lines about saves.

use std::collections::BTreeMap;
use std::time::Instant;

use arl_checkpoints::{
    AsyncSaver, Checkpoints, RankState, SamplerPosition, SaveReport, SaverConfig, ScheduleState,
    TrainingState,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use arl_contract::Event;

use super::optim::{AdamW, GROUPS};
use super::report::emit;
use super::schedule::Schedule;
use super::seed::step_seed;
use crate::data::sampler::SamplerState;
use crate::train_state::{self, Named};

/// The manifest's `extra` key holding the restarts of the world in the launch that saved it.
pub const RESTARTS_KEY: &str = "restarts";

/// What a checkpoint records besides the tensors, fixed for the run.
pub struct RunIdentity {
    /// The run's seed.
    pub seed: u64,
    /// sha256 of the resolved config.
    pub config_hash: String,
    /// sha256 of the dataset manifest.
    pub data_hash: String,
    /// Ranks.
    pub world: usize,
}

/// Rank 0's saver.
pub struct Checkpointer {
    saver: AsyncSaver,
    identity: RunIdentity,
}

impl Checkpointer {
    /// A saver on `checkpoints` with staging memory for the model and the optimiser.
    ///
    /// # Errors
    /// The staging memory cannot be reserved.
    pub fn new(
        checkpoints: Checkpoints,
        config: SaverConfig,
        identity: RunIdentity,
        variables: &[Named],
        optimizer: &AdamW,
    ) -> anyhow::Result<Self> {
        let mut saver = AsyncSaver::new(checkpoints, config)?;
        let mut layout = train_state::layout("model", variables)?;
        layout.extend(train_state::layout("optim", &optimizer.state())?);
        saver.reserve(layout)?;
        Ok(Self { saver, identity })
    }

    /// Starts saving the state after `step` steps, with the trainer's `extra` values; returns
    /// once the tensors are copied.
    ///
    /// # Errors
    /// The previous save failed, or the copy did.
    pub fn save(
        &mut self,
        step: u64,
        position: SamplerState,
        variables: &[Named],
        optimizer: &AdamW,
        schedule: &Schedule,
        mut extra: BTreeMap<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        extra.insert(
            RESTARTS_KEY.to_owned(),
            crate::heartbeat::restart_count().into(),
        );
        let factor = schedule.factor(optimizer.steps());
        let id = &self.identity;
        let state = TrainingState {
            step,
            epoch: position.epoch,
            config_hash: id.config_hash.clone(),
            data_hash: id.data_hash.clone(),
            world_size: id.world as u32,
            ranks: (0..id.world)
                .map(|rank| RankState {
                    rank: rank as u32,
                    rng: [(
                        "step".to_owned(),
                        train_state::rng_state(&ChaCha8Rng::seed_from_u64(step_seed(
                            id.seed, step, rank,
                        ))),
                    )]
                    .into(),
                })
                .collect(),
            sampler: SamplerPosition {
                seed: id.seed,
                consumed: position.consumed,
            },
            schedule: ScheduleState {
                optimizer_steps: optimizer.steps(),
                warmup_steps: schedule.warmup_steps,
                total_steps: schedule.total_steps,
                lr: GROUPS
                    .iter()
                    .enumerate()
                    .map(|(g, name)| ((*name).to_owned(), factor * optimizer.peak_lr(g)))
                    .collect(),
            },
            extra,
        };
        let started = Instant::now();
        let mut begin = self.saver.begin()?;
        train_state::snapshot(&mut begin.staging, "model", variables)?;
        train_state::snapshot(&mut begin.staging, "optim", &optimizer.state())?;
        self.saver.submit(begin.staging, state)?;
        emit(Event::CheckpointStaged {
            step,
            stall_ms: started.elapsed().as_secs_f64() * 1e3,
            waited_ms: begin.waited.as_secs_f64() * 1e3,
        });
        Ok(())
    }

    /// Reports the saves that finished since the last call.
    ///
    /// # Errors
    /// A save failed (its step and file named).
    pub fn poll(&mut self) -> anyhow::Result<()> {
        report(self.saver.poll())
    }

    /// Waits for the save in flight and reports it.
    ///
    /// # Errors
    /// A save failed.
    pub fn finish(mut self) -> anyhow::Result<()> {
        report(self.saver.finish()?)
    }
}

/// Prints finished saves; a failed one is an error.
fn report(outcomes: Vec<anyhow::Result<SaveReport>>) -> anyhow::Result<()> {
    for outcome in outcomes {
        let report = outcome?;
        emit(Event::CheckpointCommitted {
            step: report.step,
            bytes: report.bytes,
            write_s: report.write_time.as_secs_f64(),
            deleted: report.deleted,
        });
    }
    Ok(())
}
