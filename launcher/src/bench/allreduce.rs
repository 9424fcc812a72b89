//! `arl bench allreduce`: our c10d all-reduce (`arl-worker bench-allreduce`) against Python
//! `torch.distributed` Gloo (`torch_allreduce.py`), same ranks, sizes and protocol, in
//! alternating rounds (ABBA) so that both see the same machine load. Like
//! torch.distributed, our timed call skips the cross-rank layout check unless `--verify-layout`. Prints one line per size:
//! `allreduce size_mb=16 arl_gbps=1.01 torch_gbps=0.99 ratio=1.02`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::compare::{alternate, median, paired_ratio, rank_worlds};
use crate::spawn::WorldSpec;
use crate::world::run_world;

const TORCH_PEER: &str = include_str!("torch_allreduce.py");

/// Settings of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct AllreduceArgs {
    /// Sizes in MiB, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    pub sizes_mb: Vec<usize>,
    /// Ranks (processes) on this machine.
    #[arg(long, default_value_t = 2)]
    pub nproc: usize,
    /// Alternating rounds (arl, then torch); the reported figure is the median over rounds.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Untimed iterations per size and round.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed iterations per size and round.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Include our cross-rank dtype/shape check (one 16-byte all-reduce per call) in the
    /// timed call; torch.distributed has no such check, so it is off by default.
    #[arg(long)]
    pub verify_layout: bool,
    /// Python with torch (default: $ARL_PYTHON, $VIRTUAL_ENV, or the project's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Timing {
    size_mb: usize,
    median_s: f64,
}

/// Runs the benchmark and prints one line per size.
///
/// # Errors
/// A rank that fails on either side, or output that cannot be read.
pub fn run(args: &AllreduceArgs) -> anyhow::Result<()> {
    let sizes = args
        .sizes_mb
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (warmup, iters) = (args.warmup.to_string(), args.iters.to_string());
    let timing_args = ["--sizes-mb", &sizes, "--warmup", &warmup, "--iters", &iters];
    let worker_args = ["bench-allreduce", "--skip-layout-check"];
    let (ours, theirs) = rank_worlds(
        args.nproc,
        &worker_args[..if args.verify_layout { 1 } else { 2 }],
        TORCH_PEER,
        args.python.as_deref(),
        &timing_args.map(str::to_owned),
    )?;

    let mut arl: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut torch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    alternate(
        "allreduce",
        args.rounds,
        || collect(&ours, &mut arl).context("arl side"),
        || collect(&theirs, &mut torch).context("torch.distributed side"),
    )?;
    for &size_mb in &args.sizes_mb {
        let (Some(ours), Some(theirs)) = (arl.get(&size_mb), torch.get(&size_mb)) else {
            bail!("no timing reported for size_mb={size_mb}");
        };
        let summary = Summary::of(size_mb, ours, theirs);
        println!(
            "allreduce size_mb={size_mb} arl_gbps={:.2} torch_gbps={:.2} ratio={:.2}",
            summary.arl_gbps, summary.torch_gbps, summary.ratio
        );
    }
    Ok(())
}

/// One size's figures from per-round median times (seconds, same round order on both sides).
#[derive(Debug, PartialEq)]
struct Summary {
    /// GB/s (10^9 bytes) at our median time over rounds.
    arl_gbps: f64,
    /// GB/s at torch's median time over rounds.
    torch_gbps: f64,
    /// See [`paired_ratio`].
    ratio: f64,
}

impl Summary {
    fn of(size_mb: usize, ours: &[f64], theirs: &[f64]) -> Self {
        let bytes = (size_mb * 1024 * 1024) as f64;
        Self {
            arl_gbps: bytes / median(ours) / 1e9,
            torch_gbps: bytes / median(theirs) / 1e9,
            ratio: paired_ratio(ours, theirs),
        }
    }
}

/// Runs one world and appends rank 0's per-size medians.
fn collect(spec: &WorldSpec, into: &mut BTreeMap<usize, Vec<f64>>) -> anyhow::Result<()> {
    let outputs = run_world(spec)?.stdout;
    for line in outputs.first().into_iter().flatten() {
        let timing: Timing = serde_json::from_str(line)
            .with_context(|| format!("reading rank 0's output line {line:?}"))?;
        into.entry(timing.size_mb)
            .or_default()
            .push(timing.median_s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_bandwidth_at_the_median_time() {
        let summary = Summary::of(1, &[0.9, 1.8, 0.9], &[1.0, 2.0, 1.0]);
        assert!((summary.arl_gbps - 1_048_576.0 / 0.9 / 1e9).abs() < 1e-12);
        assert!((summary.torch_gbps - 1_048_576.0 / 1e9).abs() < 1e-12);
        assert!(summary.ratio > 1.0);
    }
}
