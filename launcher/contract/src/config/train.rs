//! `[train]`, `[optim]`, `[checkpoint]` and `[pretext]`: the pretraining loop, its optimiser,
//! its checkpoints and its objectives.

use std::path::PathBuf;

use arl_checkpoints::Retention;
use serde::{Deserialize, Serialize};

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
    /// Each pretraining rank appends the samples (shard, item) of every step it trains to
    /// `<run_dir>/samples/rank<R>.jsonl`: an audit of the sample order across resumes.
    pub log_samples: bool,
    /// Peak TFLOP/s of one device, the denominator of the MFU in each step's report; default:
    /// the GPU's datasheet figure for `precision` (dense bf16, or float32), and none on the CPU
    /// or an unknown GPU, where MFU is then not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_tflops: Option<f64>,
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
            log_samples: false,
            peak_tflops: None,
        }
    }
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

/// `[optim]`: AdamW (Hugging Face's variant) over six parameter groups, with warm-up and linear
/// decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate of the base group (uni-modal encoders).
    pub lr: f64,
    /// Multiplier of the heads' learning rate.
    pub lr_multiplier_head: f64,
    /// Multiplier of the multi-modal (fusion) learning rate.
    pub lr_multiplier_multi_modal: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam's betas.
    pub betas: (f64, f64),
    /// Adam's epsilon (added to √v before bias correction, as Hugging Face does).
    pub eps: f64,
    /// Warm-up: a fraction of the run's optimiser steps when below 1, else a step count.
    pub warmup: f64,
    /// Clip the global gradient norm to this (0: no clipping, the reference's setting).
    pub max_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            lr_multiplier_head: 5.0,
            lr_multiplier_multi_modal: 5.0,
            weight_decay: 0.01,
            betas: (0.9, 0.98),
            eps: 1e-8,
            warmup: 0.1,
            max_grad_norm: 0.0,
        }
    }
}

/// `[checkpoint]`: when and where the state is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// A folder or object-store URL; default: `<run_dir>/checkpoints`
    /// ([`crate::locations::Locations::checkpoints`]).
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// What the MLM budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlmBudget {
    /// Every position, padding included.
    Padded,
    /// The text's own tokens.
    Text,
}
