//! Evaluation of a fine-tune: a split read whole, spread over the ranks, and the metric of
//! ARL_SPEC.md §5.6 computed from the all-reduced outputs (so every rank agrees on it).
//!
//! Retrieval scores every image against every caption with the full cross-encoder, and reuses
//! the work that does not depend on the pair: each caption is encoded once (by every rank),
//! each image once (by the rank that owns it), the entity graph once per evaluation; only the
//! fusion module runs N × N times, in batches of `eval_batch` captions per image.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use tch::{Device, Kind, Tensor};

use arl_contract::config::finetune::Task;
use arl_contract::metrics::{Metric, Recall};

use super::metrics;
use super::task::{TaskModel, Texts, answer_type, class_label, vqa_target};
use crate::data::image;
use crate::data::loader::{self, LoaderConfig};
use crate::data::sampler::SampleRef;
use crate::data::shard::Manifest;
use crate::data::stream::{Sample, ShardSource};
use crate::data::table;
use crate::data::text::TextTokenizer;
use crate::train::collate::EntityMap;
use crate::train::rank::Rank;

/// A split read whole, in manifest order.
pub struct Split {
    /// Its items (image bytes included).
    pub samples: Vec<Sample>,
    /// Its manifest.
    pub manifest: Manifest,
    /// sha256 of the manifest (which holds every shard's sha256).
    pub hash: String,
}

/// Reads the first `limit` items (all when `None`) of the dataset at `url`, caching shards in
/// `cache_dir`; without `images` the image bytes are dropped as each row is read (a caption
/// pool).
///
/// # Errors
/// The manifest or a shard cannot be read or decoded (named), or the split is empty.
pub fn read_split(
    url: &str,
    cache_dir: &Path,
    limit: Option<usize>,
    images: bool,
) -> anyhow::Result<Split> {
    let source = ShardSource::open(url, cache_dir, 1 << 30)?;
    let manifest = source.manifest().clone();
    let hash = manifest.hash()?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut samples = Vec::new();
    'shards: for shard in 0..manifest.shards.len() as u32 {
        let mut item = 0u32;
        let mut row_in_shard = 0u32;
        for batch in source.shard(shard)? {
            for r in 0..batch.num_rows() {
                row_in_shard += 1;
                let mut row = table::row(&batch, r)
                    .with_context(|| format!("{url}: shard {shard}, row {r}"))?;
                if !images {
                    row.image = Vec::new();
                }
                for text in 0..row.captions.len() {
                    if samples.len() == limit {
                        break 'shards;
                    }
                    samples.push(Sample {
                        at: SampleRef { shard, item },
                        row: row.clone(),
                        text,
                        row_in_shard: row_in_shard - 1,
                    });
                    item += 1;
                }
            }
        }
    }
    ensure!(!samples.is_empty(), "{url}: the split has no items");
    Ok(Split {
        samples,
        manifest,
        hash,
    })
}

/// Drops the samples of `split` (read from `url`) that `cfg` refuses (its sample checks, the
/// image's decode and transform), each logged with its shard, row and reason, so that a bad
/// image or label costs its own item, not the evaluation. Checked 64 at a time.
///
/// # Errors
/// More than `cfg.max_bad_fraction` of the split is bad (in a split of 100 samples or more),
/// or all of it.
pub fn keep_usable(split: &mut Split, cfg: &LoaderConfig, url: &str) -> anyhow::Result<()> {
    let mut bad = std::collections::HashSet::new();
    for chunk in split.samples.chunks(64) {
        for sample in loader::prepare(chunk.to_vec(), 0, cfg, &split.manifest.shards).bad {
            tracing::warn!(split = url, reason = %sample.reason, "skipped a bad sample");
            bad.insert(sample.at);
        }
    }
    let total = split.samples.len();
    split.samples.retain(|s| !bad.contains(&s.at));
    // As in training: the fraction counts from 100 samples on (from the first when it is 0).
    let enforced = total >= 100 || cfg.max_bad_fraction == 0.0;
    ensure!(
        !split.samples.is_empty()
            && (!enforced || bad.len() as f64 <= cfg.max_bad_fraction * total as f64),
        "{url}: {} of {total} samples are bad, more than data.max_bad_fraction = {}",
        bad.len(),
        cfg.max_bad_fraction
    );
    Ok(())
}

/// The images of `samples`, decoded and given the `clip` transform at `size` (B, 3, S, S).
///
/// # Errors
/// An image that cannot be decoded (named with its id and shard).
pub fn clip_images(samples: &[&Sample], size: u32) -> anyhow::Result<Tensor> {
    let tensors = samples
        .iter()
        .map(|s| {
            let rgb = loader::decode(&s.row.image, &Default::default())
                .and_then(|rgb| image::clip(&rgb, size))
                .with_context(|| format!("image {:?} (shard {})", s.row.image_id, s.at.shard))?;
            Ok(image::normalized_tensor(&rgb))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0))
}

