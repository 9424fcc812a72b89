//! One rank of a fine-tune job (ARL_SPEC.md §5.5–5.6): the ARL model with the task's head,
//! started from the pipeline's pretrained weights (or from scratch), trained data-parallel for
//! `epochs` passes by the shared step loop ([`crate::train::step_loop`]), validated after every
//! epoch, the best epoch's checkpoint pinned against retention, and finally the selected
//! weights evaluated on the test split. Rank 0 reports the [`JobResult`] and writes it as
//! `result.json` into the job's state location (`Locations::finetune_state`: under
//! `checkpoint.location` when set, which every node sees) and its folder.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use arl_c10d::ProcessGroup;
use arl_checkpoints::target::Target;
use arl_checkpoints::{Checkpoints, SaverConfig};
use arl_contract::config::finetune::{FinetuneConfig, Select, Task};
use arl_contract::config::model::ModelConfig;
use arl_contract::events::{DataHashes, JobResult, Selected};
use arl_contract::identity::identity_hash;
use arl_contract::locations::tensorboard_dir;
use arl_contract::validate::batch_split;
use arl_contract::{Event, JobConfig};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::build::{TrainData, sample_check, task_model, train_data};
use super::eval::{Evaluator, Split, keep_usable, read_split};
use super::progress::{self, Best, Progress, Resumed};
use super::task::{Targets, TaskModel, Texts};
use super::weights;
use crate::data::loader::{LoaderConfig, Transform};
use crate::data::remote::Backoff;
use crate::data::sampler;
use crate::data::stream::{Sample, ShardSource};
use crate::data::text::TextTokenizer;
use crate::train::checkpointing::{Checkpointer, RunIdentity};
use crate::train::collate::EntityMap;
use crate::train::init;
use crate::train::optim::AdamW;
use crate::train::rank::Rank;
use crate::train::report::{Reporter, emit};
use crate::train::schedule::Schedule;
use crate::train::step_loop::{Described, Ended, Forward, Job, StepLoop};
use crate::train::stop::StopRequest;
use crate::train_state::{self, Named};

/// What a fine-tune run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Train to the end (or to this step, as if preempted there), then evaluate.
    Train(Option<u64>),
    /// Only evaluate the selected weights of a finished job again.
    Evaluate,
}

