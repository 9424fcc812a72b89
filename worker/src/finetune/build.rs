//! What a fine-tune job trains: the task model (pretrained weights, head, frozen unused heads)
//! and a rank's training data.

use arl_contract::JobConfig;
use arl_contract::config::finetune::{FinetuneConfig, Init, Task, TrainTransform};
use arl_contract::config::model::ModelConfig;
use arl_contract::events::{InitialWeights, Scratch};
use arl_contract::validate::max_text_positions;
use tch::nn;

use super::task::{Head, TaskModel, UNUSED_HEADS};
use super::weights;
use crate::data::loader::{Loader, LoaderConfig, Transform};
use crate::data::sample_check::{LabelRange, SampleCheck};
use crate::data::sampler::{self, Sampler, SamplerConfig};
use crate::data::stream::{RankStream, Sample, ShardSource};
use crate::data::text::TextTokenizer;
use crate::knowledge::vocab::KnowledgeGraph;
use crate::model::init_weights;
use crate::train::collate::EntityMap;
use crate::train::init::{self, Built};
use crate::train::rank::Rank;
use crate::train_state;

/// A rank's training data: the loader of its samples and, for retrieval, the pool of captions
/// negatives are drawn from.
pub struct TrainData {
    /// The loader of the rank's samples.
    pub loader: Loader,
    /// Entity ids of the training split in the model's vocabulary.
    pub map: EntityMap,
    /// Retrieval: every caption of the training split (empty for the other tasks).
    pub pool: Vec<Sample>,
}

/// The task's model at `model_cfg`: pretraining's initialisation (seeded with the pretraining
/// seed), the head (seeded with the job's), the pretrained weights (or from scratch, the
/// files of `[model.init]`), the retrieval head copied from the ITM "match" row, unused heads frozen. Also
/// returns the entity graph and the record of the initial weights.
pub fn task_model(
    config: &JobConfig,
    model_cfg: &ModelConfig,
    cfg: &FinetuneConfig,
    outputs: i64,
) -> anyhow::Result<(nn::VarStore, TaskModel, KnowledgeGraph, InitialWeights)> {
    let Built { vs, model, graph } =
        init::build(config.knowledge_dir()?, model_cfg, config.train.seed)?;
    tch::manual_seed(cfg.seed as i64);
    let head = Head::new(
        &vs.root(),
        cfg.task,
        &model,
        model_cfg.fusion.hidden,
        outputs,
    );
    let variables = train_state::sorted_variables(&vs);
    let init = if cfg.init == Init::Pretrained {
        weights::load_pretrained(
            &config.locations().checkpoints(),
            &variables,
            cfg.task.head(),
            model_cfg.vision.grid(),
        )?
    } else {
        // From scratch is from where pretraining starts, [model.init] included.
        init_weights::load(&vs, model_cfg)?;
        InitialWeights::Scratch(Scratch::Scratch)
    };
    if let Head::Retrieval(retrieval) = &head {
        retrieval.copy_match_row(&model.itm_head);
    }
    for (name, variable) in &variables {
        if UNUSED_HEADS.iter().any(|h| name.starts_with(h)) {
            let _ = variable.shallow_clone().set_requires_grad(false);
        }
    }
    Ok((vs, TaskModel { model, head }, graph, init))
}

/// The checks of the job's samples of a split whose entity ids `map` maps onto a vocabulary of
/// `entities`, for a head of `outputs`.
pub fn sample_check(
    config: &JobConfig,
    cfg: &FinetuneConfig,
    map: &EntityMap,
    entities: usize,
    tokenizer: &TextTokenizer,
    outputs: i64,
) -> SampleCheck {
    SampleCheck {
        tokenizer: tokenizer.clone(),
        positions: max_text_positions(&config.model) as usize,
        entity_ids: map.dataset_ids(entities as i64),
        labels: match cfg.task {
            Task::Vqa => LabelRange::Answers(outputs),
            Task::Cls => LabelRange::Classes(outputs),
            Task::Irtr => LabelRange::Unused,
        },
    }
}

/// The rank's training stream, with the caption pool of retrieval; each sample is checked
/// against `tokenizer`, the knowledge vocabulary and the head's `outputs`.
#[allow(clippy::too_many_arguments)]
pub fn train_data(
    cfg: &FinetuneConfig,
    config: &JobConfig,
    source: ShardSource,
    ranks: &Rank<'_>,
    vocabulary: &std::collections::HashMap<&str, i64>,
    (start, total): (u64, u64),
    (image_size, tokenizer, outputs): (u32, &TextTokenizer, i64),
    pool: Vec<Sample>,
) -> anyhow::Result<TrainData> {
    let manifest = source.manifest().clone();
    let map = EntityMap::new(&manifest.entities, vocabulary);
    let check = sample_check(config, cfg, &map, vocabulary.len(), tokenizer, outputs);
    let items = manifest.items_per_shard();
    let sampler = Sampler::new(
        items.clone(),
        SamplerConfig {
            seed: cfg.seed,
            ..SamplerConfig::default()
        },
        cfg.global_batch,
        (ranks.rank, ranks.world),
        sampler::state_after(&items, cfg.global_batch, start),
    )?;
    let transform = match cfg.train_transform {
        TrainTransform::Clip => Transform::Clip { size: image_size },
        TrainTransform::ResizedCrop => Transform::ResizedCrop { size: image_size },
    };
    let loader = Loader::start(
        RankStream::new(source, sampler, 2),
        LoaderConfig {
            threads: config.data.threads,
            queue_depth: 2,
            transform,
            max_bad_fraction: config.data.max_bad_fraction,
            seed: cfg.seed,
            first_step: start,
            dicom: Default::default(),
            check: Some(std::sync::Arc::new(check)),
        },
        (total - start) as usize,
    );
    Ok(TrainData { loader, map, pool })
}
