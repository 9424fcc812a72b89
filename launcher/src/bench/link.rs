//! `arl bench link`: entity-linking throughput of the HPO dictionary over the 3,955 Indiana
//! University chest X-ray reports (both installed by `scripts/setup` into data/), one thread.
//! Prints `link reports_per_s=… mentions_per_report=… reports_with_mention=…`.

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

/// Runs the benchmark with `passes` passes and prints one line.
///
/// # Errors
/// Missing data (run scripts/setup), or a failing worker.
pub fn run(passes: usize) -> anyhow::Result<()> {
    let out = Command::new(crate::spawn::worker_binary()?)
        .arg("bench-link")
        .arg("--ontology")
        .arg(paths::project_file("data/hpo/hp.obo")?)
        .arg("--reports")
        .arg(paths::project_file("data/iu_reports")?)
        .args(["--passes", &passes.to_string()])
        .output()
        .context("running arl-worker bench-link")?;
    if !out.status.success() {
        bail!(
            "arl-worker bench-link failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let t: Throughput =
        serde_json::from_str(line.trim()).with_context(|| format!("reading {line:?}"))?;
    println!(
        "link reports_per_s={:.0} mentions_per_report={:.2} reports_with_mention={} reports={}",
        t.reports_per_s, t.mentions_per_report, t.reports_with_mention, t.reports
    );
    Ok(())
}