/// Runs fine-tune job `job` of `config` on this rank until the end (or the step of `mode`, or
/// a stop signal), then evaluates it.
///
/// # Errors
/// A bad config or input (named), no pretrained checkpoint, a diverged rank, or a failed
/// collective.
pub fn finetune(
    config: &JobConfig,
    group: &ProcessGroup,
    device: Device,
    job: &str,
    mode: Mode,
    stop: &StopRequest,
) -> anyhow::Result<()> {
    let cfg = config.finetune_job(job)?;
    let mut model_cfg = config.model.clone();
    let pretrained_vision = model_cfg.vision.clone();
    if let Some(size) = cfg.image_size {
        model_cfg.vision.image_size = size;
    }
    let ranks = Rank::new(group, device);
    let bf16 = init::bf16(config.train.precision, device, ranks.rank)?;
    batch_split(
        &format!("finetune.{job}.global_batch"),
        cfg.global_batch,
        ranks.world,
        cfg.grad_accum,
        1,
    )?;
    let at = config.locations();
    let cache = |split: &str| at.finetune_cache(job, split, ranks.rank);
    let config_hash = identity_hash(&config.finetune_identity(&cfg, &model_cfg));

    // The splits: training streams; validation and test are read whole.
    let source = ShardSource::open_waiting(
        &cfg.split_url("train"),
        &cache("train"),
        config.data.cache_mb << 20,
        Backoff::within(config.data.storage_wait_s),
    )?;
    let train_manifest = source.manifest().clone();
    let train_hash = train_manifest.hash()?;
    let outputs = match cfg.task {
        Task::Irtr => 1,
        _ => {
            let n = train_manifest.label_names.len();
            ensure!(
                n > 0,
                "{}: the manifest names no labels (label_names)",
                cfg.split_url("train")
            );
            n as i64
        }
    };
    let limit = (cfg.task == Task::Irtr).then_some(cfg.eval_pairs);
    let read = |split: &str| read_split(&cfg.split_url(split), &cache(split), limit, true);
    let (mut val, mut test) = (read(&cfg.val_split)?, read(&cfg.test_split)?);
    for (split, manifest) in [
        (&cfg.val_split, &val.manifest),
        (&cfg.test_split, &test.manifest),
    ] {
        ensure!(
            manifest.label_names == train_manifest.label_names,
            "{}: its labels differ from {}'s (a label id must mean the same in every split)",
            cfg.split_url(split),
            cfg.split_url("train")
        );
    }
    let tokenizer = TextTokenizer::from_file(config.tokenizer()?, cfg.max_text_len)?;

    // The model: pretraining's initialisation, the head, then the pretrained weights.
    let (mut vs, net, graph, initial) = task_model(config, &model_cfg, &cfg, outputs)?;
    let fresh = Progress {
        section: config.finetune_section(job),
        init: Some(initial),
        ..Progress::default()
    };
    init::broadcast(&mut vs, device, group)?;
    let variables = train_state::sorted_variables(&vs);
    let mut optimizer = AdamW::new(&vs, cfg.optim.clone(), false);
    let vocabulary = graph.entity_ids();
    let map_of = |split: &Split| EntityMap::new(&split.manifest.entities, &vocabulary);
    let (val_map, test_map) = (map_of(&val), map_of(&test));
    for (split, map, name) in [
        (&mut val, &val_map, &cfg.val_split),
        (&mut test, &test_map, &cfg.test_split),
    ] {
        let check = sample_check(config, &cfg, map, vocabulary.len(), &tokenizer, outputs);
        let loader = LoaderConfig {
            threads: config.data.threads,
            queue_depth: 1,
            transform: Transform::Clip {
                size: model_cfg.vision.image_size as u32,
            },
            max_bad_fraction: config.data.max_bad_fraction,
            seed: cfg.seed,
            first_step: 0,
            dicom: Default::default(),
            check: Some(std::sync::Arc::new(check)),
        };
        keep_usable(split, &loader, &cfg.split_url(name))?;
    }

    let items = train_manifest.items_per_shard();
    let total_items: u64 = items.iter().map(|&n| u64::from(n)).sum();
    let steps_per_epoch = total_items / cfg.global_batch as u64;
    ensure!(
        steps_per_epoch > 0,
        "{}: {total_items} items, fewer than finetune.{job}.global_batch = {}",
        cfg.split_url("train"),
        cfg.global_batch
    );
    let total = cfg.epochs * steps_per_epoch;
    let schedule = Schedule::new(total, cfg.optim.warmup);
    let image_size = model_cfg.vision.image_size as u32;
    let evaluator = |map| Evaluator {
        model: &net,
        task: cfg.task,
        tokenizer: &tokenizer,
        map,
        rank: &ranks,
        image_size,
        batch: cfg.eval_batch,
        outputs,
        bf16,
    };

    // Resume: checkpoints (the best epoch's among them) and the result, where every node sees them.
    let state = at.finetune_state(job);
    let location = at.finetune_checkpoints(job);
    let Resumed {
        start,
        mut progress,
    } = progress::resume(
        &location,
        &state,
        job,
        &config_hash,
        &variables,
        &mut optimizer,
        fresh,
        &ranks,
    )?;
    let end = match mode {
        Mode::Train(stop_at) => stop_at.unwrap_or(total).min(total),
        Mode::Evaluate => {
            ensure!(
                start >= total,
                "job {job} has trained {start} of {total} steps: finish it before evaluating it"
            );
            total
        }
    };
    let dir = at.finetune_dir(job);
    let mut reporter = if ranks.rank == 0 {
        let events = tensorboard_dir(&dir);
        Some(Reporter::new(
            config.train.tensorboard.then_some(events.as_path()),
            (start > 0).then_some(start),
            0,
        )?)
    } else {
        None
    };

    // Zero-shot retrieval: the pretrained model before any update, at its own resolution.
    if cfg.task == Task::Irtr && cfg.zero_shot && start == 0 && progress.zero_shot.is_none() {
        let pretrained_cfg = ModelConfig {
            vision: pretrained_vision.clone(),
            ..model_cfg.clone()
        };
        let (mut vs, net, _, _) = task_model(config, &pretrained_cfg, &cfg, outputs)?;
        init::broadcast(&mut vs, device, group)?;
        let metric = Evaluator {
            model: &net,
            image_size: pretrained_vision.image_size as u32,
            ..evaluator(&test_map)
        }
        .evaluate(&test.samples)?;
        if let Some(reporter) = reporter.as_mut() {
            emit(Event::ZeroShot { metric });
            reporter.scalars(0, &metric.scalars("zero_shot"));
        }
        progress.zero_shot = Some(metric);
    }

    if start < end {
        // Retrieval negatives come from every caption of the training split.
        let pool = if cfg.task == Task::Irtr {
            read_split(&cfg.split_url("train"), &cache("pool"), None, false)?.samples
        } else {
            Vec::new()
        };
        let data = train_data(
            &cfg,
            config,
            source,
            &ranks,
            &vocabulary,
            (start, total),
            (image_size, &tokenizer, outputs),
            pool,
        )?;
        let checkpointer = if ranks.rank == 0 {
            if let Some(reporter) = reporter.as_mut() {
                reporter.start(job, start, end);
            }
            Some(Checkpointer::new(
                Checkpoints::open(&location)?,
                SaverConfig {
                    retention: config.checkpoint.retention,
                },
                RunIdentity {
                    seed: cfg.seed,
                    config_hash: config_hash.clone(),
                    data_hash: train_hash.clone(),
                    world: ranks.world,
                },
                &variables,
                &optimizer,
            )?)
        } else {
            None
        };
        let position = |step| sampler::state_after(&items, cfg.global_batch, step);
        let mut finetuning = Finetuning {
            net: &net,
            cfg: &cfg,
            tokenizer: &tokenizer,
            data: &data,
            outputs,
            device,
            steps_per_epoch,
            validation: evaluator(&val_map),
            val: &val,
            progress,
        };
        let mut steps = StepLoop {
            ranks: &ranks,
            variables: &variables,
            optimizer: &mut optimizer,
            schedule: &schedule,
            loader: &data.loader,
            position: &position,
            grad_accum: cfg.grad_accum,
            seed: cfg.seed,
            max_grad_norm: cfg.optim.max_grad_norm,
            bf16,
            stop,
            checkpointer,
            reporter: reporter.take(),
            sample_log: None,
        };
        let ended = steps.run(&mut finetuning, start, end)?;
        // Once trained, every rank reads the checkpoints (the best epoch's among them).
        reporter = steps.close(ended == Ended::Done)?;
        progress = finetuning.progress;
        if ended == Ended::Stopped || end < total {
            return Ok(());
        }
    } else if start < total {
        return Ok(());
    }

    // The test split, on the selected weights.
    let (weights, selected) =
        select_weights(&cfg, total, &progress, &location, &variables, &ranks)?;
    let metric = evaluator(&test_map).evaluate(&test.samples)?;
    if let Some(reporter) = reporter.as_mut() {
        reporter.scalars(total, &metric.scalars("test"));
        let init = progress
            .init
            .context("the job's record of its initial weights")?;
        let result = JobResult {
            job: job.to_owned(),
            section: progress.section,
            task: cfg.task,
            test: metric,
            test_split: cfg.test_split.clone(),
            val_split: cfg.val_split.clone(),
            zero_shot: progress.zero_shot,
            zero_shot_image_size: progress
                .zero_shot
                .is_some()
                .then_some(pretrained_vision.image_size),
            image_size,
            selected,
            weights,
            model_init: init.model_init(&config.model.init.sha256),
            init,
            config_hash,
            data: DataHashes {
                train: train_hash,
                val: val.hash.clone(),
                test: test.hash.clone(),
            },
            parameters: variables.iter().map(|(_, t)| t.numel() as u64).sum::<u64>(),
            epochs: cfg.epochs,
            steps: total,
            world_size: ranks.world,
        };
        // In the state location, where every node's launcher looks, and in the job folder.
        let bytes = serde_json::to_vec_pretty(&result)?;
        emit(Event::Result(Box::new(result)));
        let mut places = vec![state.clone()];
        let local = dir.to_string_lossy().into_owned();
        if local != state {
            places.push(local);
        }
        for place in places {
            Target::open(&place, &[])?.write("result.json", &[&bytes])?;
        }
    }
    group.barrier()?;
    Ok(())
}

