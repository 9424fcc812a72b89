//! `arl bench ddp`: our overlapped gradient reduction (`arl-worker bench-ddp`, the training
//! path's `GradSync`) against PyTorch's `DistributedDataParallel` (`torch_ddp.py`) on Gloo:
//! the same MLP, batch, bucket size, ranks and threads, in alternating rounds (ABBA). Each side
//! times a whole step, the step without reduction (`no_sync`) and the reduction of its buckets
//! alone; the fraction of communication hidden behind backward is
//! `1 − (step − local) / comm`, the same formula on both sides. Prints one line:
//! `ddp arl_step_ms=… torch_step_ms=… ratio=… arl_hidden=… torch_hidden=… …`.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

use super::compare::{alternate, median, paired_ratio, rank_worlds};
use crate::spawn::WorldSpec;
use crate::world::run_world;

const TORCH_PEER: &str = include_str!("torch_ddp.py");

/// Settings of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct DdpArgs {
    /// Features of every Linear layer.
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    /// Linear + GELU layers.
    #[arg(long, default_value_t = 8)]
    pub depth: usize,
    /// Samples per rank and step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Gradient bucket size in MiB (DDP's `bucket_cap_mb`; the first bucket is 1 MiB).
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
    /// Ranks (processes) on this machine.
    #[arg(long, default_value_t = 2)]
    pub nproc: usize,
    /// Intra-op threads per rank.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Alternating rounds (arl, then torch); the reported figures are medians over rounds.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Untimed steps per round.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps per round.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Python with torch (default: $ARL_PYTHON, $VIRTUAL_ENV, or the project's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// One round's medians from rank 0 of either side.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Timing {
    step_s: f64,
    local_s: f64,
    comm_s: f64,
    /// Only our side measures the wait after backward directly.
    #[serde(default)]
    exposed_s: Option<f64>,
}

impl Timing {
    /// The fraction of the reduction's own time that the step did not add.
    fn hidden(&self) -> f64 {
        (1.0 - (self.step_s - self.local_s) / self.comm_s).clamp(0.0, 1.0)
    }
}

/// Runs the benchmark and prints its line.
///
/// # Errors
/// A rank that fails on either side, or output that cannot be read.
pub fn run(args: &DdpArgs) -> anyhow::Result<()> {
    let shape: Vec<String> = [
        ("--width", args.width.to_string()),
        ("--depth", args.depth.to_string()),
        ("--batch", args.batch.to_string()),
        ("--bucket-mb", args.bucket_mb.to_string()),
        ("--threads", args.threads.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--iters", args.iters.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect();
    let (ours, theirs) = rank_worlds(
        args.nproc,
        &["bench-ddp", "--skip-layout-check"],
        TORCH_PEER,
        args.python.as_deref(),
        &shape,
    )?;
    let (mut arl, mut torch) = (Vec::new(), Vec::new());
    alternate(
        "ddp",
        args.rounds,
        || collect(&ours, &mut arl).context("arl side"),
        || collect(&theirs, &mut torch).context("PyTorch DDP side"),
    )?;
    println!("{}", Summary::of(&arl, &torch).line());
    Ok(())
}

/// Medians over rounds of both sides.
#[derive(Debug, PartialEq)]
struct Summary {
    arl_step_s: f64,
    torch_step_s: f64,
    /// See [`paired_ratio`]: > 1 means our step is faster.
    ratio: f64,
    arl_hidden: f64,
    torch_hidden: f64,
    arl_local_s: f64,
    torch_local_s: f64,
    arl_comm_s: f64,
    torch_comm_s: f64,
    arl_exposed_s: f64,
}

impl Summary {
    fn of(arl: &[Timing], torch: &[Timing]) -> Self {
        let of = |side: &[Timing], f: fn(&Timing) -> f64| {
            median(&side.iter().map(f).collect::<Vec<_>>())
        };
        let step = |t: &Timing| t.step_s;
        Self {
            arl_step_s: of(arl, step),
            torch_step_s: of(torch, step),
            ratio: paired_ratio(
                &arl.iter().map(step).collect::<Vec<_>>(),
                &torch.iter().map(step).collect::<Vec<_>>(),
            ),
            arl_hidden: of(arl, Timing::hidden),
            torch_hidden: of(torch, Timing::hidden),
            arl_local_s: of(arl, |t| t.local_s),
            torch_local_s: of(torch, |t| t.local_s),
            arl_comm_s: of(arl, |t| t.comm_s),
            torch_comm_s: of(torch, |t| t.comm_s),
            arl_exposed_s: of(arl, |t| t.exposed_s.unwrap_or(f64::NAN)),
        }
    }

    fn line(&self) -> String {
        format!(
            "ddp arl_step_ms={:.1} torch_step_ms={:.1} ratio={:.2} arl_hidden={:.2} \
             torch_hidden={:.2} arl_local_ms={:.1} torch_local_ms={:.1} arl_comm_ms={:.1} \
             torch_comm_ms={:.1} arl_exposed_ms={:.1}",
            self.arl_step_s * 1e3,
            self.torch_step_s * 1e3,
            self.ratio,
            self.arl_hidden,
            self.torch_hidden,
            self.arl_local_s * 1e3,
            self.torch_local_s * 1e3,
            self.arl_comm_s * 1e3,
            self.torch_comm_s * 1e3,
            self.arl_exposed_s * 1e3,
        )
    }
}

/// Runs one world and appends rank 0's timing.
fn collect(spec: &WorldSpec, into: &mut Vec<Timing>) -> anyhow::Result<()> {
    let outputs = run_world(spec)?.stdout;
    let line = outputs
        .first()
        .and_then(|lines| lines.last())
        .context("rank 0 printed no timing")?;
    into.push(
        serde_json::from_str(line).with_context(|| format!("reading rank 0's line {line:?}"))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(step_s: f64, local_s: f64, comm_s: f64) -> Timing {
        Timing {
            step_s,
            local_s,
            comm_s,
            exposed_s: None,
        }
    }

    #[test]
    fn hidden_is_the_share_of_communication_the_step_did_not_add() {
        assert!((timing(1.2, 1.0, 0.8).hidden() - 0.75).abs() < 1e-12);
        assert_eq!(timing(1.0, 1.0, 0.5).hidden(), 1.0);
        assert_eq!(timing(2.0, 1.0, 0.5).hidden(), 0.0);
        assert_eq!(timing(0.9, 1.0, 0.5).hidden(), 1.0);
    }

    #[test]
    fn summary_pairs_the_rounds_and_takes_medians() {
        let arl = [timing(1.0, 0.9, 0.2), timing(2.0, 1.9, 0.2)];
        let torch = [timing(1.5, 1.0, 0.5), timing(3.0, 2.5, 0.5)];
        let summary = Summary::of(&arl, &torch);
        assert!((summary.ratio - 1.5).abs() < 1e-12);
        assert!((summary.arl_hidden - 0.5).abs() < 1e-12);
        assert!((summary.torch_hidden - 0.0).abs() < 1e-12);
        assert!(
            summary
                .line()
                .starts_with("ddp arl_step_ms=1500.0 torch_step_ms=2250.0 ratio=1.50")
        );
    }
}
