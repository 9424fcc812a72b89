//! The pretraining job (ARL_SPEC.md §3, §5): the model built identically on every rank (and
//! broadcast from rank 0), resumed from the newest committed checkpoint, fed by the rank's
//! slice of the global sample order, trained on the four objectives by the shared step loop
//! ([`super::step_loop`]), with a cross-rank parameter checksum every [`CHECKSUM_EVERY`] steps
//! and asynchronous checkpoints from rank 0. Rank 0 reports each step's model TFLOP/s and MFU
//! ([`crate::model::flops`], [`super::throughput`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, ensure};
use arl_c10d::ProcessGroup;
use arl_checkpoints::{Checkpoints, SaverConfig};
use arl_contract::config::model::ModelConfig;
use arl_contract::config::train::MlmBudget;
use arl_contract::identity::{EXTRA_KEY, differences, identity_hash};
use arl_contract::locations::tensorboard_dir;
use arl_contract::validate::max_text_positions;
use arl_contract::{Event, JobConfig, PRETRAIN_JOB};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tch::Tensor;

use super::checkpointing::{Checkpointer, RunIdentity};
use super::collate::{Collator, EntityMap};
use super::init::{self, Built};
use super::masking::Masking;
use super::optim::AdamW;
use super::rank::Rank;
use super::report::{MimPicture, Reporter, emit};
use super::sample_log::SampleLog;
use super::schedule::Schedule;
use super::step_loop::{Described, Forward, Job, StepLoop};
use super::stop::StopRequest;
use super::throughput::{self, Throughput};
use crate::data::loader::{Loader, LoaderConfig, Transform};
use crate::data::remote::Backoff;
use crate::data::sample_check::{LabelRange, SampleCheck};
use crate::data::sampler::{self, Sampler, SamplerConfig};
use crate::data::stream::{RankStream, Sample, ShardSource};
use crate::data::text::TextTokenizer;
use crate::knowledge::inputs::MAX_ENTITIES;
use crate::model::arl::ArlModel;
use crate::model::flops::{PretrainFlops, PretrainShape};
use crate::model::init_weights;
use crate::model::pretext::{LOSS_WEIGHTS, LossWeights, weighted_pretrain_losses};
use crate::train_state;

/// Steps between cross-rank parameter checksums.
const CHECKSUM_EVERY: u64 = 50;