/// Loads the weights the test split measures into `variables`: the best epoch's checkpoint or
/// the final weights (step `total`); returns their model hash (rank 0's, for the final weights) and the rule.
fn select_weights(
    cfg: &FinetuneConfig,
    total: u64,
    progress: &Progress,
    location: &str,
    variables: &[Named],
    ranks: &Rank,
) -> anyhow::Result<(String, Selected)> {
    Ok(match cfg.select {
        Select::Best => {
            let best = progress
                .best
                .as_ref()
                .with_context(|| format!("{location}: the job's record names no best epoch"))?;
            let loaded = Checkpoints::open(location)?
                .load_group(best.step, "model")
                .context("the best epoch's checkpoint")?;
            train_state::restore(&loaded, "model", variables)?;
            (
                weights::model_hash(&loaded.manifest),
                Selected {
                    rule: "best validation epoch".to_owned(),
                    step: best.step,
                    epoch: Some(best.epoch),
                    val: Some(best.metric),
                },
            )
        }
        Select::Last => {
            // Rank 0 committed the final checkpoint (the others have no use for its hash).
            let hash = if ranks.rank == 0 {
                let latest = Checkpoints::open(location)?
                    .latest()?
                    .context("the final checkpoint")?;
                weights::model_hash(&latest)
            } else {
                String::new()
            };
            (
                hash,
                Selected {
                    rule: "final weights".to_owned(),
                    step: total,
                    epoch: None,
                    val: None,
                },
            )
        }
    })
}

