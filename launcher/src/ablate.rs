//! `arl ablate CONFIG`: the paper's Table 4 on the config's fine-tunes: the pipeline run again
//! for each combination of AK (`[pretext] align`), RK (`[model.fusion] knowledge`) and LK
//! (`[pretext] entity_masking`), and once from scratch (no pretraining), each in
//! `<run_dir>/ablate/<variant>/`, then one table, `<run_dir>/ablation.md` and `ablation.json`.
//! Inputs are prepared once and shared; complete variants are skipped on a rerun.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::{Config, PRETRAIN_JOB};
use crate::pretrain::run_dir;
use crate::run::{Outcome, prepared, run_jobs};

/// One row of the ablation: its name and (AK, RK, LK), or `None` for from scratch.
pub const VARIANTS: [(&str, Option<[bool; 3]>); 9] = [
    ("scratch", None),
    ("1", Some([false, false, false])),
    ("2", Some([true, false, false])),
    ("3", Some([false, true, false])),
    ("4", Some([false, false, true])),
    ("5", Some([true, true, false])),
    ("6", Some([true, false, true])),
    ("7", Some([false, true, true])),
    ("8", Some([true, true, true])),
];

fn section<'a>(table: &'a mut toml::Table, key: &str) -> anyhow::Result<&'a mut toml::Table> {
    table
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .with_context(|| format!("{key} is not a table"))
}

/// The prepared `base` config for one variant.
///
/// # Errors
/// A config whose sections are not tables.
pub fn variant(base: &Config, name: &str, switches: Option<[bool; 3]>) -> anyhow::Result<Config> {
    let mut config = base.clone();
    config.prepare = None;
    // Each variant keeps its state beside its run folder: under the base's checkpoint
    // location when there is one (the nodes of a multi-node ablation share it), else in it.
    if let Some(location) = base.checkpoint.get("location").and_then(|v| v.as_str()) {
        let own = format!("{}/ablate/{name}", location.trim_end_matches('/'));
        config.checkpoint.insert("location".into(), own.into());
    }
    let dir = run_dir(base).join("ablate").join(name);
    config
        .train
        .insert("run_dir".into(), dir.to_string_lossy().into_owned().into());
    match switches {
        Some([ak, rk, lk]) => {
            config.pretext.insert("align".into(), ak.into());
            config.pretext.insert("entity_masking".into(), lk.into());
            section(&mut config.model, "fusion")?.insert("knowledge".into(), rk.into());
        }
        None => {
            let jobs: Vec<String> = config
                .jobs()
                .into_iter()
                .filter(|j| j != PRETRAIN_JOB)
                .collect();
            for job in &jobs {
                section(&mut config.finetune, job)?.insert("init".into(), "scratch".into());
            }
            config.pipeline = Some(crate::config::PipelineConfig { jobs });
        }
    }
    Ok(config)
}

