//! Every place a run reads or writes, from its config: the run folder and what lies in it,
//! the checkpoint location, the fine-tunes' folders and shared state, and the caches.
//!
//! ```text
//! <run_dir>/config.toml              the resolved config
//! <run_dir>/rank0.jsonl, logs/, tensorboard/, cache/rank<R>/     pretraining
//! <run_dir>/synth/, tokenizer.json, knowledge/, knowledge.toml   [prepare]
//! <run_dir>/finetune/<job>/          a fine-tune: rank0.jsonl, logs/, tensorboard/, cache/
//! <run_dir>/results.md, results.json, ablate/<variant>/, ablation.md, ablation.json
//! <checkpoint location>              pretraining's checkpoints (default <run_dir>/checkpoints)
//! <checkpoint location>/finetune/<job>/   a fine-tune's checkpoints and result.json, when a
//!                                    location is set (else in the fine-tune's folder)
//! ```

use std::path::{Path, PathBuf};

use crate::config::JobConfig;

/// The places of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    run_dir: PathBuf,
    checkpoint: Option<String>,
    cache_dir: Option<PathBuf>,
}

impl JobConfig {
    /// The places of this config's run.
    pub fn locations(&self) -> Locations {
        Locations {
            run_dir: self.train.run_dir.clone(),
            checkpoint: self
                .checkpoint
                .location
                .as_ref()
                .map(|l| l.trim_end_matches('/').to_owned()),
            cache_dir: self.data.cache_dir.clone(),
        }
    }
}

impl Locations {
    /// The run folder (`train.run_dir`).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The resolved config the workers read: `<run_dir>/config.toml`.
    pub fn resolved_config(&self) -> PathBuf {
        self.run_dir.join("config.toml")
    }

    /// Pretraining's checkpoints: `checkpoint.location`, else `<run_dir>/checkpoints`.
    pub fn checkpoints(&self) -> String {
        self.checkpoint.clone().unwrap_or_else(|| {
            self.run_dir
                .join("checkpoints")
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Pretraining's sample log of `rank`: `<run_dir>/samples/rank<R>.jsonl`.
    pub fn sample_log(&self, rank: usize) -> PathBuf {
        self.run_dir
            .join("samples")
            .join(format!("rank{rank}.jsonl"))
    }

    /// Pretraining's shard cache of `rank`: `data.cache_dir`, else `<run_dir>/cache/rank<R>`.
    pub fn pretrain_cache(&self, rank: usize) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.run_dir.join("cache").join(format!("rank{rank}")))
    }

    /// The folder of fine-tune `job`: `<run_dir>/finetune/<job>`.
    pub fn finetune_dir(&self, job: &str) -> PathBuf {
        self.run_dir.join("finetune").join(job)
    }

    /// Where fine-tune `job` keeps what every node must see (its checkpoints and
    /// `result.json`): `<checkpoint location>/finetune/<job>` when a location is set, else its
    /// folder.
    pub fn finetune_state(&self, job: &str) -> String {
        match &self.checkpoint {
            Some(location) => format!("{location}/finetune/{job}"),
            None => self.finetune_dir(job).to_string_lossy().into_owned(),
        }
    }

    /// Where job `job` (`pretrain` or a fine-tune) keeps its restart rounds, which every node
    /// must see: `<checkpoint location>/restarts` for pretraining and
    /// `<fine-tune state>/restarts` for a fine-tune (so the run folder when no checkpoint
    /// location is set).
    pub fn restarts(&self, job: &str) -> String {
        if job == crate::PRETRAIN_JOB {
            match &self.checkpoint {
                Some(location) => format!("{location}/restarts"),
                None => self.run_dir.join("restarts").to_string_lossy().into_owned(),
            }
        } else {
            format!("{}/restarts", self.finetune_state(job))
        }
    }

    /// Fine-tune `job`'s checkpoints: `<state>/checkpoints`.
    pub fn finetune_checkpoints(&self, job: &str) -> String {
        format!("{}/checkpoints", self.finetune_state(job))
    }

    /// Fine-tune `job`'s cache of `split` on `rank`: `<job folder>/cache/<split>/rank<R>`.
    pub fn finetune_cache(&self, job: &str, split: &str, rank: usize) -> PathBuf {
        self.finetune_dir(job)
            .join("cache")
            .join(split)
            .join(format!("rank{rank}"))
    }

    /// The synthetic benchmark `[prepare]` writes: `<run_dir>/synth`.
    pub fn synth(&self) -> PathBuf {
        self.run_dir.join("synth")
    }

    /// The tokenizer `[prepare]` learns: `<run_dir>/tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.run_dir.join("tokenizer.json")
    }

    /// The knowledge `[prepare]` builds: `<run_dir>/knowledge`.
    pub fn knowledge(&self) -> PathBuf {
        self.run_dir.join("knowledge")
    }

    /// The knowledge build's own config, written by `[prepare]`: `<run_dir>/knowledge.toml`.
    pub fn knowledge_spec(&self) -> PathBuf {
        self.run_dir.join("knowledge.toml")
    }

    /// The folder and checkpoint location of ablation variant `name`: `<run_dir>/ablate/<name>`,
    /// and `<location>/ablate/<name>` when a location is set.
    pub fn ablation_variant(&self, name: &str) -> (PathBuf, Option<String>) {
        (
            self.run_dir.join("ablate").join(name),
            self.checkpoint
                .as_ref()
                .map(|location| format!("{location}/ablate/{name}")),
        )
    }
}

/// A job's event log, `<dir>/rank0.jsonl` (rank 0's events, appended across restarts).
pub fn events_log(job_dir: &Path) -> PathBuf {
    job_dir.join("rank0.jsonl")
}

/// A job's per-rank logs: `<dir>/logs/rank<R>.log`.
pub fn logs_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("logs")
}

/// A job's TensorBoard event files: `<dir>/tensorboard`.
pub fn tensorboard_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("tensorboard")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_tune_state_follows_the_checkpoint_location() {
        let mut config = JobConfig::default();
        config.train.run_dir = PathBuf::from("runs/x");
        let at = config.locations();
        assert_eq!(at.checkpoints(), "runs/x/checkpoints");
        assert_eq!(at.finetune_state("vqa"), "runs/x/finetune/vqa");
        assert_eq!(at.pretrain_cache(1), Path::new("runs/x/cache/rank1"));
        config.checkpoint.location = Some("s3://b/run/".to_owned());
        let at = config.locations();
        assert_eq!(at.checkpoints(), "s3://b/run");
        assert_eq!(
            at.finetune_checkpoints("vqa"),
            "s3://b/run/finetune/vqa/checkpoints"
        );
        assert_eq!(
            at.ablation_variant("3"),
            (
                PathBuf::from("runs/x/ablate/3"),
                Some("s3://b/run/ablate/3".to_owned())
            )
        );
    }
}
