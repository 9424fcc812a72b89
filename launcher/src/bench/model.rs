//! `arl bench model`: forward + backward of the four pretraining objectives, our model
//! (`arl-worker bench-model`) against the same architecture in PyTorch
//! (`scripts/fixtures/arl_reference.py` via `bench_model.py`), same preset, batch and threads,
//! alternating in the same run. Prints `model preset=base arl_ms=… torch_ms=… ratio=…`, times
//! in milliseconds per sample.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::compare::{alternate, median, paired_ratio};
use crate::paths;

const REFERENCE: &str = include_str!("../../../scripts/fixtures/arl_reference.py");
const PEER: &str = include_str!("../../../scripts/fixtures/bench_model.py");

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
}

#[derive(Deserialize)]
struct StepTiming {
    median_s: f64,
    batch: i64,
}

/// Runs the benchmark and prints one line.
///
/// # Errors
/// Either side failing, or output that cannot be read.
pub fn run(args: &ModelArgs) -> anyhow::Result<()> {
    let worker = paths::worker_binary()?;
    let python = paths::python(args.python.as_deref())?;
    let dir = std::env::temp_dir().join(format!("arl-bench-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("config.json");
    let printed =
        output_of(Command::new(&worker).args(["model-config", "--preset", &args.preset]))?;
    std::fs::write(&config, printed).with_context(|| format!("writing {}", config.display()))?;
    std::fs::write(dir.join("arl_reference.py"), REFERENCE)?;
    std::fs::write(dir.join("bench_model.py"), PEER)?;

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
    };
    let (mut arl, mut torch) = (Vec::new(), Vec::new());
    alternate(
        "model",
        args.rounds,
        || {
            let mut command = Command::new(&worker);
            command.args(["bench-model", "--preset", &args.preset]);
            with_shape(&mut command);
            arl.push(per_sample_ms(
                &output_of(&mut command).context("arl side")?,
            )?);
            Ok(())
        },
        || {
            let mut command = Command::new(&python);
            command
                .arg(dir.join("bench_model.py"))
                .arg(&config)
                .env("PYTHONWARNINGS", "ignore");
            with_shape(&mut command);
            torch.push(per_sample_ms(
                &output_of(&mut command).context("PyTorch side")?,
            )?);
            Ok(())
        },
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "model preset={} arl_ms={:.1} torch_ms={:.1} ratio={:.2}",
        args.preset,
        median(&arl),
        median(&torch),
        paired_ratio(&arl, &torch)
    );
    Ok(())
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

/// Milliseconds per sample from a side's last JSON line.
fn per_sample_ms(output: &str) -> anyhow::Result<f64> {
    let line = output.lines().last().context("no timing printed")?;
    let timing: StepTiming =
        serde_json::from_str(line).with_context(|| format!("reading {line:?}"))?;
    Ok(timing.median_s * 1000.0 / timing.batch as f64)
}
