//! `arl bench model` and `arl bench pretrain`: one pretraining step of our model
//! (`arl-worker bench-model [--full]`) against the same architecture and step in
//! PyTorch (`scripts/fixtures/arl_reference.py` via `bench_model.py`), same preset, batch and
//! threads, alternating in the same run.
//!
//! - `model`: forward + backward of the four pretraining objectives; prints
//!   `model preset=base precision=fp32 arl_ms=… torch_ms=… ratio=…`, times in milliseconds per
//!   sample (`--bf16`: both sides under bfloat16 CPU autocast, `precision=bf16`).
//! - `pretrain`: the whole training step (forward + backward, clipping the global gradient norm,
//!   AdamW over the six parameter groups), the PyTorch side running the step as the ARL code
//!   does (every objective encodes its own inputs) with Hugging Face's AdamW; prints
//!   `pretrain preset=base precision=fp32 arl_sps=… torch_sps=… ratio=… arl_tflops=…
//!   arl_rss_gib=… torch_rss_gib=… rss_ratio=…`: samples per second, our side's model TFLOP/s
//!   (samples/s × the model's training FLOPs per sample, `arl_worker::model::flops`) and each
//!   side's peak resident memory (median over rounds; each round is a fresh process). Both
//!   sides run on the CPU, which has no datasheet peak, so no MFU is printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use super::compare::{alternate, median, paired_ratio};
use crate::paths;

const REFERENCE: &str = include_str!("../../../scripts/fixtures/arl_reference.py");
const PEER: &str = include_str!("../../../scripts/fixtures/bench_model.py");
const OPTIMIZER: &str = include_str!("../../../scripts/fixtures/adamw.py");

/// Settings of one model benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model preset: tiny or base.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Samples per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: i64,
    /// Text positions.
    #[arg(long, default_value_t = 32)]
    pub text_len: i64,
    /// Entity slots per text.
    #[arg(long, default_value_t = 8)]
    pub slots: i64,
    /// Entities in the graph.
    #[arg(long, default_value_t = 64)]
    pub entities: i64,
    /// Timed steps per round (after one untimed step).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Alternating rounds.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Intra-op threads on both sides.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Python with torch, transformers and torch_geometric (default: as `bench allreduce`).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Both sides' forward passes under bfloat16 CPU autocast (compare bf16 with bf16 only).
    #[arg(long)]
    pub bf16: bool,
}

impl ModelArgs {
    /// `bf16` or `fp32`, as the printed line names it.
    fn precision(&self) -> &'static str {
        if self.bf16 { "bf16" } else { "fp32" }
    }
}

#[derive(Deserialize)]
struct StepTiming {
    median_s: f64,
    batch: i64,
    /// Parameter elements per optimiser group (full steps).
    #[serde(default)]
    group_numels: Option<Vec<i64>>,
    /// The model's training FLOPs per sample (our side's full steps).
    #[serde(default)]
    train_flops_per_sample: Option<f64>,
    /// The side's peak resident memory, bytes (full steps).
    #[serde(default)]
    peak_rss_bytes: Option<u64>,
}

impl StepTiming {
    fn per_sample_s(&self) -> f64 {
        self.median_s / self.batch as f64
    }
}

/// What both sides time.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Forward + backward of the four objectives.
    ForwardBackward,
    /// The whole training step, the peer as the ARL code runs it.
    Full,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::ForwardBackward => "model",
            Step::Full => "pretrain",
        }
    }

    fn worker_args(self) -> &'static [&'static str] {
        match self {
            Step::ForwardBackward => &["bench-model"],
            Step::Full => &["bench-model", "--full"],
        }
    }

    fn peer_flags(self) -> &'static [&'static str] {
        match self {
            Step::ForwardBackward => &[],
            Step::Full => &["--step", "full", "--recompute"],
        }
    }
}

/// Runs `arl bench model` and prints one line.
///
/// # Errors
/// Either side failing, or output that cannot be read.
pub fn run(args: &ModelArgs) -> anyhow::Result<()> {
    let (arl, torch) = measure(args, Step::ForwardBackward)?;
    let ms = |timings: &[StepTiming]| -> Vec<f64> {
        timings.iter().map(|t| t.per_sample_s() * 1000.0).collect()
    };
    let (arl, torch) = (ms(&arl), ms(&torch));
    println!(
        "model preset={} precision={} arl_ms={:.1} torch_ms={:.1} ratio={:.2}",
        args.preset,
        args.precision(),
        median(&arl),
        median(&torch),
        paired_ratio(&arl, &torch)
    );
    Ok(())
}

