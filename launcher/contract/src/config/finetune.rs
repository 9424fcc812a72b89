//! `[finetune.NAME]`: one fine-tune job of a pipeline (ARL_SPEC.md §5.5). Unset keys take the
//! reference's value for the task, resolved once in [`JobSection::resolve`].

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::train::OptimConfig;

/// The benchmark task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Medical VQA: answer classification with BCE (VQA-RAD, SLAKE, VQA-Med-2019).
    Vqa,
    /// Image-text classification with cross-entropy (MELINDA).
    Cls,
    /// Image-text retrieval: a match score per pair, trained against random captions (ROCO).
    Irtr,
}

impl Task {
    /// The synthetic benchmark's dataset of the task (`vqa`, `cls`, `irtr`).
    pub fn dataset(self) -> &'static str {
        match self {
            Self::Vqa => "vqa",
            Self::Cls => "cls",
            Self::Irtr => "irtr",
        }
    }

    /// The head's name in the model (`vqa_head`, `cls_head`, `irtr_head`).
    pub fn head(self) -> &'static str {
        match self {
            Self::Vqa => "vqa_head",
            Self::Cls => "cls_head",
            Self::Irtr => "irtr_head",
        }
    }
}

/// Where the weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The pipeline's pretrained model (its newest committed checkpoint).
    Pretrained,
    /// The initialisation pretraining starts from (the "from scratch" row of an ablation).
    Scratch,
}

/// Which weights the test split evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// The epoch with the best validation metric (`trainer.test(ckpt_path="best")`).
    Best,
    /// The final weights (the reference's retrieval evaluation).
    Last,
}

/// The training images' transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainTransform {
    /// Resize and centre crop (`clip`; VQA-RAD).
    Clip,
    /// RandomResizedCrop, scale 0.9–1 (`clip_resizedcrop`; the other tasks).
    ResizedCrop,
}

/// One fine-tune job, as written in the config (unset keys take the task's defaults, in
/// [`JobSection::resolve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// vqa, cls or irtr.
    pub task: Task,
    /// A folder or object-store URL holding the `train`, `val` and `test` datasets (set by
    /// `[prepare]` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Passes over the training split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Samples (retrieval: images) per optimiser step over all ranks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    /// Micro-batches per rank and step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_accum: Option<usize>,
    /// Tokens per text (the reference: 32 for VQA, 128 for MELINDA, 40 for retrieval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_text_len: Option<usize>,
    /// Image side; the vision positions are interpolated when it differs from pretraining's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<i64>,
    /// The training transform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_transform: Option<TrainTransform>,
    /// The base learning rate (uni-modal encoders and knowledge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Multiplier of the head's learning rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_multiplier_head: Option<f64>,
    /// Multiplier of the fusion module's learning rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_multiplier_multi_modal: Option<f64>,
    /// Warm-up (a fraction of the steps when below 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<f64>,
    /// Seed of the head, the order and the randomness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Which weights the test split evaluates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
    /// The split that selects the best epoch. VQA-RAD's release has no validation split of
    /// its own (its `valset.json` is the test set), so the reference selects on test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_split: Option<String>,
    /// The split the results table reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_split: Option<String>,
    /// Retrieval: random captions per image in training (the reference: 15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negatives: Option<usize>,
    /// Retrieval: evaluate on the first N pairs of the split (the reference: 2000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_pairs: Option<usize>,
    /// Retrieval: also evaluate the pretrained model before fine-tuning (zero-shot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_shot: Option<bool>,
    /// Texts per fusion batch when scoring all pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch: Option<usize>,
    /// Where the weights start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
}

/// A job with every value resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The job's name (`[finetune.NAME]`).
    pub name: String,
    /// The task.
    pub task: Task,
    /// Dataset root (`<data>/<split>`).
    pub data: String,
    /// Epochs.
    pub epochs: u64,
    /// Global batch.
    pub global_batch: usize,
    /// Micro-batches per rank.
    pub grad_accum: usize,
    /// Tokens per text.
    pub max_text_len: usize,
    /// Image side (None: the model's).
    pub image_size: Option<i64>,
    /// The training transform.
    pub train_transform: TrainTransform,
    /// AdamW with the job's learning rates (groups as in pretraining, the align head in base).
    pub optim: OptimConfig,
    /// Seed.
    pub seed: u64,
    /// Which weights the test split evaluates.
    pub select: Select,
    /// The validation split.
    pub val_split: String,
    /// The test split.
    pub test_split: String,
    /// Retrieval negatives per image.
    pub negatives: usize,
    /// Retrieval pairs evaluated.
    pub eval_pairs: usize,
    /// Retrieval zero-shot evaluation.
    pub zero_shot: bool,
    /// Texts per scoring batch.
    pub eval_batch: usize,
    /// Initial weights.
    pub init: Init,
}

impl JobSection {
    /// Job `name` with every value resolved: the task's reference values where unset.
    ///
    /// # Errors
    /// No `data` (which `[prepare]` sets for the synthetic benchmark).
    pub fn resolve(&self, name: &str) -> anyhow::Result<FinetuneConfig> {
        let section = self.clone();
        let task = section.task;
        let (head, text_len, select) = match task {
            Task::Vqa => (50.0, 32, Select::Best),
            Task::Cls => (10.0, 128, Select::Best),
            Task::Irtr => (5.0, 40, Select::Last),
        };
        let data = section
            .data
            .with_context(|| format!("finetune.{name}.data is not set"))?;
        Ok(FinetuneConfig {
            name: name.to_owned(),
            task,
            data: data.trim_end_matches('/').to_owned(),
            epochs: section.epochs.unwrap_or(10),
            global_batch: section.global_batch.unwrap_or(16),
            grad_accum: section.grad_accum.unwrap_or(1),
            max_text_len: section.max_text_len.unwrap_or(text_len),
            image_size: section.image_size,
            train_transform: section
                .train_transform
                .unwrap_or(TrainTransform::ResizedCrop),
            optim: OptimConfig {
                lr: section.lr.unwrap_or(5e-6),
                lr_multiplier_head: section.lr_multiplier_head.unwrap_or(head),
                lr_multiplier_multi_modal: section.lr_multiplier_multi_modal.unwrap_or(5.0),
                warmup: section.warmup.unwrap_or(0.1),
                ..OptimConfig::default()
            },
            seed: section
                .seed
                .unwrap_or(if task == Task::Irtr { 0 } else { 42 }),
            select: section.select.unwrap_or(select),
            val_split: section.val_split.unwrap_or_else(|| "val".to_owned()),
            test_split: section.test_split.unwrap_or_else(|| "test".to_owned()),
            negatives: section.negatives.unwrap_or(15),
            eval_pairs: section.eval_pairs.unwrap_or(2000),
            zero_shot: section.zero_shot.unwrap_or(true),
            eval_batch: section.eval_batch.unwrap_or(256),
            init: section.init.unwrap_or(Init::Pretrained),
        })
    }
}

impl FinetuneConfig {
    /// The dataset of `split`.
    pub fn split_url(&self, split: &str) -> String {
        format!("{}/{split}", self.data)
    }
}
