//! One rank of a fine-tune job (ARL_SPEC.md §5.5–5.6): the ARL model with the task's head,
//! started from the pipeline's pretrained weights (or from scratch), trained data-parallel for
//! `epochs` passes with the pretraining loop's guarantees (one all-rank decision per step on
//! non-finite gradients and stop signals, rank-mean gradients, replica checksums, asynchronous
//! checkpoints that resume exactly), validated after every epoch, the best epoch's checkpoint
//! pinned against retention, and finally the selected weights evaluated on the test split. Rank
//! 0 writes `<run_dir>/finetune/<job>/result.json` with the metric and the hashes it depends on.
//! Checkpoints and a copy of the result go to the job's state location
//! (`layout::finetune_location`: under `checkpoint.location` when set), which every node sees.

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use arl_c10d::ProcessGroup;
use arl_checkpoints::layout::{finetune_dir, finetune_location};
use arl_checkpoints::run_config;
use arl_checkpoints::target::Target;
use arl_checkpoints::{Checkpoints, SaverConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::build::{TrainData, task_model, train_data};
use super::config::{FinetuneConfig, Select, Task};
use super::eval::{Evaluator, Split, read_split};
use super::progress::{self, Best, Progress, Resumed};
use super::task::{Targets, TaskModel, Texts};
use super::weights;
use crate::data::sampler;
use crate::data::stream::{Sample, ShardSource};
use crate::data::text::TextTokenizer;
use crate::model::config::ModelConfig;
use crate::train::checkpointing::{Checkpointer, RunIdentity};
use crate::train::collate::EntityMap;
use crate::train::config::PretrainConfig;
use crate::train::init;
use crate::train::optim::{AdamW, GROUPS};
use crate::train::pretrain::step_seed;
use crate::train::rank::{GradientSync, Rank};
use crate::train::schedule::Schedule;
use crate::train::stop::{StopRequest, signal_name};
use crate::train::tensorboard::EventWriter;
use crate::train_state;

/// Consecutive steps with non-finite gradients after which the job stops.
const MAX_NONFINITE_STEPS: u32 = 3;

/// What a fine-tune run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Train to the end (or to this step, as if preempted there), then evaluate.
    Train(Option<u64>),
    /// Only evaluate the selected weights of a finished job again.
    Evaluate,
}

