//! What a fine-tune checkpoint keeps besides tensors (the best epoch, the zero-shot result, the
//! initial weights and the job's section), and resuming a job from its newest checkpoint.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use arl_checkpoints::Checkpoints;
use arl_checkpoints::manifest::PINNED;
use arl_contract::Event;
use arl_contract::events::InitialWeights;
use arl_contract::metrics::Metric;
use serde_json::{Value, json};

use crate::train::optim::AdamW;
use crate::train::rank::Rank;
use crate::train::report::emit;
use crate::train_state::{self, Named};

/// The best validation result so far.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Best {
    /// The step after which it was measured.
    pub step: u64,
    /// The epoch that step ends.
    pub epoch: u64,
    /// The validation metric.
    pub metric: Metric,
}

/// What a checkpoint keeps besides tensors, so a resumed job reports the same results.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The best epoch so far.
    pub best: Option<Best>,
    /// The zero-shot retrieval result, measured before the first update.
    pub zero_shot: Option<Metric>,
    /// The record of the initial weights.
    pub init: Option<InitialWeights>,
    /// The `[finetune.NAME]` section the job was started with.
    #[serde(default)]
    pub section: Value,
}

impl Progress {
    /// The checkpoint manifest's extra entries: this progress, and the best epoch's step
    /// pinned against retention.
    pub fn extra(&self) -> anyhow::Result<BTreeMap<String, Value>> {
        let mut extra = BTreeMap::from([("finetune".to_owned(), serde_json::to_value(self)?)]);
        if let Some(best) = &self.best {
            extra.insert(PINNED.to_owned(), json!([best.step]));
        }
        Ok(extra)
    }
}

/// What a job resumes with.
pub struct Resumed {
    /// The step to continue from (0: a fresh job).
    pub start: u64,
    /// The job's progress at that step.
    pub progress: Progress,
}

/// Restores job `job`'s newest committed checkpoint under `location` (model and optimiser into
/// `variables` and `optimizer`) and its progress, checking that the job continues as it
/// started (same section, same initial weights) and that every rank continues from the same
/// step. Without a checkpoint, returns step 0 and `fresh`.
///
/// # Errors
/// An unreadable checkpoint, a job started otherwise (naming `job_location`, where the job
/// keeps its state, to move it aside), or
/// ranks that see different checkpoints.
#[allow(clippy::too_many_arguments)]
pub fn resume(
    location: &str,
    job_location: &str,
    job: &str,
    config_hash: &str,
    variables: &[Named],
    optimizer: &mut AdamW,
    fresh: Progress,
    ranks: &Rank,
) -> anyhow::Result<Resumed> {
    let mut resumed = Resumed {
        start: 0,
        progress: fresh,
    };
    let mut resumed_hash = None;
    if let Some(loaded) = Checkpoints::open(location)?.resume()? {
        let state = &loaded.manifest.state;
        resumed_hash = Some(state.config_hash.clone());
        if state.config_hash != config_hash {
            tracing::warn!("resuming {} with a different config", loaded.location);
        }
        train_state::restore(&loaded, "model", variables)?;
        train_state::restore(&loaded, "optim", &optimizer.state())?;
        optimizer.set_steps(state.schedule.optimizer_steps);
        resumed.start = state.step;
        if let Some(saved) = state.extra.get("finetune") {
            let saved: Progress = serde_json::from_value(saved.clone())
                .with_context(|| format!("{}: the fine-tune progress", loaded.location))?;
            let fresh = &resumed.progress;
            ensure!(
                saved.section == fresh.section,
                "{}: the job was started under another [finetune.{job}] section ({}); move or \
                 delete {} to run it anew",
                loaded.location,
                saved.section,
                job_location
            );
            let weights = |init: &Option<InitialWeights>| {
                init.as_ref().and_then(|i| i.weights().map(str::to_owned))
            };
            ensure!(
                weights(&saved.init) == weights(&fresh.init),
                "{}: the job was started from other weights ({:?}, now {:?}); move or delete {} \
                 to fine-tune the new ones",
                loaded.location,
                saved.init,
                fresh.init,
                job_location
            );
            resumed.progress = saved;
        }
        if ranks.rank == 0 {
            emit(Event::Resumed {
                step: resumed.start,
                from: loaded.location.clone(),
            });
        }
    }
    ranks.agree_on_resume(
        job,
        location,
        resumed_hash.as_deref().map(|hash| (resumed.start, hash)),
    )?;
    Ok(resumed)
}
