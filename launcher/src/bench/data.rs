//! `arl bench data`, two figures:
//! - images: decode + `clip` transform throughput on one core, ours (`arl-worker bench-images`)
//!   against PIL + torchvision from the venv on the same real image files (written to a
//!   temporary folder by `scripts/fixtures/image_transforms.py`), alternating in the same run:
//!   `data images_per_s arl=… torch=… ratio=…`;
//! - stream: a dataset written to a local S3 server (s3s-fs) and read back by one rank
//!   (`arl-worker bench-stream`), plain GETs of the same objects as the peer, for small and for
//!   radiograph-sized images: `data stream_mb_per_s image_kb=… get=… cold=… warm=…`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use super::compare::{alternate, median, paired_ratio};
use super::s3::LocalS3;
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
    /// Which figures.
    #[arg(long, value_enum, default_value_t = Part::All)]
    pub part: Part,
    /// Streaming: MiB of images in the dataset.
    #[arg(long, default_value_t = 128)]
    pub stream_mb: usize,
    /// Streaming: image sizes in KiB, one dataset each.
    #[arg(long, value_delimiter = ',', default_value = "64,2048")]
    pub stream_image_kb: Vec<usize>,
}

/// The figures of `arl bench data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Both.
    All,
    /// Decode + transform against PIL + torchvision.
    Images,
    /// Streaming from a local S3 server.
    Stream,
}

/// A side's JSON line.
pub(super) fn json_line(
    out: &std::process::Output,
    side: &str,
) -> anyhow::Result<serde_json::Value> {
    if !out.status.success() {
        bail!(
            "{side} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("{side}: reading {line:?}"))
}

/// A number from a side's JSON line.
fn field(value: &serde_json::Value, key: &str, side: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("{side}: no {key} in {value}"))
}

/// Images per second from a side's JSON line.
fn rate(out: &std::process::Output, side: &str) -> anyhow::Result<f64> {
    field(&json_line(out, side)?, "images_per_s", side)
}

/// Runs the chosen figures and prints a line each.
///
/// # Errors
/// Missing set-up, or a side failing.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    if args.part != Part::Stream {
        images(args)?;
    }
    if args.part != Part::Images {
        stream(args)?;
    }
    Ok(())
}

/// Streaming throughput from a local S3 server, one dataset per image size.
fn stream(args: &DataArgs) -> anyhow::Result<()> {
    let server = LocalS3::start("bench")?;
    for &image_kb in &args.stream_image_kb {
        eprintln!(
            "bench data: streaming {} MiB of {image_kb} KiB images",
            args.stream_mb
        );
        let work = crate::bench::private_dir("arl-bench-stream-")?;
        let out = Command::new(crate::spawn::worker_binary()?)
            .args([
                "bench-stream",
                "--url",
                &format!("s3://bench/images-{image_kb}kb"),
            ])
            .arg("--work")
            .arg(work.path())
            .args(["--total-mb", &args.stream_mb.to_string()])
            .args(["--image-kb", &image_kb.to_string()])
            .args(["--rounds", &args.rounds.to_string()])
            .envs(server.env())
            .output()?;
        drop(work);
        let side = "arl-worker bench-stream";
        let timing = json_line(&out, side)?;
        let get = field(&timing, "raw_mb_s", side)?;
        let cold = field(&timing, "cold_mb_s", side)?;
        println!(
            "data stream_mb_per_s image_kb={image_kb} get={get:.0} cold={cold:.0} warm={:.0} \
             cold/get={:.2} mb={:.0} shards={}",
            field(&timing, "warm_mb_s", side)?,
            cold / get,
            field(&timing, "bytes", side)? / 1e6,
            timing["shards"]
        );
    }
    Ok(())
}

/// Decode + transform throughput against PIL + torchvision.
fn images(args: &DataArgs) -> anyhow::Result<()> {
    let python = paths::python(args.python.as_deref())?;
    let private = crate::bench::private_dir("arl-bench-images-")?;
    let dir = private.path().join("images");
    let script = paths::project_file("scripts/fixtures/image_transforms.py")?;
    let status = Command::new(&python).arg(script).arg(&dir).status()?;
    anyhow::ensure!(status.success(), "writing the benchmark images failed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
        .collect();
    files.sort();
    let peer = private.path().join("pil_images.py");
    std::fs::write(&peer, PEER)?;
    let (size, passes) = (args.size.to_string(), args.passes.to_string());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    alternate(
        "data",
        args.rounds,
        || {
            let out = Command::new(crate::spawn::worker_binary()?)
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
    drop(private);
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
