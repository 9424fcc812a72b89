//! What a rank reports to the launcher: one [`Event`] per line on rank 0's standard output, as
//! JSON tagged by `event` (`{"event":"step","step":3,...}`). The launcher's progress display,
//! its results and ablation tables, and the job's `rank0.jsonl` all read this one stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::finetune::Task;
use crate::metrics::Metric;

/// One report of rank 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every rank joined and an all-reduce of the ranks added up.
    Preflight {
        /// Ranks that joined.
        world_size: usize,
        /// The all-reduced sum of the ranks (`world_size × (world_size − 1) / 2`).
        rank_sum: i64,
    },
    /// A job starts training at `start` and runs to `end`.
    Start {
        /// `pretrain`, or the fine-tune's name.
        job: String,
        /// Steps already done (a resume).
        start: u64,
        /// The last step this run will do.
        end: u64,
        /// Restarts of the world so far in this launch (`ARL_RESTART_COUNT`).
        #[serde(default)]
        restart: u32,
    },
    /// The model was set from the pretrained weights of `[model.init]` (a start, never a
    /// resume).
    Initialised {
        /// The files, in loading order.
        files: Vec<InitFile>,
    },
    /// The job resumed from a committed checkpoint.
    Resumed {
        /// Its step.
        step: u64,
        /// Its location.
        from: String,
    },
    /// One optimiser step.
    Step(StepReport),
    /// A step whose update was skipped: some rank's gradients were not finite.
    Skipped {
        /// The step.
        step: u64,
        /// The ranks with non-finite gradients.
        ranks: Vec<usize>,
    },
    /// A checkpoint's tensors were copied off the training thread.
    CheckpointStaged {
        /// Its step.
        step: u64,
        /// Milliseconds the training thread spent copying.
        stall_ms: f64,
        /// Milliseconds it waited for the previous save.
        waited_ms: f64,
    },
    /// A checkpoint was committed.
    CheckpointCommitted {
        /// Its step.
        step: u64,
        /// Bytes written.
        bytes: u64,
        /// Seconds from staging to commit.
        write_s: f64,
        /// Steps whose checkpoints retention deleted afterwards.
        deleted: Vec<u64>,
    },
    /// A stop signal ended the job at a step boundary, with a checkpoint.
    Stopped {
        /// The last step done.
        step: u64,
        /// The signal's name.
        signal: String,
    },
    /// A fine-tune's validation after an epoch.
    Validation {
        /// The epoch (from 1).
        epoch: u64,
        /// The step that ends it.
        step: u64,
        /// The metric.
        metric: Metric,
        /// Whether it is the best epoch so far.
        best: bool,
    },
    /// Retrieval of the pretrained model before fine-tuning.
    ZeroShot {
        /// The metric on the test split.
        metric: Metric,
    },
    /// A fine-tune's result on its test split (also its `result.json`).
    Result(Box<JobResult>),
}

impl Event {
    /// The event of one JSON line.
    ///
    /// # Errors
    /// A line that is not JSON, or not an event this version knows (the line is named).
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        serde_json::from_str(line)
            .map_err(|error| anyhow::anyhow!("not an event ({error}): {line}"))
    }

    /// The JSON line.
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("an event serialises")
    }
}

/// The numbers of one optimiser step (rank means where a value is per rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps done.
    pub step: u64,
    /// The total loss.
    pub loss: f64,
    /// Its parts by objective (pretraining: `mlm`, `mim`, `itm`, `align`).
    pub losses: BTreeMap<String, f64>,
    /// Accuracies by objective (pretraining: `mlm`, `itm`).
    pub accuracy: BTreeMap<String, f64>,
    /// Learning rate of each parameter group.
    pub lr: BTreeMap<String, f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Samples per second over all ranks.
    pub samples_per_s: f64,
    /// Fraction of the step spent waiting for data.
    pub data_wait: f64,
    /// Fraction of the step spent after backward waiting for the gradient reductions that
    /// backward did not hide (rank 0's; 0 in logs written before it was measured).
    #[serde(default)]
    pub comm_exposed: f64,
    /// Achieved model TFLOP/s over all ranks: `samples_per_s` × the model's training FLOPs
    /// per sample (3 × forward, `arl_worker::model::flops`) / 10¹². Pretraining only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    /// Model FLOPs utilisation: `tflops` / (ranks × one device's peak TFLOP/s, from
    /// `train.peak_tflops` or the GPU's datasheet); absent where no peak is known (the CPU
    /// without `train.peak_tflops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
}

impl StepReport {
    /// The TensorBoard scalars: `loss/total` and `loss/<part>` (or `loss` alone without
    /// parts), `accuracy/*`, `lr/*`, `grad_norm`, `throughput/*` (`throughput/tflops` and
    /// `throughput/mfu` where known).
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut scalars = if self.losses.is_empty() {
            vec![("loss".to_owned(), self.loss)]
        } else {
            let mut parts = vec![("loss/total".to_owned(), self.loss)];
            parts.extend(self.losses.iter().map(|(k, v)| (format!("loss/{k}"), *v)));
            parts
        };
        scalars.extend(
            self.accuracy
                .iter()
                .map(|(k, v)| (format!("accuracy/{k}"), *v)),
        );
        scalars.extend(self.lr.iter().map(|(k, v)| (format!("lr/{k}"), *v)));
        scalars.push(("grad_norm".to_owned(), self.grad_norm));
        scalars.push(("throughput/samples_per_s".to_owned(), self.samples_per_s));
        scalars.push(("throughput/data_wait_fraction".to_owned(), self.data_wait));
        scalars.push((
            "throughput/comm_exposed_fraction".to_owned(),
            self.comm_exposed,
        ));
        if let Some(tflops) = self.tflops {
            scalars.push(("throughput/tflops".to_owned(), tflops));
        }
        if let Some(mfu) = self.mfu {
            scalars.push(("throughput/mfu".to_owned(), mfu));
        }
        scalars
    }
}