/// Runs pretraining on this rank until `train.steps` (or `stop_at`, as if preempted there, or
/// a stop signal: then with a checkpoint at the step where every rank stopped).
///
/// # Errors
/// A bad config or input (named), a rank that diverged or produced non-finite gradients, or a
/// collective that failed.
pub fn pretrain(
    config: &JobConfig,
    group: &ProcessGroup,
    device: tch::Device,
    stop_at: Option<u64>,
    stop: &StopRequest,
) -> anyhow::Result<()> {
    let model_cfg = &config.model;
    let train = &config.train;
    let ranks = Rank::new(group, device);
    let bf16 = init::bf16(train.precision, device, ranks.rank)?;
    config.validate_world(&[PRETRAIN_JOB.to_owned()], ranks.world)?;
    let identity = config.pretraining_identity();
    let config_hash = identity_hash(&identity);
    let at = config.locations();

    // The model, identical everywhere.
    let Built {
        mut vs,
        model,
        graph,
    } = init::build(config.knowledge_dir()?, model_cfg, train.seed)?;
    let entities = graph.entities.len() as i64;
    // A start (no checkpoint to resume) sets rank 0's model from [model.init]; the broadcast
    // gives it to the others. A resume never reads those files: the checkpoint has the weights.
    let location = at.checkpoints();
    let resumed = Checkpoints::open(&location)?.resume()?;
    if resumed.is_none() && ranks.rank == 0 && !model_cfg.init.is_empty() {
        let files = init_weights::load(&vs, model_cfg)?;
        emit(Event::Initialised { files });
    }
    init::broadcast(&mut vs, device, group)?;
    let variables = train_state::sorted_variables(&vs);
    let mut optimizer = AdamW::new(&vs, config.optim.clone(), true);
    let schedule = Schedule::new(train.steps, config.optim.warmup);

    // Resume.
    let mut start = 0;
    let mut resumed_data = None;
    let mut resumed_hash = None;
    if let Some(loaded) = resumed {
        let state = &loaded.manifest.state;
        resumed_hash = Some(state.config_hash.clone());
        if state.config_hash != config_hash {
            let changed = state.extra.get(EXTRA_KEY).map_or_else(
                || "not recorded".to_owned(),
                |old| differences(old, &identity).join(", "),
            );
            tracing::warn!(
                "resuming {} with a different config ({changed})",
                loaded.location
            );
        }
        resumed_data = Some((loaded.location.clone(), state.data_hash.clone()));
        train_state::restore(&loaded, "model", &variables)?;
        train_state::restore(&loaded, "optim", &optimizer.state())?;
        optimizer.set_steps(state.schedule.optimizer_steps);
        start = state.step;
        if ranks.rank == 0 {
            emit(Event::Resumed {
                step: start,
                from: loaded.location.clone(),
            });
        }
    }
    ranks.agree_on_resume(
        PRETRAIN_JOB,
        &location,
        resumed_hash.as_deref().map(|hash| (start, hash)),
    )?;
    let end = stop_at.unwrap_or(train.steps).min(train.steps);
    if start >= end {
        return Ok(());
    }

    // Data.
    let dataset = config.dataset()?;
    let source = ShardSource::open_waiting(
        dataset,
        &at.pretrain_cache(ranks.rank),
        config.data.cache_mb << 20,
        Backoff::within(config.data.storage_wait_s),
    )?;
    let data_hash = source.manifest().hash()?;
    if let Some((location, saved)) = resumed_data.filter(|(_, saved)| *saved != data_hash) {
        tracing::warn!(
            "resuming {location} on a different dataset ({dataset} now, {saved} then): the \
             sample order from here on is not the one the checkpoint's run would have seen"
        );
    }
    let vocabulary = graph.entity_ids();
    let map = EntityMap::new(&source.manifest().entities, &vocabulary);
    let sampler_cfg = SamplerConfig {
        seed: train.seed,
        ..SamplerConfig::default()
    };
    let items = source.manifest().items_per_shard();
    let position = |step| sampler::state_after(&items, train.global_batch, step);
    let sampler = Sampler::new(
        items.clone(),
        sampler_cfg,
        train.global_batch,
        (ranks.rank, ranks.world),
        position(start),
    )?;
    let tokenizer = TextTokenizer::from_file(config.tokenizer()?, config.data.max_text_len)?;
    let check = SampleCheck {
        tokenizer: tokenizer.clone(),
        positions: max_text_positions(model_cfg) as usize,
        entity_ids: map.dataset_ids(entities),
        labels: LabelRange::Unused,
    };
    let loader = Loader::start(
        RankStream::new(source, sampler, 2),
        LoaderConfig {
            threads: config.data.threads,
            queue_depth: 2,
            transform: Transform::Clip {
                size: model_cfg.vision.image_size as u32,
            },
            max_bad_fraction: config.data.max_bad_fraction,
            seed: train.seed,
            first_step: start,
            dicom: Default::default(),
            check: Some(Arc::new(check)),
        },
        (end - start) as usize,
    );
    let tokenizer_file = config.tokenizer()?;
    let collator = Collator {
        masking: Masking {
            probability: config.pretext.mlm_probability,
            whole_entities: config.pretext.entity_masking,
            padded_budget: config.pretext.mlm_budget == MlmBudget::Padded,
            ..Masking::reference(
                tokenizer.mask_id().with_context(|| {
                    format!(
                        "{}: no <mask> or [MASK] token for MLM",
                        tokenizer_file.display()
                    )
                })?,
                tokenizer.vocab_size() as i64,
            )
        },
        tokenizer,
        entities,
        map,
        patches: model_cfg.vision.grid() * model_cfg.vision.grid(),
    };
    ensure!(
        collator.masking.vocab <= model_cfg.text.vocab_size,
        "the tokenizer has {} tokens, the model's vocabulary {}",
        collator.masking.vocab,
        model_cfg.text.vocab_size
    );

    let (checkpointer, reporter) = if ranks.rank == 0 {
        let checkpointer = Checkpointer::new(
            Checkpoints::open(&location)?,
            SaverConfig {
                retention: config.checkpoint.retention,
            },
            RunIdentity {
                seed: train.seed,
                config_hash,
                data_hash,
                world: ranks.world,
            },
            &variables,
            &optimizer,
        )?;
        let events = tensorboard_dir(at.run_dir());
        let flops = PretrainFlops::new(
            model_cfg,
            PretrainShape {
                batch: (train.global_batch / ranks.world / train.grad_accum) as i64,
                text_len: config.data.max_text_len as i64,
                slots: MAX_ENTITIES as i64,
                entities,
                align: config.pretext.align,
            },
        );
        let throughput = Throughput {
            flops_per_sample: flops.training_per_sample(),
            peak_tflops: throughput::device_peak(device, train.precision, train.peak_tflops),
            devices: ranks.world,
        };
        let mut reporter = Reporter::new(
            train.tensorboard.then_some(events.as_path()),
            (start > 0).then_some(start + 1),
            train.image_every,
        )?
        .with_throughput(throughput);
        reporter.start(PRETRAIN_JOB, start, end);
        (Some(checkpointer), Some(reporter))
    } else {
        (None, None)
    };

    let [mlm, mim, _, align] = LOSS_WEIGHTS;
    let mut job = Pretraining {
        model: &model,
        model_cfg,
        collator: &collator,
        device,
        weights: LossWeights([
            mlm,
            mim,
            config.pretext.itm_weight,
            if config.pretext.align { align } else { 0.0 },
        ]),
        every_steps: config.checkpoint.every_steps,
        identity,
    };
    let mut steps = StepLoop {
        ranks: &ranks,
        variables: &variables,
        optimizer: &mut optimizer,
        schedule: &schedule,
        loader: &loader,
        position: &position,
        grad_accum: train.grad_accum,
        seed: train.seed,
        max_grad_norm: config.optim.max_grad_norm,
        bf16,
        stop,
        checkpointer,
        reporter,
        sample_log: match train.log_samples {
            true => Some(SampleLog::open(&at.sample_log(ranks.rank))?),
            false => None,
        },
    };
    steps.run(&mut job, start, end)?;
    // Every rank waits for rank 0's last commit: a scheduler that ends a job step when its
    // first task exits (srun --kill-on-bad-exit after a stop signal) cannot cut the commit.
    steps.close(true)?;
    Ok(())
}

