//! The whole job config as types: one TOML file (or the embedded default, configs/demo.toml)
//! with `--set section.key=value` overrides, every default written once in its section's
//! `Default`, unknown keys rejected with their dotted path, and one validation pass
//! ([`crate::validate`]). The launcher writes the resolved config into the run folder; the
//! worker reads it back with the same types.

pub mod data;
pub mod finetune;
pub mod launch;
pub mod model;
pub mod model_init;
pub mod prepare;
pub mod train;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use data::{DataConfig, KnowledgeConfig};
use finetune::{FinetuneConfig, JobSection};
use launch::{DistConfig, LaunchConfig};
use model::ModelConfig;
use prepare::{PipelineConfig, PrepareConfig};
use train::{CheckpointConfig, OptimConfig, PretextConfig, TrainConfig};

/// The embedded default: a CPU debug run with two workers.
pub const DEFAULT_CONFIG: &str = include_str!("../../../../configs/demo.toml");

/// The name the embedded default goes by in messages.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded configs/demo.toml>";

/// The pretraining job's name in `pipeline.jobs`.
pub const PRETRAIN_JOB: &str = "pretrain";

/// A whole job: every section, each with its defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// `[launch]`: how ranks are started.
    pub launch: LaunchConfig,
    /// `[dist]`: the process group.
    pub dist: DistConfig,
    /// `[model]`: `preset = "tiny" | "base"` plus overrides.
    pub model: ModelConfig,
    /// `[prepare]`: inputs `arl run` makes itself (the embedded default's synthetic data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepare: Option<PrepareConfig>,
    /// `[data]`: the pretraining dataset and the tokenizer.
    pub data: DataConfig,
    /// `[knowledge]`: the knowledge folder.
    pub knowledge: KnowledgeConfig,
    /// `[train]`: the pretraining loop.
    pub train: TrainConfig,
    /// `[optim]`: pretraining's optimiser.
    pub optim: OptimConfig,
    /// `[checkpoint]`: when and where every job saves.
    pub checkpoint: CheckpointConfig,
    /// `[pretext]`: the pretraining objectives.
    pub pretext: PretextConfig,
    /// `[pipeline]`: the jobs `arl run` runs, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineConfig>,
    /// `[finetune.NAME]`: the fine-tune jobs.
    pub finetune: BTreeMap<String, JobSection>,
    /// The file the config was read from, for messages.
    #[serde(skip)]
    pub source: String,
}

