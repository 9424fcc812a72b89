//! `[data]` and `[knowledge]`: what pretraining reads, and the tokenizer and knowledge every
//! job shares. The paths may be left unset when `[prepare]` makes the inputs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[data]`: where the pairs come from and how they are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The pretraining dataset: a folder or object-store URL with a shard manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// The tokenizer (`tokenizer.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per text, padded and truncated (the reference: 64).
    pub max_text_len: usize,
    /// Local cache of the shards; default: `<run_dir>/cache/rank<R>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Cache size cap, MiB.
    pub cache_mb: u64,
    /// Image decoding threads per rank.
    pub threads: usize,
    /// Fraction of samples that may be bad (undecodable, out of range; each skipped and
    /// named) before a run stops; checked once 100 samples are seen.
    pub max_bad_fraction: f64,
    /// How long a rank waits for an unreachable store, reporting "waiting for storage", before
    /// it stops with a resumable error; below `dist.timeout_s`, which its peers wait for it.
    pub storage_wait_s: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: None,
            tokenizer: None,
            max_text_len: 64,
            cache_dir: None,
            cache_mb: 4096,
            threads: 2,
            max_bad_fraction: 0.01,
            storage_wait_s: 60.0,
        }
    }
}

/// `[knowledge]`: the folder written by `arl knowledge build` (entities, graph, TransE).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// The knowledge folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}