/// What evaluation runs with.
pub struct Evaluator<'a> {
    /// The model (put in evaluation mode by passing `train = false`).
    pub model: &'a TaskModel,
    /// The task.
    pub task: Task,
    /// Tokenizer of the texts.
    pub tokenizer: &'a TextTokenizer,
    /// Dataset → knowledge entity ids.
    pub map: &'a EntityMap,
    /// The ranks.
    pub rank: &'a Rank<'a>,
    /// Image side.
    pub image_size: u32,
    /// Pairs per fusion batch.
    pub batch: usize,
    /// Head outputs (classes).
    pub outputs: i64,
    /// bf16 autocast.
    pub bf16: bool,
}

impl Evaluator<'_> {
    fn device(&self) -> Device {
        self.rank.device
    }

    /// The metric of the model on `samples`.
    ///
    /// # Errors
    /// Unreadable items or a failed collective.
    pub fn evaluate(&self, samples: &[Sample]) -> anyhow::Result<Metric> {
        crate::heartbeat::phase(arl_contract::heartbeat::Phase::Evaluation);
        tch::no_grad(|| {
            arl_c10d::autocast_bf16(self.device(), self.bf16, || match self.task {
                Task::Irtr => self.retrieval(samples).map(Metric::Irtr),
                Task::Vqa | Task::Cls => self.classification(samples),
            })
        })?
    }

    /// The rank-sum of a table each rank filled its rows of, flattened.
    fn rank_sum(&self, table: &Tensor) -> anyhow::Result<Vec<f32>> {
        Ok(self
            .rank
            .sum(&table.view([-1]))?
            .into_iter()
            .map(|v| v as f32)
            .collect())
    }

    /// Items of this rank: `i ≡ rank (mod world)`.
    fn own(&self, n: usize) -> Vec<usize> {
        (self.rank.rank..n).step_by(self.rank.world).collect()
    }

    fn classification(&self, samples: &[Sample]) -> anyhow::Result<Metric> {
        let n = samples.len();
        let classes = self.outputs as usize;
        let mut logits = Tensor::zeros([n as i64, classes as i64], (Kind::Float, Device::Cpu));
        let vectors = self.model.model.align_head.entity_vectors(false);
        for chunk in self.own(n).chunks(self.batch) {
            let picked: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let texts = Texts::encode(self.tokenizer, self.map, &picked)?.to_device(self.device());
            let images = clip_images(&picked, self.image_size)?.to_device(self.device());
            let out = self.model.pairs(
                &texts,
                &self.model.encode_texts(&texts, false),
                &self.model.encode_images(&images),
                &vectors,
                false,
            )?;
            let rows = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = logits.index_copy_(0, &rows, &out.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        let all = self.rank_sum(&logits)?;
        Ok(match self.task {
            Task::Vqa => {
                let targets = samples
                    .iter()
                    .map(vqa_target)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let types = samples
                    .iter()
                    .map(answer_type)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Metric::Vqa(metrics::vqa_accuracy(
                    &metrics::vqa_scores(&all, classes, &targets),
                    &types,
                ))
            }
            _ => {
                let labels = samples
                    .iter()
                    .map(class_label)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Metric::Cls {
                    accuracy: metrics::accuracy(&all, classes, &labels),
                    items: n,
                }
            }
        })
    }

    fn retrieval(&self, samples: &[Sample]) -> anyhow::Result<Recall> {
        // Images are the distinct image ids of the items, in first-seen order; each item is
        // a caption of one of them.
        let mut images: Vec<&Sample> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let gold: Vec<usize> = samples
            .iter()
            .map(|sample| {
                *index
                    .entry(sample.row.image_id.as_str())
                    .or_insert_with(|| {
                        images.push(sample);
                        images.len() - 1
                    })
            })
            .collect();
        let (n_images, n_texts) = (images.len(), samples.len());
        let device = self.device();
        let vectors = self.model.model.align_head.entity_vectors(false);
        let all: Vec<&Sample> = samples.iter().collect();
        let mut texts = Vec::new();
        let mut encoded = Vec::new();
        for chunk in all.chunks(self.batch) {
            let t = Texts::encode(self.tokenizer, self.map, chunk)?.to_device(device);
            encoded.push(self.model.encode_texts(&t, false));
            texts.push(t);
        }
        let scores = Tensor::zeros(
            [n_images as i64, n_texts as i64],
            (Kind::Float, Device::Cpu),
        );
        for i in self.own(n_images) {
            let image = self
                .model
                .encode_images(&clip_images(&[images[i]], self.image_size)?.to_device(device));
            let row: Vec<Tensor> = texts
                .iter()
                .zip(&encoded)
                .map(|(t, e)| {
                    let pairs = e.size()[0];
                    let out = self.model.pairs(
                        t,
                        e,
                        &image.expand([pairs, -1, -1], false),
                        &vectors,
                        false,
                    )?;
                    Ok(out.view([-1]).to_kind(Kind::Float).to_device(Device::Cpu))
                })
                .collect::<anyhow::Result<_>>()?;
            scores.get(i as i64).copy_(&Tensor::cat(&row, 0));
        }
        let all = self.rank_sum(&scores)?;
        Ok(metrics::recall(&all, n_images, &gold))
    }
}
