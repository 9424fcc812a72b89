//! `[prepare] synthetic = true` (the embedded default): before pretraining, `arl run` makes its
//! own inputs in the run folder, each skipped when already there: the synthetic benchmark
//! (`synth/`), a tokenizer learned from its reports (`tokenizer.json`) and the HPO knowledge
//! linked over them (`knowledge/`, TransE at the model's entity width). The `[data]` and
//! `[knowledge]` paths that are not set point at them, and so does the `data` of every
//! `[finetune.NAME]` job that has none (`synth/<task>`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::paths;
use crate::pretrain::run_dir;

/// `[prepare]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The synthetic benchmark's fine-tuning datasets, named as the tasks.
const TASKS: [&str; 3] = ["vqa", "cls", "irtr"];

fn worker(args: &[&str], what: &str) -> anyhow::Result<()> {
    eprintln!("arl run: {what}");
    let out = Command::new(paths::worker_binary()?).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Makes what is missing and points the config's unset paths at it.
///
/// # Errors
/// A step that fails (named), or a folder that cannot be written.
pub fn prepare(config: &mut Config, prepare: &PrepareConfig) -> anyhow::Result<()> {
    let dir = run_dir(config);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let synth = dir.join("synth");
    if !synth.join("synth.json").exists() {
        let ontology = paths::project_file("data/hpo/hp.obo")?;
        worker(
            &[
                "synth",
                "--output",
                &text(&synth),
                "--size",
                &prepare.scenes.to_string(),
                "--image-size",
                &prepare.image_size.to_string(),
                "--ontology",
                &text(&ontology),
            ],
            &format!(
                "writing the synthetic benchmark ({} scenes)",
                prepare.scenes
            ),
        )?;
    }
    let corpus = synth.join("corpus.txt");
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.exists() {
        worker(
            &[
                "train-tokenizer",
                "--corpus",
                &text(&corpus),
                "--vocab-size",
                &prepare.vocab_size.to_string(),
                "--output",
                &text(&tokenizer),
            ],
            "learning a tokenizer from the reports",
        )?;
    }
    let knowledge = dir.join("knowledge");
    if !knowledge.join("knowledge.json").exists() {
        let spec = dir.join("knowledge.toml");
        let mut section = toml::Table::new();
        let ontology = paths::project_file("data/hpo/hp.obo")?;
        section.insert("ontology".into(), text(&ontology).into());
        section.insert("corpus".into(), vec![text(&corpus)].into());
        section.insert("min_count".into(), 2.into());
        section.insert("expand_hops".into(), 2.into());
        section.insert("holdout".into(), 0.0.into());
        section.insert("output".into(), text(&knowledge).into());
        let mut transe = toml::Table::new();
        transe.insert("epochs".into(), (prepare.transe_epochs as i64).into());
        transe.insert("dim".into(), (prepare.entity_dim as i64).into());
        section.insert("transe".into(), transe.into());
        let mut file = toml::Table::new();
        file.insert("knowledge".into(), section.into());
        std::fs::write(&spec, toml::to_string(&file)?)
            .with_context(|| format!("writing {}", spec.display()))?;
        worker(
            &["knowledge-build", "--config", &text(&spec)],
            "linking the reports to HPO and training TransE",
        )?;
    }
    let pretrain = synth.join("pretrain").join("train");
    config
        .data
        .entry("train")
        .or_insert_with(|| text(&pretrain).into());
    config
        .data
        .entry("tokenizer")
        .or_insert_with(|| text(&tokenizer).into());
    config
        .knowledge
        .entry("dir")
        .or_insert_with(|| text(&knowledge).into());
    // Fine-tunes without data use the benchmark's dataset of their task.
    for (name, job) in &mut config.finetune {
        let job = job
            .as_table_mut()
            .with_context(|| format!("[finetune.{name}] is not a table"))?;
        if let Some(task) = job.get("task").and_then(|t| t.as_str()).map(str::to_owned)
            && TASKS.contains(&task.as_str())
        {
            job.entry("data")
                .or_insert_with(|| text(&synth.join(task)).into());
        }
    }
    Ok(())
}
