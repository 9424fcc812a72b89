//! `arl finetune CONFIG --job NAME`: one fine-tune job of the config (`[finetune.NAME]`), as
//! its own world of workers started from the pipeline's pretrained weights. Its folder is
//! `<run_dir>/finetune/NAME` (logs, `rank0.jsonl`, TensorBoard, and `result.json` once the
//! test split is evaluated); its checkpoints (the best epoch's among them) are there too, or under
//! `<checkpoint.location>/finetune/NAME` when the config sets a location (with a copy of
//! `result.json`), so that every node of a multi-node run sees them.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use arl_checkpoints::layout::{finetune_dir, finetune_location};
use arl_checkpoints::target::Target;

use crate::config::Config;
use crate::console;
use crate::job;
use crate::pretrain::run_dir;
use crate::run::worker_args;

/// How a fine-tune ended.
#[derive(Debug)]
pub struct Finetuned {
    /// The job's folder.
    pub dir: PathBuf,
    /// The signal that stopped it early, and the step of its last checkpoint.
    pub stopped: Option<(i32, Option<u64>)>,
}

/// The folder of job `name`.
pub fn job_dir(config: &Config, name: &str) -> PathBuf {
    finetune_dir(&run_dir(config), name)
}

/// Where job `name` keeps what every node must see (checkpoints, `result.json`):
/// under `checkpoint.location` when the config sets one, else the job's folder.
pub fn state_location(config: &Config, name: &str) -> String {
    let location = config.checkpoint.get("location").and_then(|v| v.as_str());
    finetune_location(location, &run_dir(config), name)
}

/// Job `name`'s `result.json` in its state location, if it has been written.
///
/// # Errors
/// The file exists but cannot be read or parsed (named).
pub fn read_result(config: &Config, name: &str) -> anyhow::Result<Option<Value>> {
    let target = Target::open(&state_location(config, name), &[])?;
    target
        .read("result.json")?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", target.describe("result.json")))
        })
        .transpose()
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// A metric (as the worker prints it) in a few words.
pub fn describe(metric: &Value) -> String {
    if let Some(vqa) = metric.get("vqa") {
        format!(
            "open {} closed {} overall {} %",
            percent(&vqa["open"]),
            percent(&vqa["closed"]),
            percent(&vqa["overall"])
        )
    } else if let Some(cls) = metric.get("cls") {
        format!("accuracy {} %", percent(&cls["accuracy"]))
    } else if let Some(irtr) = metric.get("irtr") {
        let at = |key: &str, k: usize| percent(&irtr[key][k]);
        format!(
            "T2I R@1/5/10 {}/{}/{}, I2T R@1/5/10 {}/{}/{} %",
            at("t2i", 0),
            at("t2i", 1),
            at("t2i", 2),
            at("i2t", 0),
            at("i2t", 1),
            at("i2t", 2)
        )
    } else {
        metric.to_string()
    }
}

/// Turns one JSON line of a fine-tune's rank 0 into progress or a message.
fn progress(line: &str) {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        console::line(line);
        return;
    };
    let number = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
    if let (Some(start), Some(end), Some(name)) = (
        value["start"].as_u64(),
        value["end"].as_u64(),
        value["job"].as_str(),
    ) {
        console::start_bar(name, end, start);
    } else if let (Some(step), true) = (value["step"].as_u64(), value.get("loss").is_some()) {
        console::advance(
            step,
            &format!(
                "loss {:.4}, lr {:.2e}, {:.1} samples/s",
                number("loss"),
                number("lr"),
                number("samples_per_s")
            ),
        );
    } else if let Some(epoch) = value["epoch"].as_u64() {
        let best = if value["best"].as_bool() == Some(true) {
            " (best so far)"
        } else {
            ""
        };
        console::line(&format!(
            "epoch {epoch}: validation {}{best}",
            describe(&value["val"])
        ));
    } else if let Some(metric) = value.get("zero_shot") {
        console::line(&format!("zero-shot: {}", describe(metric)));
    } else if let Some(result) = value.get("result") {
        console::line(&format!(
            "test ({}): {}",
            result["test_split"].as_str().unwrap_or("test"),
            describe(&result["test"])
        ));
    } else {
        crate::pretrain::progress(line);
    }
}

/// What to run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Train to the end (or stop after this step), then evaluate on the test split.
    Train(Option<u64>),
    /// Evaluate the selected weights of the finished job on the test split again.
    Evaluate,
}

/// Checks job `name` with the worker, then runs this node's ranks of it to the end (or the
/// step of `mode`, or a stop signal).
///
/// # Errors
/// An invalid config (named), or a rank that fails (named, with the tail of its log).
pub fn finetune(config: &Config, name: &str, mode: Mode) -> anyhow::Result<Finetuned> {
    let resolved = job::write_resolved(config, &run_dir(config))?;
    let resolved = resolved.to_string_lossy().into_owned();
    job::worker_check(&["check-finetune", "--config", &resolved, "--job", name])?;
    let mut args = worker_args("finetune", config);
    args.extend([
        "--config".to_owned(),
        resolved,
        "--job".to_owned(),
        name.to_owned(),
    ]);
    match mode {
        Mode::Train(Some(step)) => args.extend(["--stop-at".to_owned(), step.to_string()]),
        Mode::Train(None) => {}
        Mode::Evaluate => args.push("--evaluate".to_owned()),
    }
    let dir = job_dir(config, name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    console::line(&format!(
        "arl finetune: job {name}, folder {}",
        dir.display()
    ));
    let output =
        job::run_job(config, args, &dir, progress).with_context(|| format!("fine-tune {name}"))?;
    Ok(Finetuned {
        stopped: output
            .stopped_by
            .map(|signal| (signal, job::stopped_at(&output))),
        dir,
    })
}