impl JobConfig {
    /// Reads `path` (or the embedded default), applies `overrides`, and points the paths that
    /// `[prepare]` provides at the run folder; then [`JobConfig::validate`] checks it. Nothing
    /// is written.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key or a value of the wrong type: named with
    /// the file and the dotted key.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let (name, text) = match path {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?,
            ),
            None => (DEFAULT_CONFIG_NAME.to_owned(), DEFAULT_CONFIG.to_owned()),
        };
        Self::parse(&text, &name, overrides)
    }

    /// [`JobConfig::load`] of config text already in memory; `name` names it in messages.
    ///
    /// # Errors
    /// As [`JobConfig::load`], less the reading.
    pub fn parse(text: &str, name: &str, overrides: &[String]) -> anyhow::Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).with_context(|| format!("parsing config {name}"))?;
        for assignment in overrides {
            apply_override(&mut table, assignment)
                .with_context(|| format!("config {name}: --set {assignment}"))?;
        }
        let mut config = Self::from_table(table).with_context(|| format!("config {name}"))?;
        config.point_at_prepared();
        name.clone_into(&mut config.source);
        Ok(config)
    }

    /// A config file parsed with the types, as it is (no overrides, no validation): the
    /// resolved config a launcher wrote ([`JobConfig::resolved_toml`]), read by each rank.
    ///
    /// # Errors
    /// An unreadable file, or one that does not parse as a job config (named).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        let mut config =
            Self::from_table(table).with_context(|| format!("config {}", path.display()))?;
        config.source = path.display().to_string();
        Ok(config)
    }

    /// The config with every key, as TOML.
    ///
    /// # Errors
    /// A value TOML cannot hold (none of ours).
    pub fn resolved_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("writing the resolved config")
    }

    /// A config from a parsed TOML table; an unknown key or a wrong type names its dotted path.
    ///
    /// # Errors
    /// As said.
    pub fn from_table(table: toml::Table) -> anyhow::Result<Self> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." {
                anyhow::anyhow!("{inner}")
            } else {
                anyhow::anyhow!("{path}: {inner}")
            }
        })
    }

    /// The jobs `arl run` runs: `pipeline.jobs`, or pretraining alone without `[pipeline]`.
    pub fn jobs(&self) -> Vec<String> {
        self.pipeline
            .as_ref()
            .map_or_else(|| vec![PRETRAIN_JOB.to_owned()], |p| p.jobs.clone())
    }

    /// Fine-tune job `name`, resolved.
    ///
    /// # Errors
    /// No `[finetune.NAME]` section, or no data for it.
    pub fn finetune_job(&self, name: &str) -> anyhow::Result<FinetuneConfig> {
        match self.finetune.get(name) {
            Some(section) => section.resolve(name),
            None => bail!("the config has no [finetune.{name}] section"),
        }
    }

    /// The pretraining dataset (`data.train`).
    ///
    /// # Errors
    /// It is not set.
    pub fn dataset(&self) -> anyhow::Result<&str> {
        self.data
            .train
            .as_deref()
            .context("data.train is not set: pretraining needs a dataset")
    }

    /// The tokenizer (`data.tokenizer`).
    ///
    /// # Errors
    /// It is not set.
    pub fn tokenizer(&self) -> anyhow::Result<&Path> {
        self.data
            .tokenizer
            .as_deref()
            .context("data.tokenizer is not set")
    }

    /// The knowledge folder (`knowledge.dir`).
    ///
    /// # Errors
    /// It is not set.
    pub fn knowledge_dir(&self) -> anyhow::Result<&Path> {
        self.knowledge
            .dir
            .as_deref()
            .context("knowledge.dir is not set")
    }

    /// With `[prepare] synthetic = true`: the unset `[data]`, `[knowledge]` and fine-tune
    /// `data` paths point where the preparation writes (the fine-tunes at the dataset of their
    /// task).
    pub fn point_at_prepared(&mut self) {
        if !self.prepare.as_ref().is_some_and(|p| p.synthetic) {
            return;
        }
        let at = self.locations();
        let text = |path: &Path| path.to_string_lossy().into_owned();
        self.data
            .train
            .get_or_insert_with(|| text(&at.synth().join("pretrain").join("train")));
        self.data.tokenizer.get_or_insert_with(|| at.tokenizer());
        self.knowledge.dir.get_or_insert_with(|| at.knowledge());
        for job in self.finetune.values_mut() {
            job.data
                .get_or_insert_with(|| text(&at.synth().join(job.task.dataset())));
        }
    }
}

