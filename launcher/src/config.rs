//! The job config: one TOML file (or the embedded default, configs/demo.toml), with
//! `--set section.key=value` overrides. Unknown keys and bad values fail before anything
//! starts, naming the key.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The embedded default: a CPU debug run with two workers.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/demo.toml");

/// A whole job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How ranks are started.
    pub launch: LaunchConfig,
    /// The process group.
    pub dist: DistConfig,
    /// `[model]`: `preset = "tiny" | "base"` plus overrides; read and checked by the worker
    /// (`arl model summary --config FILE` shows the result).
    #[serde(default)]
    pub model: toml::Table,
    /// `[prepare]`: inputs `arl run` makes itself (the embedded default's synthetic data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<crate::prepare::PrepareConfig>,
    /// `[data]`, `[knowledge]`, `[train]`, `[optim]`, `[checkpoint]`, `[pretext]`: the
    /// pretraining sections, checked by the worker (`arl-worker check-pretrain`) before any rank starts.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub data: toml::Table,
    /// See `data`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub knowledge: toml::Table,
    /// See `data`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub train: toml::Table,
    /// See `data`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub optim: toml::Table,
    /// See `data`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub checkpoint: toml::Table,
    /// See `data`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub pretext: toml::Table,
    /// `[pipeline]`: the jobs `arl run` runs, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineConfig>,
    /// `[finetune.NAME]`: the fine-tune jobs, checked by the worker (`arl-worker
    /// check-finetune`) before they start.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub finetune: toml::Table,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `"pretrain"` (first, if at all), then names of `[finetune.NAME]` jobs.
    pub jobs: Vec<String>,
}

/// The pretraining job's name in `pipeline.jobs`.
pub const PRETRAIN_JOB: &str = "pretrain";

impl Config {
    /// The jobs `arl run` runs: `pipeline.jobs`, or pretraining alone without `[pipeline]`.
    pub fn jobs(&self) -> Vec<String> {
        self.pipeline
            .as_ref()
            .map_or_else(|| vec![PRETRAIN_JOB.to_owned()], |p| p.jobs.clone())
    }
}

/// `[launch]`: processes and rendezvous.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Worker processes on each node (one per GPU, or CPU slots in debug mode); 0 = one per
    /// GPU of the node.
    pub nproc_per_node: usize,
    /// Nodes in the job (each runs one `arl` with the same config).
    #[serde(default = "one")]
    pub nnodes: usize,
    /// This node's index; node 0 hosts rank 0 and the rendezvous.
    #[serde(default)]
    pub node_rank: usize,
    /// Inside a SLURM allocation, take nodes, node index, rendezvous host and port from it.
    #[serde(default = "yes")]
    pub slurm: bool,
    /// `gloo` (CPU) or `nccl` (GPU).
    pub backend: String,
    /// Rendezvous host; rank 0 serves the store there.
    pub master_addr: String,
    /// Rendezvous port; 0 picks a free one.
    pub master_port: u16,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// `[dist]`: collectives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    /// Seconds to wait for the store and for every rank to join.
    pub init_timeout_s: f64,
    /// Seconds one collective may wait for a peer.
    pub timeout_s: f64,
    /// All-reduce bucket size in MiB.
    pub bucket_mb: f64,
    /// Compare dtypes and shapes across ranks before each collective (one 16-byte
    /// all-reduce per call); ranks that disagree otherwise make Gloo abort.
    pub verify_layout: bool,
}

