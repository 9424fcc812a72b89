//! `arl ablate CONFIG`: the paper's Table 4 on the config's fine-tunes: the pipeline run again
//! for each combination of AK (`[pretext] align`), RK (`[model.fusion] knowledge`) and LK
//! (`[pretext] entity_masking`), and once from scratch (no pretraining), each in
//! `<run_dir>/ablate/<variant>/`, then one table, `<run_dir>/ablation.md` and `ablation.json`.
//! Inputs are prepared once and shared; complete variants are skipped on a rerun.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};
use arl_contract::config::finetune::Init;
use arl_contract::config::prepare::PipelineConfig;
use arl_contract::events::JobResult;
use arl_contract::metrics::Metric;
use arl_contract::{JobConfig, PRETRAIN_JOB};
use serde::Serialize;

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

/// The prepared `base` config for one variant.
pub fn variant(base: &JobConfig, name: &str, switches: Option<[bool; 3]>) -> JobConfig {
    let mut config = base.clone();
    config.prepare = None;
    // Each variant keeps its state beside its run folder: under the base's checkpoint
    // location when there is one (the nodes of a multi-node ablation share it), else in it.
    let (dir, location) = base.locations().ablation_variant(name);
    config.train.run_dir = dir;
    config.checkpoint.location = location;
    match switches {
        Some([ak, rk, lk]) => {
            config.pretext.align = ak;
            config.pretext.entity_masking = lk;
            config.model.fusion.knowledge = rk;
        }
        None => {
            let jobs: Vec<String> = config
                .jobs()
                .into_iter()
                .filter(|j| j != PRETRAIN_JOB)
                .collect();
            for job in &jobs {
                if let Some(section) = config.finetune.get_mut(job) {
                    section.init = Some(Init::Scratch);
                }
            }
            config.pipeline = Some(PipelineConfig { jobs });
        }
    }
    config
}

fn cell(value: f64) -> String {
    format!("{value:.2}")
}

/// The headline numbers of one fine-tune result, with their column names.
fn numbers(job: &str, result: &JobResult) -> Vec<(String, String)> {
    match &result.test {
        Metric::Vqa(vqa) => [
            ("open", vqa.open),
            ("closed", vqa.closed),
            ("overall", Some(vqa.overall)),
        ]
        .iter()
        .map(|(k, v)| (format!("{job} {k}"), v.map_or_else(|| "–".to_owned(), cell)))
        .collect(),
        Metric::Cls { accuracy, .. } => vec![(format!("{job} accuracy"), cell(*accuracy))],
        Metric::Irtr(recall) => vec![
            (format!("{job} T2I R@1"), cell(recall.t2i[0])),
            (format!("{job} I2T R@1"), cell(recall.i2t[0])),
        ],
    }
}

/// One variant's row: its name, (AK, RK, LK) (`None`: from scratch) and its fine-tunes'
/// results by job.
pub type Row = (String, Option<[bool; 3]>, Vec<(String, JobResult)>);

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
            .map_or_else(|| "–".to_owned(), |(_, r)| r.parameters.to_string());
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

/// One row of `ablation.json`.
#[derive(Serialize)]
struct AblationRow<'a> {
    variant: &'a str,
    ak_rk_lk: Option<[bool; 3]>,
    jobs: BTreeMap<&'a str, &'a JobResult>,
}

/// Runs every variant (skipping what is complete) and writes the table; returns it.
///
/// # Errors
/// A config without fine-tunes, a job that fails (named), or a variant stopped by a signal.
pub fn ablate(config: &JobConfig) -> anyhow::Result<String> {
    let jobs = config.jobs();
    if jobs.first().map(String::as_str) != Some(PRETRAIN_JOB) || jobs.len() < 2 {
        bail!("pipeline.jobs must be \"pretrain\" followed by fine-tunes to compare ({jobs:?})");
    }
    if let Some(signal) = prepared(config)? {
        bail!("stopped by signal {signal} in the preflight");
    }
    let mut rows = Vec::new();
    for (name, switches) in VARIANTS {
        eprintln!("arl ablate: variant {name}");
        let (outcome, results) = run_jobs(&variant(config, name, switches))?;
        if let Outcome::Stopped { job, .. } = outcome {
            bail!("variant {name} was stopped in job {job}; run the same command to resume");
        }
        rows.push((name.to_owned(), switches, results));
    }
    let md = markdown(&rows);
    let dir = config.locations().run_dir().to_owned();
    let json_rows: Vec<AblationRow> = rows
        .iter()
        .map(|(name, switches, results)| AblationRow {
            variant: name,
            ak_rk_lk: *switches,
            jobs: results.iter().map(|(job, r)| (job.as_str(), r)).collect(),
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

    fn base(location: Option<&str>) -> JobConfig {
        let mut overrides = vec!["train.run_dir=\"runs/a\"".to_owned()];
        if let Some(location) = location {
            overrides.push(format!("checkpoint.location={location:?}"));
        }
        JobConfig::load(None, &overrides).expect("the embedded default")
    }

    #[test]
    fn variants_keep_their_state_apart() {
        let shared = base(Some("s3://bucket/run/"));
        let (one, scratch) = (
            variant(&shared, "1", Some([false, false, false])),
            variant(&shared, "scratch", None),
        );
        let location = |c: &JobConfig| c.checkpoint.location.clone();
        assert_eq!(location(&one).as_deref(), Some("s3://bucket/run/ablate/1"));
        assert_eq!(
            location(&scratch).as_deref(),
            Some("s3://bucket/run/ablate/scratch")
        );
        assert_eq!(one.train.run_dir, Path::new("runs/a/ablate/1"));
        assert!(!one.model.fusion.knowledge && !one.pretext.align);
        assert!(
            scratch
                .finetune
                .values()
                .all(|job| job.init == Some(Init::Scratch))
        );
        // Without a location, each variant's run folder holds its checkpoints.
        assert_eq!(location(&variant(&base(None), "1", None)), None);
    }
}