/// Runs fine-tune job `job` of the config `table` on this rank until the end (or the step of
/// `mode`, or a stop signal), then evaluates it.
///
/// # Errors
/// A bad config or input (named), no pretrained checkpoint, a diverged rank, or a failed
/// collective.
pub fn finetune(
    table: &toml::Table,
    group: &ProcessGroup,
    device: Device,
    job: &str,
    mode: Mode,
    stop: &StopRequest,
) -> anyhow::Result<()> {
    let cfg = FinetuneConfig::from_table(table, job)?;
    let pre = PretrainConfig::from_table(table)?;
    let mut model_cfg = ModelConfig::from_section(
        table
            .get("model")
            .and_then(|v| v.as_table())
            .unwrap_or(&toml::Table::new()),
    )?;
    let pretrained_vision = model_cfg.vision.clone();
    if let Some(size) = cfg.image_size {
        model_cfg.vision.image_size = size;
    }
    let ranks = Rank::new(group, device);
    let bf16 = init::bf16(pre.train.precision, device, ranks.rank)?;
    let per_rank = cfg.global_batch / ranks.world;
    ensure!(
        per_rank * ranks.world == cfg.global_batch
            && per_rank.is_multiple_of(cfg.grad_accum)
            && per_rank >= cfg.grad_accum,
        "[finetune.{job}] global_batch = {} must split evenly over {} ranks and grad_accum = {} \
         micro-batches each",
        cfg.global_batch,
        ranks.world,
        cfg.grad_accum
    );
    let dir = finetune_dir(&pre.train.run_dir, job);
    let cache = |split: &str| {
        dir.join("cache")
            .join(split)
            .join(format!("rank{}", ranks.rank))
    };
    // Paths in the run folder count relative to it: each node of a pipeline has its own.
    let identity = run_config::relative_to_run_dir(
        &json!({
            "job": cfg, "model": model_cfg, "knowledge": pre.knowledge,
            "tokenizer": pre.data.tokenizer,
        }),
        &pre.train.run_dir.to_string_lossy(),
    );
    let config_hash = run_config::identity_hash(&identity);

    // The splits: training streams; validation and test are read whole.
    let source = ShardSource::open(
        &cfg.split_url("train"),
        &cache("train"),
        pre.data.cache_mb << 20,
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
    let (val, test) = (read(&cfg.val_split)?, read(&cfg.test_split)?);
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
    let tokenizer = TextTokenizer::from_file(&pre.data.tokenizer, cfg.max_text_len)?;

    // The model: pretraining's initialisation, the head, then the pretrained weights.
    // The job's section, with paths in the run folder relative to it (each node has its own).
    let section = run_config::relative_to_run_dir(
        &serde_json::to_value(table.get("finetune").and_then(|f| f.get(job)))?,
        &pre.train.run_dir.to_string_lossy(),
    );
    let (mut vs, net, graph, initial) = task_model(&pre, &model_cfg, &cfg, outputs)?;
    let progress = Progress {
        section,
        init: Some(initial),
        ..Progress::default()
    };
    init::broadcast(&mut vs, device, group)?;
    let variables = train_state::sorted_variables(&vs);
    let mut optimizer = AdamW::new(&vs, cfg.optim.clone(), false);
    let vocabulary = graph.entity_ids();
    let map_of = |split: &Split| EntityMap::new(&split.manifest.entities, &vocabulary);
    let (val_map, test_map) = (map_of(&val), map_of(&test));

    let items = train_manifest.items_per_shard();
    let total_items: u64 = items.iter().map(|&n| u64::from(n)).sum();
    let steps_per_epoch = total_items / cfg.global_batch as u64;
    ensure!(
        steps_per_epoch > 0,
        "{}: {total_items} items, fewer than [finetune.{job}] global_batch = {}",
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

    // Resume.
    // Checkpoints (the best epoch's among them) and the result, where every node sees them.
    let state = finetune_location(pre.checkpoint.location.as_deref(), &pre.train.run_dir, job);
    let location = format!("{state}/checkpoints");
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
        progress,
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
    let mut events = if ranks.rank == 0 && pre.train.tensorboard {
        Some(EventWriter::create(
            &dir.join("tensorboard"),
            (start > 0).then_some(start),
        )?)
    } else {
        None
    };
    let mut log = |step: u64, scalars: Vec<(String, f64)>| {
        if let Some(writer) = events.as_mut()
            && let Err(error) = writer.scalars(step, &scalars).and_then(|()| writer.flush())
        {
            tracing::warn!("TensorBoard disabled: {error:#}");
            events = None;
        }
    };

    // Zero-shot retrieval: the pretrained model before any update, at its own resolution.
    if cfg.task == Task::Irtr && cfg.zero_shot && start == 0 && progress.zero_shot.is_none() {
        let pretrained_cfg = ModelConfig {
            vision: pretrained_vision.clone(),
            ..model_cfg.clone()
        };
        let (mut vs, net, _, _) = task_model(&pre, &pretrained_cfg, &cfg, outputs)?;
        init::broadcast(&mut vs, device, group)?;
        let metric = Evaluator {
            model: &net,
            image_size: pretrained_vision.image_size as u32,
            ..evaluator(&test_map)
        }
        .evaluate(&test.samples)?;
        if ranks.rank == 0 {
            println!("{}", json!({"zero_shot": metric}));
            log(0, metric.scalars("zero_shot"));
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
            &pre,
            source,
            &ranks,
            &vocabulary,
            (start, total),
            image_size,
            pool,
        )?;
        let mut checkpointer = if ranks.rank == 0 {
            println!("{}", json!({"start": start, "end": end, "job": job}));
            Some(Checkpointer::new(
                Checkpoints::open(&location)?,
                SaverConfig {
                    retention: pre.checkpoint.retention,
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
        let position_at = |step| sampler::state_after(&items, cfg.global_batch, step);
        let mut nonfinite_run = 0;
        for step in start..end {
            let done = step + 1;
            let started = Instant::now();
            let batch = data.loader.next_batch()?;
            for bad in &batch.bad {
                tracing::warn!(rank = ranks.rank, step, reason = %bad.reason, "skipped a sample");
            }
            let samples = batch.samples.len();
            ensure!(
                samples >= cfg.grad_accum,
                "rank {} has {samples} usable samples at step {done}, fewer than grad_accum",
                ranks.rank
            );
            let seed = step_seed(cfg.seed, step, ranks.rank);
            tch::manual_seed(seed as i64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            optimizer.zero_grad();
            let mut loss_sum = Tensor::zeros([1], (Kind::Double, device));
            for k in 0..cfg.grad_accum {
                let (from, to) = (
                    k * samples / cfg.grad_accum,
                    (k + 1) * samples / cfg.grad_accum,
                );
                let images = batch
                    .images
                    .narrow(0, from as i64, (to - from) as i64)
                    .to_device(device);
                let micro = &batch.samples[from..to];
                let loss = tch::autocast(bf16, || {
                    training_loss(
                        &net, &cfg, &tokenizer, &data, micro, &images, outputs, &mut rng,
                    )
                })?;
                (&loss / cfg.grad_accum as f64).backward();
                loss_sum += loss.detach().to_kind(Kind::Double) / cfg.grad_accum as f64;
            }
            let grads = optimizer.grads();
            let GradientSync {
                bad_ranks,
                stop: stop_signal,
            } = ranks.sync_gradients(&grads, stop.signal())?;
            let loss = ranks.sum(&loss_sum)?[0] / ranks.world as f64;
            if bad_ranks.is_empty() {
                nonfinite_run = 0;
                let grad_norm = optimizer.grad_norm();
                let factor = schedule.factor(optimizer.steps());
                optimizer.step(factor);
                if ranks.rank == 0 {
                    let lr = factor * optimizer.peak_lr(0);
                    let samples_per_s =
                        (samples * ranks.world) as f64 / started.elapsed().as_secs_f64();
                    println!(
                        "{}",
                        json!({"step": done, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                            "samples_per_s": samples_per_s})
                    );
                    let mut scalars = vec![
                        ("loss".to_owned(), loss),
                        ("grad_norm".to_owned(), grad_norm),
                        ("throughput/samples_per_s".to_owned(), samples_per_s),
                    ];
                    scalars.extend(
                        GROUPS
                            .iter()
                            .enumerate()
                            .map(|(g, name)| (format!("lr/{name}"), factor * optimizer.peak_lr(g))),
                    );
                    log(done, scalars);
                }
            } else {
                nonfinite_run += 1;
                if ranks.rank == 0 {
                    println!(
                        "{}",
                        json!({"step": done, "skipped": "non-finite gradients", "ranks": bad_ranks})
                    );
                }
                if nonfinite_run >= MAX_NONFINITE_STEPS {
                    bail!(
                        "non-finite gradients on ranks {bad_ranks:?} for {nonfinite_run} steps \
                         in a row (last: step {done})"
                    );
                }
            }
            let epoch_end = done % steps_per_epoch == 0;
            if epoch_end || done == end || stop_signal.is_some() {
                ranks.check_replicas(&variables, done)?;
            }
            // Validation selects the best epoch; the final weights need none.
            if epoch_end && cfg.select == Select::Best {
                let epoch = done / steps_per_epoch;
                let metric = evaluator(&val_map).evaluate(&val.samples)?;
                let better = progress
                    .best
                    .as_ref()
                    .is_none_or(|b| metric.headline() > b.metric.headline());
                if ranks.rank == 0 {
                    println!(
                        "{}",
                        json!({"epoch": epoch, "step": done, "val": metric, "best": better})
                    );
                    log(done, metric.scalars("val"));
                }
                if better {
                    // This epoch's checkpoint, saved below, is the best one: the later ones pin it.
                    progress.best = Some(Best {
                        step: done,
                        epoch,
                        metric,
                    });
                }
            }
            if let Some(checkpointer) = checkpointer.as_mut() {
                checkpointer.poll()?;
                if epoch_end || done == end || stop_signal.is_some() {
                    checkpointer.save(
                        done,
                        position_at(done),
                        &variables,
                        &optimizer,
                        &schedule,
                        progress.extra()?,
                    )?;
                }
            }
            if let Some(signal) = stop_signal {
                if ranks.rank == 0 {
                    println!(
                        "{}",
                        json!({"stopped": done, "signal": signal_name(signal)})
                    );
                }
                group.barrier()?;
                if let Some(checkpointer) = checkpointer {
                    checkpointer.finish()?;
                }
                return Ok(());
            }
        }
        if let Some(checkpointer) = checkpointer {
            checkpointer.finish()?;
        }
        // Every rank may now read the checkpoints, the best epoch's included.
        group.barrier()?;
        if end < total {
            return Ok(());
        }
    } else if start < total {
        return Ok(());
    }

    // The test split, on the selected weights.
    let (weights, selected) = match cfg.select {
        Select::Best => {
            let best = progress
                .best
                .as_ref()
                .with_context(|| format!("{location}: the job's record names no best epoch"))?;
            let loaded = Checkpoints::open(&location)?
                .load_group(best.step, "model")
                .context("the best epoch's checkpoint")?;
            train_state::restore(&loaded, "model", &variables)?;
            (
                weights::model_hash(&loaded.manifest),
                json!({"rule": "best validation epoch", "step": best.step,
                "epoch": best.epoch, "val": best.metric}),
            )
        }
        Select::Last => {
            // Rank 0 committed the final checkpoint (the others have no use for its hash).
            let hash = if ranks.rank == 0 {
                let latest = Checkpoints::open(&location)?
                    .latest()?
                    .context("the final checkpoint")?;
                weights::model_hash(&latest)
            } else {
                String::new()
            };
            (hash, json!({"rule": "final weights", "step": total}))
        }
    };
    let metric = evaluator(&test_map).evaluate(&test.samples)?;
    if ranks.rank == 0 {
        log(total, metric.scalars("test"));
        let result = json!({
            "job": job,
            "section": progress.section,
            "task": cfg.task,
            "test": metric,
            "test_split": cfg.test_split,
            "val_split": cfg.val_split,
            "zero_shot": progress.zero_shot,
            "zero_shot_image_size": progress.zero_shot.is_some().then_some(pretrained_vision.image_size),
            "image_size": image_size,
            "selected": selected,
            "weights": weights,
            "init": progress.init,
            "config_hash": config_hash,
            "data": {
                "train": train_hash,
                "val": val.hash,
                "test": test.hash,
            },
            "parameters": variables.iter().map(|(_, t)| t.numel() as u64).sum::<u64>(),
            "epochs": cfg.epochs,
            "steps": total,
            "world_size": ranks.world,
        });
        println!("{}", json!({"result": result}));
        // In the state location, where every node's launcher looks, and in the job folder.
        let bytes = serde_json::to_vec_pretty(&result)?;
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
    );
    Ok(Targets::of(cfg.task, samples, outputs)?.loss(&out, candidates))
}