/// Runs `arl bench pretrain` and prints one line.
///
/// # Errors
/// Either side failing, output that cannot be read, or sides whose optimisers do not update
/// the same number of parameters in each group.
pub fn run_pretrain(args: &ModelArgs) -> anyhow::Result<()> {
    let (arl, torch) = measure(args, Step::Full)?;
    for (ours, theirs) in arl.iter().zip(&torch) {
        ensure!(
            ours.group_numels.is_some() && ours.group_numels == theirs.group_numels,
            "the sides' optimiser groups differ (parameter elements per group): ours {:?}, \
             PyTorch {:?}",
            ours.group_numels,
            theirs.group_numels
        );
    }
    let seconds = |timings: &[StepTiming]| -> Vec<f64> {
        timings.iter().map(StepTiming::per_sample_s).collect()
    };
    let sps = |seconds: &[f64]| median(&seconds.iter().map(|s| 1.0 / s).collect::<Vec<_>>());
    let flops = arl
        .first()
        .and_then(|t| t.train_flops_per_sample)
        .context("our side printed no FLOPs per sample")?;
    let peak_gib = |timings: &[StepTiming]| -> anyhow::Result<f64> {
        let bytes: Option<Vec<f64>> = timings
            .iter()
            .map(|t| t.peak_rss_bytes.map(|b| b as f64 / f64::from(1 << 30)))
            .collect();
        Ok(median(&bytes.context("a side printed no peak memory")?))
    };
    let (arl_gib, torch_gib) = (peak_gib(&arl)?, peak_gib(&torch)?);
    let (arl, torch) = (seconds(&arl), seconds(&torch));
    println!(
        "pretrain preset={} precision={} arl_sps={:.3} torch_sps={:.3} ratio={:.2} \
         arl_tflops={:.4} arl_rss_gib={:.2} torch_rss_gib={:.2} rss_ratio={:.2}",
        args.preset,
        args.precision(),
        sps(&arl),
        sps(&torch),
        paired_ratio(&arl, &torch),
        sps(&arl) * flops / 1e12,
        arl_gib,
        torch_gib,
        arl_gib / torch_gib
    );
    Ok(())
}

/// Both sides' timings of `step`, round by round.
fn measure(args: &ModelArgs, step: Step) -> anyhow::Result<(Vec<StepTiming>, Vec<StepTiming>)> {
    let worker = crate::spawn::worker_binary()?;
    let python = paths::python(args.python.as_deref())?;
    let private = crate::bench::private_dir(&format!("arl-bench-{}-", step.name()))?;
    let dir = private.path().to_owned();
    let config = dir.join("config.json");
    let printed =
        output_of(Command::new(&worker).args(["model-config", "--preset", &args.preset]))?;
    std::fs::write(&config, printed).with_context(|| format!("writing {}", config.display()))?;
    for (name, text) in [
        ("arl_reference.py", REFERENCE),
        ("bench_model.py", PEER),
        ("adamw.py", OPTIMIZER),
    ] {
        std::fs::write(dir.join(name), text)?;
    }

    let shape = [
        ("--batch", args.batch.to_string()),
        ("--text-len", args.text_len.to_string()),
        ("--slots", args.slots.to_string()),
        ("--entities", args.entities.to_string()),
        ("--iters", args.iters.to_string()),
        ("--threads", args.threads.to_string()),
    ];
    let with_shape = |command: &mut Command| {
        for (flag, value) in &shape {
            command.args([*flag, value.as_str()]);
        }
        if args.bf16 {
            command.arg("--bf16");
        }
    };
    let (mut arl, mut torch) = (Vec::new(), Vec::new());
    alternate(
        step.name(),
        args.rounds,
        || {
            let mut command = Command::new(&worker);
            command
                .args(step.worker_args())
                .args(["--preset", &args.preset]);
            with_shape(&mut command);
            arl.push(timing(&output_of(&mut command).context("arl side")?)?);
            Ok(())
        },
        || {
            let mut command = Command::new(&python);
            command
                .arg(dir.join("bench_model.py"))
                .arg(&config)
                .args(step.peer_flags())
                .env("PYTHONWARNINGS", "ignore");
            with_shape(&mut command);
            torch.push(timing(&output_of(&mut command).context("PyTorch side")?)?);
            Ok(())
        },
    )?;
    drop(private);
    Ok((arl, torch))
}

/// Standard output of a command that must succeed.
fn output_of(command: &mut Command) -> anyhow::Result<String> {
    let program = Path::new(command.get_program()).display().to_string();
    let out = command
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A side's timing from its last JSON line.
fn timing(output: &str) -> anyhow::Result<StepTiming> {
    let line = output.lines().last().context("no timing printed")?;
    serde_json::from_str(line).with_context(|| format!("reading {line:?}"))
}