/// What a fine-tune brings to the step loop: the task's loss and the epoch-end validation.
struct Finetuning<'a> {
    net: &'a TaskModel,
    cfg: &'a FinetuneConfig,
    tokenizer: &'a TextTokenizer,
    data: &'a TrainData,
    outputs: i64,
    device: Device,
    steps_per_epoch: u64,
    validation: Evaluator<'a>,
    val: &'a Split,
    progress: Progress,
}

impl Job for Finetuning<'_> {
    fn forward(
        &mut self,
        images: &Tensor,
        samples: &[Sample],
        rng: &mut ChaCha8Rng,
        _: bool,
    ) -> anyhow::Result<Forward> {
        let images = images.to_device(self.device);
        let loss = training_loss(
            self.net,
            self.cfg,
            self.tokenizer,
            self.data,
            samples,
            &images,
            self.outputs,
            rng,
        )?;
        Ok(Forward {
            logged: vec![loss.shallow_clone()],
            loss,
            picture: None,
        })
    }

    fn describe(&self, logged: &[f64]) -> Described {
        Described {
            loss: logged[0],
            losses: BTreeMap::new(),
            accuracy: BTreeMap::new(),
        }
    }

    fn checks_replicas_at(&self, done: u64) -> bool {
        done.is_multiple_of(self.steps_per_epoch)
    }

    fn checkpoints_at(&self, done: u64) -> bool {
        done.is_multiple_of(self.steps_per_epoch)
    }

    /// Validation at each epoch's end selects the best epoch; the final weights need none.
    fn after_step(&mut self, done: u64, reporter: Option<&mut Reporter>) -> anyhow::Result<()> {
        if !done.is_multiple_of(self.steps_per_epoch) || self.cfg.select != Select::Best {
            return Ok(());
        }
        let epoch = done / self.steps_per_epoch;
        let metric = self.validation.evaluate(&self.val.samples)?;
        let best = self
            .progress
            .best
            .as_ref()
            .is_none_or(|b| metric.headline() > b.metric.headline());
        if let Some(reporter) = reporter {
            emit(Event::Validation {
                epoch,
                step: done,
                metric,
                best,
            });
            reporter.scalars(done, &metric.scalars("val"));
        }
        if best {
            // This epoch's checkpoint, saved next, is the best one: the later ones pin it.
            self.progress.best = Some(Best {
                step: done,
                epoch,
                metric,
            });
        }
        Ok(())
    }

    fn extra(&self) -> anyhow::Result<BTreeMap<String, Value>> {
        self.progress.extra()
    }
}

/// The loss of one micro-batch: classification of each (image, text) pair, or for retrieval
/// each image against its caption and `negatives` captions drawn from the pool.
#[allow(clippy::too_many_arguments)]
fn training_loss(
    net: &TaskModel,
    cfg: &FinetuneConfig,
    tokenizer: &TextTokenizer,
    data: &TrainData,
    samples: &[Sample],
    images: &Tensor,
    outputs: i64,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Tensor> {
    let device = images.device();
    let vectors = net.model.align_head.entity_vectors(true);
    let image = net.encode_images(images);
    let (texts, image, candidates) = if cfg.task == Task::Irtr {
        let k = cfg.negatives;
        let mut picked: Vec<&Sample> = Vec::with_capacity(samples.len() * (1 + k));
        for sample in samples {
            picked.push(sample);
            picked.extend((0..k).map(|_| &data.pool[rng.gen_range(0..data.pool.len())]));
        }
        let repeats = Tensor::arange(samples.len() as i64, (Kind::Int64, device))
            .repeat_interleave_self_int(1 + k as i64, 0, None);
        (
            Texts::encode(tokenizer, &data.map, &picked)?,
            image.index_select(0, &repeats),
            1 + k as i64,
        )
    } else {
        let picked: Vec<&Sample> = samples.iter().collect();
        (Texts::encode(tokenizer, &data.map, &picked)?, image, 1)
    };
    let texts = texts.to_device(device);
    let out = net.pairs(
        &texts,
        &net.encode_texts(&texts, true),
        &image,
        &vectors,
        true,
    )?;
    Ok(Targets::of(cfg.task, samples, outputs)?.loss(&out, candidates))
}
