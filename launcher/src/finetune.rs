//! `arl finetune CONFIG --job NAME`: one fine-tune job of the config (`[finetune.NAME]`), as
//! its own world of workers started from the pipeline's pretrained weights. Its folder is
//! `<run_dir>/finetune/NAME` (logs, `rank0.jsonl`, TensorBoard, and `result.json` once the
//! test split is evaluated); its checkpoints (the best epoch's among them) are there too, or
//! under `<checkpoint.location>/finetune/NAME` when the config sets a location (with a copy of
//! `result.json`), so that every node of a multi-node run sees them.

use anyhow::Context;
use arl_checkpoints::target::Target;
use arl_contract::JobConfig;
use arl_contract::events::JobResult;

use crate::console;
use crate::job::{self, JobOutput};

/// Job `name`'s `result.json` in its state location, if it has been written.
///
/// # Errors
/// The file exists but cannot be read or parsed (named).
pub fn read_result(config: &JobConfig, name: &str) -> anyhow::Result<Option<JobResult>> {
    let target = Target::open(&config.locations().finetune_state(name), &[])?;
    target
        .read("result.json")?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", target.describe("result.json")))
        })
        .transpose()
}

/// What to run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Train to the end (or stop after this step), then evaluate on the test split.
    Train(Option<u64>),
    /// Evaluate the selected weights of the finished job on the test split again.
    Evaluate,
}

/// Runs this node's ranks of job `name` to the end (or the step of `mode`, or a stop signal),
/// on a validated config.
///
/// # Errors
/// A rank that fails (named, with the tail of its log).
pub fn finetune(config: &JobConfig, name: &str, mode: Mode) -> anyhow::Result<JobOutput> {
    let resolved = job::write_resolved(config)?;
    let mut args = job::worker_args("finetune", &resolved);
    args.extend(["--job".to_owned(), name.to_owned()]);
    match mode {
        Mode::Train(Some(step)) => args.extend(["--stop-at".to_owned(), step.to_string()]),
        Mode::Train(None) => {}
        Mode::Evaluate => args.push("--evaluate".to_owned()),
    }
    let dir = config.locations().finetune_dir(name);
    console::line(&format!(
        "arl finetune: job {name}, folder {}",
        dir.display()
    ));
    job::run_job(config, name, args, &dir).with_context(|| format!("fine-tune {name}"))
}
