//! One rank's pretraining loop (ARL_SPEC.md §3, §5): the model built identically on every rank
//! (and broadcast from rank 0), resumed from the newest committed checkpoint, fed by the
//! rank's slice of the global sample order, the four objectives, gradients averaged over the
//! ranks, one all-rank decision on non-finite gradients, AdamW under the warm-up + linear-decay
//! schedule, a periodic cross-rank parameter checksum, and asynchronous checkpoints from
//! rank 0.
//!
//! Every step's randomness (MLM masking, ITM pairing, MIM noise, dropout) is derived from
//! (seed, step, rank): the collate generator is a ChaCha stream seeded with it and torch's
//! generator is re-seeded with it, so a resumed run continues the exact trajectory with no
//! generator state to carry beyond the step (the manifest records each rank's generator at the
//! resume step all the same). Rank 0 prints one JSON line per step and per checkpoint.

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use arl_c10d::ProcessGroup;
use arl_checkpoints::run_config;
use arl_checkpoints::{Checkpoints, SaverConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::checkpointing::{Checkpointer, RunIdentity};
use super::collate::{Collator, EntityMap};
use super::config::{MlmBudget, PretrainConfig};
use super::init::{self, Built};
use super::masking::Masking;
use super::optim::{AdamW, GROUPS};
use super::rank::{GradientSync, Rank};
use super::report::{MimPicture, Reporter, StepReport};
use super::schedule::Schedule;
use super::stop::{StopRequest, signal_name};
use crate::data::loader::{Loader, LoaderConfig, Transform};
use crate::data::sampler::{self, Sampler, SamplerConfig};
use crate::data::stream::{RankStream, ShardSource};
use crate::data::text::TextTokenizer;
use crate::model::config::ModelConfig;
use crate::model::pretext::{LOSS_WEIGHTS, LossWeights, weighted_pretrain_losses};
use crate::train_state;

/// Steps between cross-rank parameter checksums.
const CHECKSUM_EVERY: u64 = 50;
/// Consecutive steps with non-finite gradients after which the run stops.
const MAX_NONFINITE_STEPS: u32 = 3;

/// The seed of step `step` on rank `rank` (SplitMix64 over the three).
pub fn step_seed(seed: u64, step: u64, rank: usize) -> u64 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs pretraining on this rank until `train.steps` (or `stop_at`, as if preempted there, or
/// a stop signal: then with a checkpoint at the step where every rank stopped).
///
/// # Errors
/// A bad config or input (named), a rank that diverged or produced non-finite gradients, or a
/// collective that failed.
pub fn pretrain(
    table: &toml::Table,
    group: &ProcessGroup,
    device: Device,
    stop_at: Option<u64>,
    stop: &StopRequest,
) -> anyhow::Result<()> {
    let cfg = PretrainConfig::from_table(table)?;
    let model_cfg = ModelConfig::from_section(
        table
            .get("model")
            .and_then(|v| v.as_table())
            .unwrap_or(&toml::Table::new()),
    )?;
    let ranks = Rank::new(group, device);
    let bf16 = init::bf16(cfg.train.precision, device, ranks.rank)?;
    let per_rank = cfg.train.global_batch / ranks.world;
    ensure!(
        per_rank * ranks.world == cfg.train.global_batch
            && per_rank.is_multiple_of(cfg.train.grad_accum)
            && per_rank / cfg.train.grad_accum >= 2,
        "train.global_batch = {} must split evenly over {} ranks and train.grad_accum = {} \
         micro-batches each, of at least 2 samples (ITM needs a negative)",
        cfg.train.global_batch,
        ranks.world,
        cfg.train.grad_accum
    );
    let config = run_config::identity(&serde_json::to_value(table)?);
    let config_hash = run_config::identity_hash(&config);

    // The model, identical everywhere.
    let Built {
        mut vs,
        model,
        graph,
    } = init::build(&cfg.knowledge.dir, &model_cfg, cfg.train.seed)?;
    let entities = graph.entities.len() as i64;
    init::broadcast(&mut vs, device, group)?;
    let variables = train_state::sorted_variables(&vs);
    let mut optimizer = AdamW::new(&vs, cfg.optim.clone(), true);
    let schedule = Schedule::new(cfg.train.steps, cfg.optim.warmup);

    // Resume.
    let location = cfg.checkpoint_location();
    let checkpoints = Checkpoints::open(&location)?;
    let mut start = 0;
    let mut resumed_data = None;
    if let Some(loaded) = checkpoints.resume()? {
        let state = &loaded.manifest.state;
        if state.config_hash != config_hash {
            let changed = state.extra.get(run_config::EXTRA_KEY).map_or_else(
                || "not recorded".to_owned(),
                |old| run_config::differences(old, &config).join(", "),
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
            println!(
                "{}",
                serde_json::json!({"resumed": start, "from": loaded.location})
            );
        }
    }
    let end = stop_at.unwrap_or(cfg.train.steps).min(cfg.train.steps);
    if start >= end {
        return Ok(());
    }

    // Data.
    let cache_dir = cfg.data.cache_dir.clone().unwrap_or_else(|| {
        cfg.train
            .run_dir
            .join("cache")
            .join(format!("rank{}", ranks.rank))
    });
    let source = ShardSource::open(&cfg.data.train, &cache_dir, cfg.data.cache_mb << 20)?;
    let data_hash = source.manifest().hash()?;
    if let Some((location, saved)) = resumed_data.filter(|(_, saved)| *saved != data_hash) {
        tracing::warn!(
            "resuming {location} on a different dataset ({} now, {saved} then): the sample \
             order from here on is not the one the checkpoint's run would have seen",
            cfg.data.train
        );
    }
    let vocabulary = graph.entity_ids();
    let map = EntityMap::new(&source.manifest().entities, &vocabulary);
    let sampler_cfg = SamplerConfig {
        seed: cfg.train.seed,
        ..SamplerConfig::default()
    };
    let items = source.manifest().items_per_shard();
    let position_at = |step| sampler::state_after(&items, cfg.train.global_batch, step);
    let sampler = Sampler::new(
        items.clone(),
        sampler_cfg,
        cfg.train.global_batch,
        (ranks.rank, ranks.world),
        position_at(start),
    )?;
    let loader = Loader::start(
        RankStream::new(source, sampler, 2),
        LoaderConfig {
            threads: cfg.data.threads,
            queue_depth: 2,
            transform: Transform::Clip {
                size: model_cfg.vision.image_size as u32,
            },
            max_bad_fraction: 0.01,
            seed: cfg.train.seed,
            first_step: start,
            dicom: Default::default(),
        },
        (end - start) as usize,
    );
    let tokenizer = TextTokenizer::from_file(&cfg.data.tokenizer, cfg.data.max_text_len)?;
    let collator = Collator {
        masking: Masking {
            probability: cfg.pretext.mlm_probability,
            whole_entities: cfg.pretext.entity_masking,
            padded_budget: cfg.pretext.mlm_budget == MlmBudget::Padded,
            ..Masking::reference(
                tokenizer
                    .token_id("<mask>")
                    .context("the tokenizer has no <mask>")?,
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

    let (mut checkpointer, mut reporter) = if ranks.rank == 0 {
        let identity = RunIdentity {
            seed: cfg.train.seed,
            config_hash,
            data_hash,
            world: ranks.world,
        };
        let checkpointer = Checkpointer::new(
            Checkpoints::open(&location)?,
            SaverConfig {
                retention: cfg.checkpoint.retention,
            },
            identity,
            &variables,
            &optimizer,
        )?;
        let events = cfg.train.run_dir.join("tensorboard");
        let reporter = Reporter::new(
            cfg.train.tensorboard.then_some(events.as_path()),
            start,
            cfg.train.image_every,
        )?;
        println!("{}", serde_json::json!({"start": start, "end": end}));
        (Some(checkpointer), Some(reporter))
    } else {
        (None, None)
    };

    let accum = cfg.train.grad_accum;
    let [mlm, mim, _, align] = LOSS_WEIGHTS;
    let weights = LossWeights([
        mlm,
        mim,
        cfg.pretext.itm_weight,
        if cfg.pretext.align { align } else { 0.0 },
    ]);
    let mut nonfinite_run = 0;
    for step in start..end {
        let done = step + 1;
        let started = Instant::now();
        let batch = loader.next_batch()?;
        let data_wait = started.elapsed();
        for bad in &batch.bad {
            tracing::warn!(rank = ranks.rank, step, reason = %bad.reason, "skipped a sample");
        }
        let samples = batch.samples.len();
        ensure!(
            samples >= accum,
            "rank {} has {samples} usable samples at step {done}, fewer than train.grad_accum",
            ranks.rank
        );
        let seed = step_seed(cfg.train.seed, step, ranks.rank);
        tch::manual_seed(seed as i64);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let want_image = reporter.as_ref().is_some_and(|r| r.wants_image(done));
        let mut picture = None;
        let mut logged = Tensor::zeros([7], (Kind::Double, device));
        optimizer.zero_grad();
        // Micro-batches: near-equal slices of the rank's batch, gradients summed at 1/accum.
        for k in 0..accum {
            let (from, to) = (k * samples / accum, (k + 1) * samples / accum);
            let micro = collator
                .collate(
                    &batch.images.narrow(0, from as i64, (to - from) as i64),
                    &batch.samples[from..to],
                    &mut rng,
                )?
                .to_device(device);
            let losses = tch::autocast(bf16, || {
                weighted_pretrain_losses(&model, &model_cfg, &micro, true, weights)
            });
            (&losses.total / accum as f64).backward();
            let values = [
                &losses.total,
                &losses.mlm,
                &losses.mim,
                &losses.itm,
                &losses.align,
                &losses.mlm_accuracy,
                &losses.itm_accuracy,
            ]
            .map(|t| t.detach().to_kind(Kind::Double));
            logged += Tensor::stack(&values, 0) / accum as f64;
            if want_image && k == 0 {
                picture = Some((micro.images, losses.mim_pred, losses.mim_mask));
            }
        }

        // Gradients: one decision on non-finite values and stop requests, then the rank-mean.
        let grads = optimizer.grads();
        let GradientSync {
            bad_ranks,
            stop: stop_signal,
        } = ranks.sync_gradients(&grads, stop.signal())?;
        let logged: Vec<f64> = ranks
            .sum(&logged)?
            .iter()
            .map(|sum| sum / ranks.world as f64)
            .collect();
        if !bad_ranks.is_empty() {
            nonfinite_run += 1;
            if ranks.rank == 0 {
                println!(
                    "{}",
                    serde_json::json!({"step": done, "skipped": "non-finite gradients",
                        "ranks": bad_ranks})
                );
            }
            if nonfinite_run >= MAX_NONFINITE_STEPS {
                bail!(
                    "non-finite gradients on ranks {bad_ranks:?} for {nonfinite_run} steps in a \
                     row (last: step {done})"
                );
            }
        } else {
            nonfinite_run = 0;
            let grad_norm = if cfg.optim.max_grad_norm > 0.0 {
                optimizer.clip_grad_norm(cfg.optim.max_grad_norm)
            } else {
                optimizer.grad_norm()
            };
            let factor = schedule.factor(optimizer.steps());
            optimizer.step(factor);
            if done % CHECKSUM_EVERY == 0 || done == end || stop_signal.is_some() {
                ranks.check_replicas(&variables, done)?;
            }
            if let Some(reporter) = reporter.as_mut() {
                let seconds = started.elapsed().as_secs_f64();
                let report = StepReport {
                    step: done,
                    losses: [logged[0], logged[1], logged[2], logged[3], logged[4]],
                    accuracy: [logged[5], logged[6]],
                    lr: GROUPS
                        .iter()
                        .enumerate()
                        .map(|(g, name)| (*name, factor * optimizer.peak_lr(g)))
                        .collect(),
                    grad_norm,
                    samples_per_s: (samples * ranks.world) as f64 / seconds,
                    data_wait: data_wait.as_secs_f64() / seconds,
                };
                let picture = picture.as_ref().map(|(images, pred, mask)| MimPicture {
                    images,
                    pred,
                    mask,
                    patch: model_cfg.vision.patch_size,
                });
                reporter.step(&report, picture);
            }
        }
        if let Some(checkpointer) = checkpointer.as_mut() {
            checkpointer.poll()?;
            let every = cfg.checkpoint.every_steps;
            if (every > 0 && done % every == 0) || done == end || stop_signal.is_some() {
                checkpointer.save(
                    done,
                    position_at(done),
                    &variables,
                    &optimizer,
                    &schedule,
                    [(run_config::EXTRA_KEY.to_owned(), config.clone())].into(),
                )?;
            }
        }
        if let Some(signal) = stop_signal {
            if ranks.rank == 0 {
                println!(
                    "{}",
                    serde_json::json!({"stopped": done, "signal": signal_name(signal)})
                );
            }
            break;
        }
    }
    // Every rank is done with collectives; rank 0 alone waits for its last commit.
    group.barrier()?;
    if let Some(checkpointer) = checkpointer {
        checkpointer.finish()?;
    }
    Ok(())
}
