//! `arl data check DATASET`: every sample of a dataset through the training path of a job
//! (decode, transform, tokenizer, entity inputs, labels and their ranges), shard by shard in
//! bounded memory, with the training's bad-sample accounting: each bad sample named by shard,
//! row and reason, and a verdict against `data.max_bad_fraction`.

use std::sync::Arc;

use anyhow::Context;
use arl_contract::config::finetune::{Task, TrainTransform};
use arl_contract::validate::max_text_positions;
use arl_contract::{JobConfig, PRETRAIN_JOB};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::loader::{self, LoaderConfig, Transform};
use crate::data::remote::{Backoff, StorageUnavailable};
use crate::data::sample_check::{LabelRange, SampleCheck};
use crate::data::sampler::SampleRef;
use crate::data::stream::{BadSample, ShardSource};
use crate::data::text::TextTokenizer;
use crate::knowledge::store;
use crate::train::collate::EntityMap;

/// Samples checked together (decoded on the loader's threads, then dropped).
const CHUNK: usize = 64;

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Samples (image-text items) in the dataset.
    pub samples: u64,
    /// The bad ones, in dataset order.
    pub bad: Vec<BadSample>,
}

impl Report {
    /// Fraction of the samples that are bad.
    pub fn bad_fraction(&self) -> f64 {
        self.bad.len() as f64 / self.samples.max(1) as f64
    }

    /// The summary line.
    pub fn summary(&self, max_bad_fraction: f64) -> String {
        let verdict = if self.bad_fraction() > max_bad_fraction {
            "more than"
        } else {
            "within"
        };
        format!(
            "{} samples, {} bad ({:.2} %): {verdict} data.max_bad_fraction = {max_bad_fraction}",
            self.samples,
            self.bad.len(),
            100.0 * self.bad_fraction()
        )
    }
}

/// The loader settings of `job` of `config` for the dataset `source`: its transform, image
/// size and sample checks (tokenizer, positions, entity ids, label range).
///
/// # Errors
/// An unknown job, or its tokenizer or knowledge folder cannot be read.
pub fn job_loader(
    config: &JobConfig,
    job: &str,
    source: &ShardSource,
) -> anyhow::Result<LoaderConfig> {
    let manifest = source.manifest();
    let (text_len, image_size, transform, labels) = if job == PRETRAIN_JOB {
        let size = config.model.vision.image_size as u32;
        (
            config.data.max_text_len,
            size,
            TrainTransform::Clip,
            LabelRange::Unused,
        )
    } else {
        let cfg = config.finetune_job(job)?;
        let size = cfg.image_size.unwrap_or(config.model.vision.image_size) as u32;
        let outputs = manifest.label_names.len() as i64;
        let labels = match cfg.task {
            Task::Vqa => LabelRange::Answers(outputs),
            Task::Cls => LabelRange::Classes(outputs),
            Task::Irtr => LabelRange::Unused,
        };
        (cfg.max_text_len, size, cfg.train_transform, labels)
    };
    let knowledge = config.knowledge_dir()?;
    let (graph, _) = store::read(knowledge)
        .with_context(|| format!("reading the knowledge folder {}", knowledge.display()))?;
    let map = EntityMap::new(&manifest.entities, &graph.entity_ids());
    let check = SampleCheck {
        tokenizer: TextTokenizer::from_file(config.tokenizer()?, text_len)?,
        positions: max_text_positions(&config.model) as usize,
        entity_ids: map.dataset_ids(graph.entities.len() as i64),
        labels,
    };
    Ok(LoaderConfig {
        threads: config.data.threads,
        queue_depth: 1,
        transform: match transform {
            TrainTransform::Clip => Transform::Clip { size: image_size },
            TrainTransform::ResizedCrop => Transform::ResizedCrop { size: image_size },
        },
        max_bad_fraction: config.data.max_bad_fraction,
        seed: config.train.seed,
        first_step: 0,
        dicom: Default::default(),
        check: Some(Arc::new(check)),
    })
}

/// Checks every sample of `source` as `cfg` says, showing progress on `bar` (its length set
/// here). A shard that cannot be read makes each of its samples bad.
///
/// # Errors
/// The store stayed unreachable past its wait budget.
pub fn check(
    source: &ShardSource,
    cfg: &LoaderConfig,
    bar: &ProgressBar,
) -> anyhow::Result<Report> {
    let shards = &source.manifest().shards;
    let mut report = Report {
        samples: shards.iter().map(|s| u64::from(s.items)).sum(),
        bad: Vec::new(),
    };
    bar.set_length(report.samples);
    for (index, entry) in shards.iter().enumerate() {
        let shard = index as u32;
        let refs = (0..entry.items).map(|item| SampleRef { shard, item });
        let open = match source.open_shard(shard) {
            Ok(open) => open,
            Err(error) if StorageUnavailable::caused(&error) => return Err(error),
            Err(error) => {
                let reason = format!("{error:#}");
                report.bad.extend(refs.map(|at| BadSample {
                    at,
                    reason: reason.clone(),
                }));
                bar.inc(u64::from(entry.items));
                continue;
            }
        };
        let refs: Vec<SampleRef> = refs.collect();
        for chunk in refs.chunks(CHUNK) {
            let mut samples = Vec::with_capacity(chunk.len());
            for &at in chunk {
                match open.sample(at) {
                    Ok(sample) => samples.push(sample),
                    Err(error) => report.bad.push(BadSample {
                        at,
                        reason: format!("{error:#}"),
                    }),
                }
            }
            let prepared = loader::prepare(samples, 0, cfg, shards);
            report.bad.extend(prepared.bad);
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();
    report.bad.sort_by_key(|b| b.at);
    Ok(report)
}

/// Opens `url` with `config`'s cache and storage budget, checks it for `job`, prints each bad
/// sample and the summary; returns whether the dataset is within `data.max_bad_fraction`.
///
/// # Errors
/// The dataset or the job's inputs cannot be read.
pub fn run(config: &JobConfig, job: &str, url: &str) -> anyhow::Result<bool> {
    let cache = tempfile::Builder::new()
        .prefix("arl-data-check-")
        .tempdir()
        .context("a cache folder for the check")?;
    let source = ShardSource::open_waiting(
        url,
        cache.path(),
        config.data.cache_mb << 20,
        Backoff::within(config.data.storage_wait_s),
    )?;
    let cfg = job_loader(config, job, &source)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} samples, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    bar.set_message(format!("checking {url}"));
    let report = check(&source, &cfg, &bar)?;
    // A shard that cannot be read fails each of its samples for one reason: one line.
    for group in report.bad.chunk_by(|a, b| a.reason == b.reason) {
        match group {
            [one] => println!("bad sample: {}", one.reason),
            _ => println!("bad samples ({}): {}", group.len(), group[0].reason),
        }
    }
    println!("{url}: {}", report.summary(cfg.max_bad_fraction));
    Ok(report.bad_fraction() <= cfg.max_bad_fraction)
}
