//! `[prepare] synthetic = true` (the embedded default): before pretraining, `arl run` makes its
//! own inputs in the run folder, each skipped when already there: the synthetic benchmark
//! (`synth/`), a tokenizer learned from its reports (`tokenizer.json`) and the HPO knowledge
//! linked over them (`knowledge/`, TransE at the model's entity width). The config's unset
//! paths already point at them (`JobConfig::point_at_prepared`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use arl_contract::JobConfig;

use crate::paths;
use crate::spawn::worker_binary;

fn worker(args: &[&str], what: &str) -> anyhow::Result<()> {
    eprintln!("arl run: {what}");
    let out = Command::new(worker_binary()?).args(args).output()?;
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

/// Makes what is missing of `config`'s `[prepare]` inputs.
///
/// # Errors
/// A step that fails (named), or a folder that cannot be written.
pub fn prepare(config: &JobConfig) -> anyhow::Result<()> {
    let prepare = config.prepare.clone().unwrap_or_default();
    let at = config.locations();
    let dir = at.run_dir();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let synth = at.synth();
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
    let tokenizer = at.tokenizer();
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
    let knowledge = at.knowledge();
    if !knowledge.join("knowledge.json").exists() {
        let spec = at.knowledge_spec();
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
    Ok(())
}