/// One file of `[model.init]` that a model was set from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitFile {
    /// Its key: `whole`, `vision` or `text`.
    pub key: String,
    /// Its path.
    pub path: String,
    /// The layout its keys were read as (`Hugging Face CLIPVisionModel`, `METER`, …).
    pub format: String,
    /// Tensors in it.
    pub tensors: usize,
    /// Its sha256, as the launcher recorded it.
    pub sha256: String,
}

/// What a fine-tune started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitialWeights {
    /// The pipeline's pretrained weights.
    Pretrained {
        /// The pretraining checkpoint location.
        pretrained: String,
        /// The checkpoint's step.
        step: u64,
        /// The hash of its model tensors.
        weights: String,
        /// The sha256 of the `[model.init]` files that pretraining started from, by key.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        model_init: BTreeMap<String, String>,
    },
    /// Pretraining's initialisation, untrained (`"scratch"`).
    Scratch(Scratch),
}

/// The `"scratch"` marker of [`InitialWeights::Scratch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scratch {
    /// From scratch.
    Scratch,
}

impl InitialWeights {
    /// The `[model.init]` hashes the weights descend from: pretraining's, or `own` (the job's
    /// own config) from scratch.
    pub fn model_init(&self, own: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            Self::Pretrained { model_init, .. } => model_init.clone(),
            Self::Scratch(_) => own.clone(),
        }
    }

    /// The hash of the pretrained weights, if the job started from them.
    pub fn weights(&self) -> Option<&str> {
        match self {
            Self::Pretrained { weights, .. } => Some(weights),
            Self::Scratch(_) => None,
        }
    }
}

/// Which weights a fine-tune's test split measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// `best validation epoch` or `final weights`.
    pub rule: String,
    /// The step of the weights.
    pub step: u64,
    /// The best epoch (best-epoch selection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Its validation metric (best-epoch selection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<Metric>,
}

/// The manifest hashes of a fine-tune's splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataHashes {
    /// The training split.
    pub train: String,
    /// The validation split.
    pub val: String,
    /// The test split.
    pub test: String,
}

/// A finished fine-tune: its test metric and what it depends on (`result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's name.
    pub job: String,
    /// Its `[finetune.NAME]` section as written, paths in the run folder relative to it.
    pub section: serde_json::Value,
    /// The task.
    pub task: Task,
    /// The metric on the test split.
    pub test: Metric,
    /// The split reported as test.
    pub test_split: String,
    /// The split that selected the best epoch.
    pub val_split: String,
    /// Retrieval: the pretrained model's metric before fine-tuning.
    pub zero_shot: Option<Metric>,
    /// The image side of the zero-shot evaluation (pretraining's).
    pub zero_shot_image_size: Option<i64>,
    /// The image side of fine-tuning and the test evaluation.
    pub image_size: u32,
    /// The weights measured.
    pub selected: Selected,
    /// The hash of their model tensors.
    pub weights: String,
    /// What the job started from.
    pub init: InitialWeights,
    /// The sha256 of the `[model.init]` files its weights descend from, by key: pretraining's,
    /// or this job's own when it starts from scratch (empty: a random start).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_init: BTreeMap<String, String>,
    /// The hash of the job's resolved settings.
    pub config_hash: String,
    /// The splits' manifest hashes.
    pub data: DataHashes,
    /// Tensors' elements in the fine-tuned model.
    pub parameters: u64,
    /// Epochs trained.
    pub epochs: u64,
    /// Steps trained.
    pub steps: u64,
    /// Ranks that trained it.
    pub world_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json_lines() {
        let step = Event::Step(StepReport {
            step: 3,
            loss: 1.5,
            losses: BTreeMap::from([("mlm".to_owned(), 1.0)]),
            accuracy: BTreeMap::new(),
            lr: BTreeMap::from([("base".to_owned(), 1e-4)]),
            grad_norm: 2.0,
            samples_per_s: 10.0,
            data_wait: 0.1,
            comm_exposed: 0.05,
            tflops: Some(0.5),
            mfu: None,
        });
        let line = step.line();
        assert!(
            line.starts_with(r#"{"event":"step","step":3,"loss":1.5"#),
            "{line}"
        );
        assert_eq!(Event::parse(&line).unwrap(), step);
        assert!(
            line.contains(r#""tflops":0.5"#) && !line.contains("mfu"),
            "{line}"
        );
        // A log written before the throughput fields still reads.
        let old = line.replace(r#","tflops":0.5"#, "");
        let Event::Step(old) = Event::parse(&old).unwrap() else {
            panic!("{old}");
        };
        assert_eq!((old.tflops, old.mfu), (None, None));
        let stopped = Event::parse(r#"{"event":"stopped","step":7,"signal":"SIGTERM"}"#).unwrap();
        assert_eq!(
            stopped,
            Event::Stopped {
                step: 7,
                signal: "SIGTERM".to_owned()
            }
        );
    }

    #[test]
    fn malformed_and_unknown_events_are_errors_naming_the_line() {
        for line in [
            "not json",
            r#"{"event":"teleported","step":1}"#,
            r#"{"event":"stopped","step":"seven","signal":"SIGTERM"}"#,
            r#"{"step":1,"loss":2.0}"#,
        ] {
            let error = Event::parse(line).unwrap_err().to_string();
            assert!(error.contains(line), "{error}");
        }
    }
}
