//! `arl bench checkpoint`: the state of a model preset with AdamW's two moments (the `base`
//! preset: 4.55 GB), saved `--saves` times through the asynchronous writer
//! (`arl-worker bench-checkpoint`) to a local folder and to a local S3 server (s3s-fs), and to
//! the local folder by the peer, PyTorch's `torch.distributed.checkpoint.async_save`, with the
//! same tensor names and shapes:
//! `checkpoint target=… stall_ms=… durable_s=…` (medians; the stall is what the training
//! thread pays, durable is from the start of a save to its commit being on disk or in the
//! store).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::compare::median;
use super::data::json_line;
use super::s3::LocalS3;
use crate::paths;

const PEER: &str = include_str!("torch_checkpoint.py");

/// Settings of the checkpoint benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointArgs {
    /// Model preset whose state is saved: tiny or base.
    #[arg(long, default_value = "base")]
    pub preset: String,
    /// Saves per target; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub saves: usize,
    /// Targets: local, s3.
    #[arg(long, value_delimiter = ',', default_value = "local,s3")]
    pub targets: Vec<String>,
    /// Scratch folder for the local target (default: the system's temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Python with torch for the peer (default: as `bench allreduce`); skip it with --no-peer.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip the PyTorch peer.
    #[arg(long)]
    pub no_peer: bool,
}

fn number(value: &serde_json::Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("no {key} in {value}"))
}

/// Our writer to `location`; the JSON figures.
fn ours(
    args: &CheckpointArgs,
    location: &str,
    layout: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(crate::spawn::worker_binary()?)
        .args(["bench-checkpoint", "--location", location])
        .args(["--preset", &args.preset])
        .args(["--saves", &args.saves.to_string()])
        .arg("--layout-out")
        .arg(layout)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    json_line(&out, "arl-worker bench-checkpoint")
}

/// PyTorch's async_save of the same layout into `folder`: (median stall ms, median durable s).
fn peer(args: &CheckpointArgs, layout: &Path, folder: &Path) -> anyhow::Result<(f64, f64)> {
    let python = paths::python(args.python.as_deref())?;
    let script = folder.with_file_name("torch_checkpoint.py");
    std::fs::write(&script, PEER)?;
    let out = Command::new(&python)
        .arg(&script)
        .arg(layout)
        .arg(folder)
        .arg(args.saves.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let _ = std::fs::remove_file(&script);
    let value = json_line(&out, "torch.distributed.checkpoint")?;
    let list = |key: &str| -> anyhow::Result<Vec<f64>> {
        value[key]
            .as_array()
            .with_context(|| format!("no {key} in {value}"))?
            .iter()
            .map(|v| v.as_f64().context("not a number"))
            .collect()
    };
    Ok((median(&list("stall_ms")?), median(&list("durable_s")?)))
}

/// Runs each target and prints a line each.
///
/// # Errors
/// Missing set-up, or a side failing.
pub fn run(args: &CheckpointArgs) -> anyhow::Result<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("arl-bench-checkpoint-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a private folder in {}", parent.display()))?;
    let layout = work.path().join("layout.json");
    targets(args, work.path(), &layout)
}

fn targets(args: &CheckpointArgs, work: &Path, layout: &Path) -> anyhow::Result<()> {
    for target in &args.targets {
        let (figures, peer_figures) = match target.as_str() {
            "local" => {
                let folder = work.join("arl");
                let figures = ours(args, &folder.to_string_lossy(), layout, &[])?;
                let _ = std::fs::remove_dir_all(&folder);
                let peer_figures = if args.no_peer {
                    None
                } else {
                    let folder = work.join("torch");
                    let figures = peer(args, layout, &folder)?;
                    let _ = std::fs::remove_dir_all(&folder);
                    Some(figures)
                };
                (figures, peer_figures)
            }
            "s3" => {
                let server = LocalS3::start("bench")?;
                (
                    ours(args, "s3://bench/checkpoints", layout, &server.env())?,
                    None,
                )
            }
            other => bail!("unknown checkpoint target {other:?} (local or s3)"),
        };
        let stall = number(&figures, "stall_ms")?;
        let durable = number(&figures, "durable_s")?;
        let mut line = format!(
            "checkpoint target={target} preset={} stall_ms={stall:.0} durable_s={durable:.2} \
             stall_ms_max={:.0} load_s={:.1} gb={:.2} saves={}",
            args.preset,
            number(&figures, "stall_ms_max")?,
            number(&figures, "load_s")?,
            number(&figures, "bytes")? / 1e9,
            args.saves
        );
        if let Some((torch_stall, torch_durable)) = peer_figures {
            line += &format!(
                " torch_stall_ms={torch_stall:.0} torch_durable_s={torch_durable:.1} \
                 stall_ratio={:.2}",
                torch_stall / stall
            );
        }
        println!("{line}");
    }
    Ok(())
}