impl Config {
    /// Reads `path` (or the embedded default), applies `overrides`, and validates.
    ///
    /// # Errors
    /// An unreadable file, bad TOML, an unknown key, or a bad value: named with the file.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let (name, text) = match path {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?,
            ),
            None => (
                "<embedded configs/demo.toml>".to_owned(),
                DEFAULT_CONFIG.to_owned(),
            ),
        };
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing config {name}"))?;
        for assignment in overrides {
            apply_override(&mut table, assignment)
                .with_context(|| format!("--set {assignment}"))?;
        }
        let config: Self = table.try_into().with_context(|| format!("config {name}"))?;
        config
            .validate()
            .with_context(|| format!("config {name}"))?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.launch.backend.as_str(), "gloo" | "nccl") {
            bail!(
                "launch.backend must be \"gloo\" or \"nccl\", not {:?}",
                self.launch.backend
            );
        }
        for (key, value) in [
            ("dist.init_timeout_s", self.dist.init_timeout_s),
            ("dist.timeout_s", self.dist.timeout_s),
            ("dist.bucket_mb", self.dist.bucket_mb),
        ] {
            if !(value.is_finite() && value > 0.0) {
                bail!("{key} must be a positive number, not {value}");
            }
        }
        let jobs = self.jobs();
        for (index, job) in jobs.iter().enumerate() {
            if jobs[..index].contains(job) {
                bail!("pipeline.jobs lists {job:?} twice");
            }
            if job == PRETRAIN_JOB {
                if index > 0 {
                    bail!("pipeline.jobs: \"pretrain\" must come first");
                }
            } else if !self.finetune.contains_key(job) {
                bail!(
                    "pipeline.jobs: {job:?} is neither \"pretrain\" nor a [finetune.{job}] section"
                );
            }
        }
        Ok(())
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

    #[test]
    fn the_embedded_default_is_valid() {
        let config = Config::load(None, &[]).unwrap();
        assert_eq!(config.launch.nproc_per_node, 2);
        assert_eq!(config.launch.backend, "gloo");
    }

    #[test]
    fn overrides_parse_as_toml_values() {
        let sets = [
            "launch.nproc_per_node=3".to_owned(),
            "dist.bucket_mb=0.5".to_owned(),
        ];
        let config = Config::load(None, &sets).unwrap();
        assert_eq!(config.launch.nproc_per_node, 3);
        assert_eq!(config.dist.bucket_mb, 0.5);
        let backend = Config::load(None, &["launch.backend=nccl".to_owned()]).unwrap();
        assert_eq!(backend.launch.backend, "nccl");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let error = format!(
            "{:#}",
            Config::load(None, &["launch.nprocs=2".to_owned()]).unwrap_err()
        );
        assert!(error.contains("nprocs"), "{error}");
        let error = format!(
            "{:#}",
            Config::load(None, &["dist.timeout_s=-1".to_owned()]).unwrap_err()
        );
        assert!(
            error.contains("dist.timeout_s must be a positive number"),
            "{error}"
        );
        let error = format!(
            "{:#}",
            Config::load(None, &["launch.backend=mpi".to_owned()]).unwrap_err()
        );
        assert!(error.contains("launch.backend"), "{error}");
    }

    #[test]
    fn pipeline_jobs_must_name_sections() {
        let config = Config::load(None, &[]).unwrap();
        assert_eq!(config.jobs(), ["pretrain", "vqa", "cls", "irtr"]);
        let error = format!(
            "{:#}",
            Config::load(
                None,
                &["pipeline.jobs=[\"pretrain\", \"vqa-rad\"]".to_owned()]
            )
            .unwrap_err()
        );
        assert!(error.contains("[finetune.vqa-rad]"), "{error}");
        let error = format!(
            "{:#}",
            Config::load(None, &["pipeline.jobs=[\"vqa\", \"pretrain\"]".to_owned()]).unwrap_err()
        );
        assert!(error.contains("must come first"), "{error}");
        let only = Config::load(None, &["pipeline.jobs=[\"cls\"]".to_owned()]).unwrap();
        assert_eq!(only.jobs(), ["cls"]);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = format!(
            "{:#}",
            Config::load(Some(Path::new("/nonexistent/x.toml")), &[]).unwrap_err()
        );
        assert!(error.contains("/nonexistent/x.toml"), "{error}");
    }
}
