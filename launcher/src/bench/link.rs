//! `arl bench link`: entity linking with the HPO dictionary over the odd-numbered Indiana
//! University chest X-ray reports (both installed by `scripts/setup` into data/; the
//! even-numbered reports are a held-out test set that nothing reads), one thread.
//! Prints `link reports_per_s=… mentions_per_report=… reports_with_mention=… reports=…`, or with
//! `--quality` `link_quality recall=… false_finding_rate=… gold_pairs=… normal_reports=…
//! unmapped_terms=…` (definitions: the worker's
//! `knowledge::quality`).

use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::paths;

#[derive(Deserialize)]
struct Throughput {
    reports_per_s: f64,
    mentions_per_report: f64,
    reports_with_mention: usize,
    reports: usize,
}

#[derive(Deserialize)]
struct Quality {
    recall: f64,
    false_finding_rate: f64,
    gold_pairs: usize,
    normal_reports: usize,
    unmapped_terms: usize,
    unknown_headings: Vec<String>,
}

/// Runs the benchmark (`passes` passes, or the quality measurement) and prints one line.
///
/// # Errors
/// Missing data (run scripts/setup), or a failing worker.
pub fn run(passes: usize, quality: bool) -> anyhow::Result<()> {
    let mut command = Command::new(crate::spawn::worker_binary()?);
    command
        .arg("bench-link")
        .arg("--ontology")
        .arg(paths::project_file("data/hpo/hp.obo")?)
        .arg("--reports")
        .arg(paths::project_file("data/iu_reports")?)
        .args(["--passes", &passes.to_string()]);
    if quality {
        command.arg("--quality");
    }
    let out = command.output().context("running arl-worker bench-link")?;
    if !out.status.success() {
        bail!(
            "arl-worker bench-link failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.trim();
    if quality {
        let q: Quality = serde_json::from_str(line).with_context(|| format!("reading {line:?}"))?;
        println!(
            "link_quality recall={:.3} false_finding_rate={:.3} gold_pairs={} normal_reports={} \
             unmapped_terms={}",
            q.recall, q.false_finding_rate, q.gold_pairs, q.normal_reports, q.unmapped_terms
        );
        if !q.unknown_headings.is_empty() {
            eprintln!(
                "MeSH headings missing from mesh_to_hpo.tsv (counted as unmapped): {}",
                q.unknown_headings.join(", ")
            );
        }
        return Ok(());
    }
    let t: Throughput = serde_json::from_str(line).with_context(|| format!("reading {line:?}"))?;
    println!(
        "link reports_per_s={:.0} mentions_per_report={:.2} reports_with_mention={} reports={}",
        t.reports_per_s, t.mentions_per_report, t.reports_with_mention, t.reports
    );
    Ok(())
}
