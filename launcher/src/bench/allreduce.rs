//! `arl bench allreduce`: our c10d all-reduce (`arl-worker bench-allreduce`) against Python
//! `torch.distributed` Gloo (`torch_allreduce.py`), same ranks, sizes and protocol, alternating
//! round by round so that both see the same machine load. Prints one line per size:
//! `allreduce size_mb=16 arl_gbps=1.01 torch_gbps=0.99 ratio=1.02`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

use crate::paths;
use crate::world::{WorldSpec, run_world};

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
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Untimed iterations per size and round.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed iterations per size and round.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
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
    let world = |program: PathBuf, lead: &[&str], env: Vec<(String, String)>| WorldSpec {
        program,
        args: lead
            .iter()
            .chain(&timing_args)
            .map(|s| (*s).to_owned())
            .collect(),
        nproc: args.nproc,
        master_addr: "127.0.0.1".to_owned(),
        master_port: 0,
        env,
    };
    let quiet = ("TORCH_CPP_LOG_LEVEL".to_owned(), "ERROR".to_owned());
    let ours = world(
        paths::worker_binary()?,
        &["bench-allreduce", "--gloo-hostname", "127.0.0.1"],
        vec![quiet.clone()],
    );
    let theirs = world(
        paths::python(args.python.as_deref())?,
        &["-c", TORCH_PEER],
        vec![
            quiet,
            ("GLOO_SOCKET_IFNAME".to_owned(), "lo".to_owned()),
            ("PYTHONWARNINGS".to_owned(), "ignore".to_owned()),
        ],
    );

    let mut arl: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut torch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for round in 0..args.rounds.max(1) {
        eprintln!(
            "bench allreduce: round {}/{}",
            round + 1,
            args.rounds.max(1)
        );
        collect(&ours, &mut arl).context("arl side")?;
        collect(&theirs, &mut torch).context("torch.distributed side")?;
    }
    for &size_mb in &args.sizes_mb {
        let arl_gbps = gbps(size_mb, &arl)?;
        let torch_gbps = gbps(size_mb, &torch)?;
        println!(
            "allreduce size_mb={size_mb} arl_gbps={arl_gbps:.2} torch_gbps={torch_gbps:.2} ratio={:.2}",
            arl_gbps / torch_gbps
        );
    }
    Ok(())
}

/// Runs one world and appends rank 0's per-size medians.
fn collect(spec: &WorldSpec, into: &mut BTreeMap<usize, Vec<f64>>) -> anyhow::Result<()> {
    let outputs = run_world(spec)?;
    for line in outputs.first().into_iter().flatten() {
        let timing: Timing = serde_json::from_str(line)
            .with_context(|| format!("reading rank 0's output line {line:?}"))?;
        into.entry(timing.size_mb)
            .or_default()
            .push(timing.median_s);
    }
    Ok(())
}

/// GB/s (10^9 bytes) of the median time over rounds for `size_mb`.
fn gbps(size_mb: usize, timings: &BTreeMap<usize, Vec<f64>>) -> anyhow::Result<f64> {
    let mut rounds = timings
        .get(&size_mb)
        .with_context(|| format!("no timing reported for size_mb={size_mb}"))?
        .clone();
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    Ok((size_mb * 1024 * 1024) as f64 / median / 1e9)
}