/// What pretraining brings to the step loop: the four objectives.
struct Pretraining<'a> {
    model: &'a ArlModel,
    model_cfg: &'a ModelConfig,
    collator: &'a Collator,
    device: tch::Device,
    weights: LossWeights,
    every_steps: u64,
    identity: Value,
}

impl Job for Pretraining<'_> {
    fn forward(
        &mut self,
        images: &Tensor,
        samples: &[Sample],
        rng: &mut ChaCha8Rng,
        picture: bool,
    ) -> anyhow::Result<Forward> {
        let micro = self
            .collator
            .collate(images, samples, rng)?
            .to_device(self.device);
        let losses =
            weighted_pretrain_losses(self.model, self.model_cfg, &micro, true, self.weights);
        let logged = vec![
            losses.total.shallow_clone(),
            losses.mlm,
            losses.mim,
            losses.itm,
            losses.align,
            losses.mlm_accuracy,
            losses.itm_accuracy,
        ];
        let picture = picture.then(|| MimPicture {
            images: micro.images,
            pred: losses.mim_pred,
            mask: losses.mim_mask,
            patch: self.model_cfg.vision.patch_size,
        });
        Ok(Forward {
            loss: losses.total,
            logged,
            picture,
        })
    }

    fn describe(&self, logged: &[f64]) -> Described {
        let named = |names: &[&str], values: &[f64]| -> BTreeMap<String, f64> {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| ((*n).to_owned(), *v))
                .collect()
        };
        Described {
            loss: logged[0],
            losses: named(&["mlm", "mim", "itm", "align"], &logged[1..5]),
            accuracy: named(&["mlm", "itm"], &logged[5..7]),
        }
    }

    fn checks_replicas_at(&self, done: u64) -> bool {
        done.is_multiple_of(CHECKSUM_EVERY)
    }

    fn checkpoints_at(&self, done: u64) -> bool {
        self.every_steps > 0 && done.is_multiple_of(self.every_steps)
    }

    fn after_step(&mut self, _: u64, _: Option<&mut Reporter>) -> anyhow::Result<()> {
        Ok(())
    }

    fn extra(&self) -> anyhow::Result<BTreeMap<String, Value>> {
        Ok([(EXTRA_KEY.to_owned(), self.identity.clone())].into())
    }
}
