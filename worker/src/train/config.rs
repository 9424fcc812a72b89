//! The sections of a job config that pretraining reads: `[data]`, `[knowledge]`, `[train]`,
//! `[optim]`, `[checkpoint]` and `[pretext]` (the launcher passes the resolved file; `[model]` is read by
//! `ModelConfig::from_section`). Unknown keys and bad values are errors that name the key.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use arl_checkpoints::Retention;
use serde::{Deserialize, Serialize};

use super::optim::OptimConfig;

/// `[data]`: where the pairs come from and how they are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The pretraining dataset: a folder or object-store URL with a shard manifest.
    pub train: String,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: PathBuf,
    /// Tokens per text, padded and truncated (the reference: 64).
    #[serde(default = "default_text_len")]
    pub max_text_len: usize,
    /// Local cache of the shards; default: `<run>/cache/rank<R>`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Cache size cap, MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// Image decoding threads per rank.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_text_len() -> usize {
    64
}
fn default_cache_mb() -> u64 {
    4096
}
fn default_threads() -> usize {
    2
}

/// `[knowledge]`: the folder written by `arl knowledge build` (entities, graph, TransE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// The knowledge folder.
    pub dir: PathBuf,
}

/// `[train]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps of the whole run.
    pub steps: u64,
    /// Samples per step over all ranks (must be a multiple of the world size).
    pub global_batch: usize,
    /// Seed of the initial weights, the sample order and every step's randomness.
    pub seed: u64,
    /// Where logs and (by default) checkpoints go.
    pub run_dir: PathBuf,
    /// Micro-batches per step on each rank; their gradients are averaged before the update.
    pub grad_accum: usize,
    /// `fp32`, or `bf16`: autocast of the forward passes to bfloat16 (GPU only).
    pub precision: Precision,
    /// Write TensorBoard event files to `<run_dir>/tensorboard` (rank 0).
    pub tensorboard: bool,
    /// Steps between MIM reconstruction images in TensorBoard (0: none).
    pub image_every: u64,
}

/// Arithmetic of the forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32.
    Fp32,
    /// Autocast to bfloat16 on CUDA (weights, gradients and optimiser state stay float32).
    Bf16,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            global_batch: 16,
            seed: 0,
            run_dir: PathBuf::from("runs/default"),
            grad_accum: 1,
            precision: Precision::Fp32,
            tensorboard: true,
            image_every: 100,
        }
    }
}

/// `[checkpoint]`: when and where the state is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// A folder or object-store URL; default: `<run_dir>/checkpoints`.
    pub location: Option<String>,
    /// Save every this many steps (0: only at the end).
    pub every_steps: u64,
    /// Which checkpoints to keep.
    pub retention: Retention,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            location: None,
            every_steps: 1000,
            retention: Retention::default(),
        }
    }
}

/// `[pretext]`: the objectives and the paper's ablation switches (ARL_SPEC.md §3, Table 4;
/// RK, knowledge in the fusion module, is `[model.fusion] knowledge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretextConfig {
    /// AK: align through knowledge (the alignment objective).
    pub align: bool,
    /// LK: learn from knowledge (whole-entity MLM masking; off: token masking).
    pub entity_masking: bool,
    /// Fraction of the budget length that MLM masks.
    pub mlm_probability: f64,
    /// What the MLM budget counts: `padded` (the reference code) or `text` (the paper).
    pub mlm_budget: MlmBudget,
    /// Weight of ITM in the total (the reference: 0.1).
    pub itm_weight: f64,
}

/// What the MLM budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlmBudget {
    /// Every position, padding included.
    Padded,
    /// The text's own tokens.
    Text,
}

impl Default for PretextConfig {
    fn default() -> Self {
        Self {
            align: true,
            entity_masking: true,
            mlm_probability: 0.15,
            mlm_budget: MlmBudget::Padded,
            itm_weight: 0.1,
        }
    }
}

/// Everything pretraining reads besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// `[data]`.
    pub data: DataConfig,
    /// `[knowledge]`.
    pub knowledge: KnowledgeConfig,
    /// `[train]`.
    pub train: TrainConfig,
    /// `[optim]`.
    pub optim: OptimConfig,
    /// `[checkpoint]`.
    pub checkpoint: CheckpointConfig,
    /// `[pretext]`.
    pub pretext: PretextConfig,
}

fn section<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
) -> anyhow::Result<T> {
    match table.get(name) {
        None => Ok(T::default()),
        Some(value) => value
            .clone()
            .try_into()
            .with_context(|| format!("[{name}]")),
    }
}

fn required<T: serde::de::DeserializeOwned>(table: &toml::Table, name: &str) -> anyhow::Result<T> {
    table
        .get(name)
        .with_context(|| format!("no [{name}] section"))?
        .clone()
        .try_into()
        .with_context(|| format!("[{name}]"))
}

impl PretrainConfig {
    /// Reads the sections from a whole job config.
    ///
    /// # Errors
    /// A missing `[data]` or `[knowledge]`, an unknown key, a wrong type or a bad value,
    /// named with its section.
    pub fn from_table(table: &toml::Table) -> anyhow::Result<Self> {
        let config = Self {
            data: required(table, "data")?,
            knowledge: required(table, "knowledge")?,
            train: section(table, "train")?,
            optim: section(table, "optim")?,
            checkpoint: section(table, "checkpoint")?,
            pretext: section(table, "pretext")?,
        };
        ensure!(
            config.pretext.mlm_probability > 0.0 && config.pretext.mlm_probability < 1.0,
            "pretext.mlm_probability must be between 0 and 1"
        );
        ensure!(config.train.steps > 0, "train.steps must be at least 1");
        ensure!(
            config.train.global_batch > 0,
            "train.global_batch must be at least 1"
        );
        ensure!(
            config.train.grad_accum > 0,
            "train.grad_accum must be at least 1"
        );
        ensure!(
            config.data.max_text_len >= 8,
            "data.max_text_len must be at least 8"
        );
        ensure!(config.optim.lr > 0.0, "optim.lr must be positive");
        Ok(config)
    }

    /// The checkpoint location.
    pub fn checkpoint_location(&self) -> String {
        self.checkpoint.location.clone().unwrap_or_else(|| {
            self.train
                .run_dir
                .join("checkpoints")
                .to_string_lossy()
                .into_owned()
        })
    }
}