/// Sets `section.key=value`; the value is read as TOML (`3`, `true`, `"x"`), else as a string.
fn apply_override(table: &mut toml::Table, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .context("expected section.key=value")?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).context("empty key")?;
    let mut node = table;
    for part in parts {
        node = node
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{part} is not a section"))?;
    }
    node.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[&str]) -> anyhow::Result<JobConfig> {
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        let config = JobConfig::load(None, &sets)?;
        config.validate(&config.jobs())?;
        Ok(config)
    }

    fn error(sets: &[&str]) -> String {
        format!("{:#}", load(sets).unwrap_err())
    }

    #[test]
    fn the_embedded_default_is_valid_and_points_at_its_prepared_inputs() {
        let config = load(&[]).unwrap();
        assert_eq!(config.launch.nproc_per_node, 2);
        assert_eq!(config.jobs(), ["pretrain", "vqa", "cls", "irtr"]);
        assert_eq!(config.dataset().unwrap(), "runs/demo/synth/pretrain/train");
        assert_eq!(
            config.tokenizer().unwrap(),
            Path::new("runs/demo/tokenizer.json")
        );
        assert_eq!(
            config.finetune_job("cls").unwrap().data,
            "runs/demo/synth/cls"
        );
        // Unset keys take their defaults, written once.
        assert_eq!(config.data.cache_mb, 4096);
        assert_eq!(
            config.finetune_job("vqa").unwrap().optim.lr_multiplier_head,
            50.0
        );
    }

    #[test]
    fn overrides_parse_as_toml_values() {
        let config = load(&["launch.nproc_per_node=4", "dist.bucket_mb=0.5"]).unwrap();
        assert_eq!(config.launch.nproc_per_node, 4);
        assert_eq!(config.dist.bucket_mb, 0.5);
        let nccl = load(&["launch.backend=nccl"]).unwrap();
        assert_eq!(nccl.launch.backend, launch::Backend::Nccl);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_by_dotted_path() {
        assert!(error(&["launch.nprocs=2"]).contains("launch.nprocs"));
        assert!(error(&["launch.backend=mpi"]).contains("launch.backend"));
        assert!(error(&["finetune.vqa.epoch=3"]).contains("finetune.vqa.epoch"));
        assert!(error(&["model.fusion.cross=1"]).contains("model.fusion.cross"));
        assert!(error(&["dist.timeout_s=-1"]).contains("dist.timeout_s must be a positive"));
        assert!(error(&["dist.init_timeout_s=nan"]).contains("dist.init_timeout_s"));
        assert!(error(&["finetune.cls.max_text_len=65"]).contains("between 8 and 64"));
        assert!(
            error(&["train.global_batch=6", "train.grad_accum=2"]).contains("train.global_batch")
        );
        assert!(error(&["train.peak_tflops=0"]).contains("train.peak_tflops must be a positive"));
        assert_eq!(
            load(&["train.peak_tflops=989.5"])
                .unwrap()
                .train
                .peak_tflops,
            Some(989.5)
        );
        assert_eq!(load(&[]).unwrap().train.peak_tflops, None);
    }

    #[test]
    fn pipeline_jobs_must_name_sections_in_order() {
        assert!(
            error(&["pipeline.jobs=[\"pretrain\", \"vqa-rad\"]"]).contains("[finetune.vqa-rad]")
        );
        assert!(error(&["pipeline.jobs=[\"vqa\", \"pretrain\"]"]).contains("must come first"));
        assert!(error(&["pipeline.jobs=[\"vqa\", \"vqa\"]"]).contains("twice"));
        assert_eq!(load(&["pipeline.jobs=[\"cls\"]"]).unwrap().jobs(), ["cls"]);
        let bad_name = error(&["finetune.x/y.task=\"cls\""]);
        assert!(bad_name.contains("folder name"), "{bad_name}");
    }

    #[test]
    fn inputs_are_required_only_without_preparation() {
        let unprepared = error(&["prepare.synthetic=false"]);
        assert!(unprepared.contains("data.train is not set"), "{unprepared}");
        let config = load(&[
            "prepare.synthetic=false",
            "data.train=\"s3://b/t\"",
            "data.tokenizer=\"t.json\"",
            "knowledge.dir=\"k\"",
            "pipeline.jobs=[\"pretrain\"]",
        ]);
        // The fine-tune sections still need their data, even outside the pipeline.
        assert!(format!("{:#}", config.unwrap_err()).contains("finetune.cls.data is not set"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = format!(
            "{:#}",
            JobConfig::load(Some(Path::new("/nonexistent/x.toml")), &[]).unwrap_err()
        );
        assert!(error.contains("/nonexistent/x.toml"), "{error}");
    }
}
