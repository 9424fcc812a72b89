//! `arl bench data`: decode + `clip` transform throughput on one core, ours (`arl-worker
//! bench-images`) against PIL + torchvision from the venv on the same real image files (written
//! to a temporary folder by `scripts/fixtures/image_transforms.py`), alternating in the same run. Prints
//! `data images_per_s arl=… torch=… ratio=…`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use super::compare::{alternate, median, paired_ratio};
use crate::paths;

const PEER: &str = include_str!("pil_images.py");

/// Settings of the data benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Output side of the transform.
    #[arg(long, default_value_t = 288)]
    pub size: u32,
    /// Passes over the files per round; the median pass counts.
    #[arg(long, default_value_t = 5)]
    pub passes: usize,
    /// Alternating rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Python with Pillow and torchvision (default: as `bench allreduce`).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// Images per second from a side's JSON line.
fn rate(out: &std::process::Output, side: &str) -> anyhow::Result<f64> {
    if !out.status.success() {
        bail!(
            "{side} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).with_context(|| format!("{side}: reading {line:?}"))?;
    value["images_per_s"]
        .as_f64()
        .with_context(|| format!("{side}: no images_per_s in {line:?}"))
}

/// Runs the benchmark and prints one line.
///
/// # Errors
/// Missing set-up, or either side failing.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    let python = paths::python(args.python.as_deref())?;
    let dir = std::env::temp_dir().join(format!("arl-bench-images-{}", std::process::id()));
    let script = paths::project_file("scripts/fixtures/image_transforms.py")?;
    let status = Command::new(&python).arg(script).arg(&dir).status()?;
    anyhow::ensure!(status.success(), "writing the benchmark images failed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
        .collect();
    files.sort();
    let peer = std::env::temp_dir().join(format!("arl-pil-images-{}.py", std::process::id()));
    std::fs::write(&peer, PEER)?;
    let (size, passes) = (args.size.to_string(), args.passes.to_string());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    alternate(
        "data",
        args.rounds,
        || {
            let out = Command::new(paths::worker_binary()?)
                .args(["bench-images", "--size", &size, "--passes", &passes])
                .args(&files)
                .output()?;
            ours.push(1.0 / rate(&out, "arl-worker bench-images")?);
            Ok(())
        },
        || {
            let out = Command::new(&python)
                .arg(&peer)
                .args([&size, &passes])
                .args(&files)
                .output()?;
            theirs.push(1.0 / rate(&out, "PIL + torchvision")?);
            Ok(())
        },
    )?;
    let _ = std::fs::remove_file(&peer);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "data images_per_s arl={:.0} torch={:.0} ratio={:.2} images={} size={}",
        1.0 / median(&ours),
        1.0 / median(&theirs),
        paired_ratio(&ours, &theirs),
        files.len(),
        args.size
    );
    Ok(())
}
