//! `[prepare]` and `[pipeline]`: the inputs `arl run` makes itself, and the jobs it runs.

use serde::{Deserialize, Serialize};

/// `[prepare]`: with `synthetic = true` (the embedded default), `arl run` writes the synthetic
/// benchmark, a tokenizer learned from its reports and the HPO knowledge linked over them into
/// the run folder, and the unset `[data]`, `[knowledge]` and `[finetune.NAME] data` paths point
/// at them ([`crate::locations::Locations::prepared`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Make the synthetic inputs.
    pub synthetic: bool,
    /// Scenes (images) of the synthetic benchmark.
    pub scenes: usize,
    /// Their side in pixels.
    pub image_size: u32,
    /// Tokens of the learned tokenizer (at most the model's vocabulary).
    pub vocab_size: usize,
    /// TransE width: the model's entity width (`tiny`: 32, `base`: 256).
    pub entity_dim: usize,
    /// TransE epochs.
    pub transe_epochs: usize,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        Self {
            synthetic: false,
            scenes: 500,
            image_size: 64,
            vocab_size: 1000,
            entity_dim: 32,
            transe_epochs: 20,
        }
    }
}

/// `[pipeline]`: the jobs `arl run` runs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `"pretrain"` (first, if at all), then names of `[finetune.NAME]` jobs.
    pub jobs: Vec<String>,
}