fn cell(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// The headline numbers of one fine-tune result, with their column names.
fn numbers(job: &str, result: &Value) -> Vec<(String, String)> {
    let test = &result["test"];
    if let Some(vqa) = test.get("vqa") {
        ["open", "closed", "overall"]
            .iter()
            .map(|k| (format!("{job} {k}"), cell(&vqa[*k])))
            .collect()
    } else if let Some(cls) = test.get("cls") {
        vec![(format!("{job} accuracy"), cell(&cls["accuracy"]))]
    } else {
        let recall = &test["irtr"];
        vec![
            (format!("{job} T2I R@1"), cell(&recall["t2i"][0])),
            (format!("{job} I2T R@1"), cell(&recall["i2t"][0])),
        ]
    }
}

/// One variant's row: its name, (AK, RK, LK) (`None`: from scratch) and its fine-tunes'
/// results by job.
pub type Row = (String, Option<[bool; 3]>, Vec<(String, Value)>);

/// The ablation table of `rows`.
pub fn markdown(rows: &[Row]) -> String {
    let columns: Vec<String> = rows
        .first()
        .map(|(_, _, results)| {
            results
                .iter()
                .flat_map(|(job, r)| numbers(job, r).into_iter().map(|(c, _)| c))
                .collect()
        })
        .unwrap_or_default();
    let mut md = String::from(
        "# Ablation (the paper's Table 4)\n\nAK: align through knowledge, RK: reason with \
         knowledge (the fusion module's knowledge sublayers), LK: learn from knowledge \
         (whole-entity masking). Test-split percentages; `parameters` counts every tensor of \
         the fine-tuned model.\n\n",
    );
    let _ = writeln!(
        md,
        "| ID | AK | RK | LK | parameters | {} |",
        columns.join(" | ")
    );
    let _ = writeln!(md, "|{}", "---|".repeat(5 + columns.len()));
    for (name, switches, results) in rows {
        let mark = |on: bool| if on { "✓" } else { "" };
        let [ak, rk, lk] = switches.map_or(["–"; 3], |s| s.map(mark));
        let parameters = results
            .first()
            .and_then(|(_, r)| r["parameters"].as_u64())
            .map_or_else(|| "–".to_owned(), |p| p.to_string());
        let values: Vec<String> = results
            .iter()
            .flat_map(|(job, r)| numbers(job, r).into_iter().map(|(_, v)| v))
            .collect();
        let id = if switches.is_some() {
            name.clone()
        } else {
            "from scratch".to_owned()
        };
        let _ = writeln!(
            md,
            "| {id} | {ak} | {rk} | {lk} | {parameters} | {} |",
            values.join(" | ")
        );
    }
    md
}

/// Runs every variant (skipping what is complete) and writes the table; returns it.
///
/// # Errors
/// A config without fine-tunes, a job that fails (named), or a variant stopped by a signal.
pub fn ablate(config: &Config) -> anyhow::Result<String> {
    let jobs = config.jobs();
    if jobs.first().map(String::as_str) != Some(PRETRAIN_JOB) || jobs.len() < 2 {
        bail!("pipeline.jobs must be \"pretrain\" followed by fine-tunes to compare ({jobs:?})");
    }
    let base = prepared(config)?;
    let mut rows = Vec::new();
    for (name, switches) in VARIANTS {
        eprintln!("arl ablate: variant {name}");
        let (outcome, results) = run_jobs(&variant(&base, name, switches)?)?;
        if let Outcome::Stopped { job, .. } = outcome {
            bail!("variant {name} was stopped in job {job}; run the same command to resume");
        }
        rows.push((name.to_owned(), switches, results));
    }
    let md = markdown(&rows);
    let dir = run_dir(&base);
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|(name, switches, results)| {
            json!({"variant": name, "ak_rk_lk": switches,
                "jobs": results.iter().cloned().collect::<serde_json::Map<_, _>>()})
        })
        .collect();
    for (file, bytes) in [
        ("ablation.json", serde_json::to_vec_pretty(&json_rows)?),
        ("ablation.md", md.clone().into_bytes()),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("arl ablate: table in {}", dir.join("ablation.md").display());
    Ok(md)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn base(location: Option<&str>) -> Config {
        let mut overrides = vec!["train.run_dir=\"runs/a\"".to_owned()];
        if let Some(location) = location {
            overrides.push(format!("checkpoint.location={location:?}"));
        }
        Config::load(None, &overrides).expect("the embedded default")
    }

    fn location(config: &Config) -> Option<&str> {
        config.checkpoint.get("location").and_then(|v| v.as_str())
    }

    #[test]
    fn variants_keep_their_state_apart() {
        let shared = base(Some("s3://bucket/run/"));
        let (one, scratch) = (
            variant(&shared, "1", Some([false, false, false])).unwrap(),
            variant(&shared, "scratch", None).unwrap(),
        );
        assert_eq!(location(&one), Some("s3://bucket/run/ablate/1"));
        assert_eq!(location(&scratch), Some("s3://bucket/run/ablate/scratch"));
        assert_eq!(run_dir(&one), Path::new("runs/a/ablate/1"));
        // Without a location, each variant's run folder holds its checkpoints.
        assert_eq!(location(&variant(&base(None), "1", None).unwrap()), None);
    }
}
