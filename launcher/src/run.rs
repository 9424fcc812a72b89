//! `arl run`: the whole pipeline from one config: the distributed preflight, the inputs the
//! config asks to be prepared, then the jobs of `pipeline.jobs` in order (pretraining, then
//! fine-tunes, each its own world of workers), then the results table. A job already complete
//! is skipped, and an interrupted one resumes from its newest committed checkpoint, so running
//! the same command again continues where a pipeline stopped.

use anyhow::Context;
use serde::Deserialize;

use anyhow::bail;
use arl_checkpoints::{Checkpoints, Manifest, run_config};

use crate::config::{Config, PRETRAIN_JOB};
use crate::finetune;
use crate::paths;
use crate::pretrain::run_dir;
use crate::topology::Topology;
use crate::world::{WorldSpec, run_world};

#[derive(Deserialize)]
struct PreflightReport {
    world_size: usize,
    rank_sum: i64,
}

/// How `arl run` ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every job is complete; the results table (Markdown) when there were fine-tunes.
    Done(Option<String>),
    /// A signal stopped `job` (signal, step of its last checkpoint).
    Stopped {
        /// The job.
        job: String,
        /// The signal and the checkpoint's step.
        stopped: (i32, Option<u64>),
    },
}

/// Runs the preflight, the preparation and every job of the pipeline.
///
/// # Errors
/// A rank that fails (named), a preflight report that cannot be read, or a finished job whose
/// result no longer matches the config.
pub fn run(config: &Config) -> anyhow::Result<Outcome> {
    let config = prepared(config)?;
    let (outcome, _) = run_jobs(&config)?;
    Ok(outcome)
}

/// `config` after the preflight and the preparation of its inputs (`[prepare]`), which point
/// its unset paths at them.
///
/// # Errors
/// A rank that fails the preflight, or a preparation step that fails (named).
pub fn prepared(config: &Config) -> anyhow::Result<Config> {
    preflight(config)?;
    let mut config = config.clone();
    if let Some(prepare) = config.prepare.clone().filter(|p| p.synthetic) {
        crate::prepare::prepare(&mut config, &prepare)?;
    }
    Ok(config)
}

/// Runs every job of a prepared config's pipeline, then writes its results table; returns how
/// it ended and the fine-tunes' results.
///
/// # Errors
/// A rank that fails (named), or a finished job whose result no longer matches the config.
pub fn run_jobs(config: &Config) -> anyhow::Result<(Outcome, Vec<(String, serde_json::Value)>)> {
    let config = config.clone();
    let mut results = Vec::new();
    for job in config.jobs() {
        if job == PRETRAIN_JOB {
            if config.data.is_empty() {
                eprintln!("arl run: the config has no [data] section: nothing to pretrain");
                continue;
            }
            if let Some(step) = pretraining_done(&config)? {
                eprintln!("arl run: pretraining is complete (step {step}); skipped");
                continue;
            }
            let pretrained = crate::pretrain::pretrain(&config, None)?;
            if let Some(stopped) = pretrained.stopped {
                return Ok((Outcome::Stopped { job, stopped }, results));
            }
            let dir = &pretrained.dir;
            eprintln!(
                "arl run: pretraining done: checkpoints in {}, step log {}, TensorBoard: \
                 tensorboard --logdir {}",
                checkpoint_location(&config),
                dir.join("rank0.jsonl").display(),
                dir.join("tensorboard").display()
            );
            continue;
        }
        if let Some(result) = finished(&config, &job)? {
            eprintln!("arl run: fine-tune {job} is complete; skipped");
            results.push((job, result));
            continue;
        }
        let finetuned = finetune::finetune(&config, &job, finetune::Mode::Train(None))?;
        if let Some(stopped) = finetuned.stopped {
            return Ok((Outcome::Stopped { job, stopped }, results));
        }
        let result = finetune::read_result(&config, &job)?
            .with_context(|| format!("fine-tune {job} ended without a result.json"))?;
        results.push((job, result));
    }
    if results.is_empty() {
        return Ok((Outcome::Done(None), results));
    }
    let dir = run_dir(&config);
    let md = crate::results::write(&dir, &results)?;
    eprintln!(
        "arl run: results in {} and {}",
        dir.join("results.md").display(),
        dir.join("results.json").display()
    );
    Ok((Outcome::Done(Some(md)), results))
}

/// Starts every rank once and checks that an all-reduce of the ranks adds up.
fn preflight(config: &Config) -> anyhow::Result<()> {
    let spec = WorldSpec {
        program: paths::worker_binary()?,
        args: worker_args("preflight", config),
        topology: Topology::of(&config.launch)?,
        env: Vec::new(),
        on_rank0_line: None,
        log_dir: None,
    };
    eprintln!(
        "arl run: starting {} {} ranks",
        spec.topology.nproc_per_node, config.launch.backend
    );
    let outputs = run_world(&spec).context("distributed preflight")?.stdout;
    if spec.topology.node_rank != 0 {
        // Global rank 0, which prints the report, runs on node 0.
        eprintln!(
            "arl run: preflight passed on node {}",
            spec.topology.node_rank
        );
        return Ok(());
    }
    let line = outputs
        .first()
        .and_then(|lines| lines.last())
        .context("rank 0 printed no preflight report")?;
    let report: PreflightReport =
        serde_json::from_str(line).with_context(|| format!("reading {line:?}"))?;
    eprintln!(
        "arl run: preflight passed: {} ranks joined, all-reduced rank sum {}",
        report.world_size, report.rank_sum
    );
    Ok(())
}

/// Where pretraining commits its checkpoints.
fn checkpoint_location(config: &Config) -> String {
    config
        .checkpoint
        .get("location")
        .and_then(|v| v.as_str())
        .map_or_else(
            || {
                run_dir(config)
                    .join("checkpoints")
                    .to_string_lossy()
                    .into_owned()
            },
            str::to_owned,
        )
}

/// The newest pretraining checkpoint, if one is committed.
fn pretrained(config: &Config) -> anyhow::Result<Option<Manifest>> {
    Checkpoints::open(&checkpoint_location(config))?.latest()
}

/// The step of the final pretraining checkpoint, if pretraining is complete for this config:
/// `train.steps` reached under the same pretraining identity ([`run_config::identity`]).
///
/// # Errors
/// A final checkpoint written under another pretraining config (the keys named): the run must
/// go to a fresh folder, which is never done behind the user's back.
fn pretraining_done(config: &Config) -> anyhow::Result<Option<u64>> {
    // `train.steps` defaults to 100 in the worker's TrainConfig.
    let steps = config
        .train
        .get("steps")
        .and_then(toml::Value::as_integer)
        .unwrap_or(100);
    let Some(manifest) = pretrained(config)?.filter(|m| m.state.step >= steps.max(0) as u64) else {
        return Ok(None);
    };
    let identity = run_config::identity(&serde_json::to_value(config)?);
    if manifest.state.config_hash != run_config::identity_hash(&identity) {
        let changed = manifest.state.extra.get(run_config::EXTRA_KEY).map_or_else(
            || "a checkpoint from an older arl that does not record it".to_owned(),
            |old| run_config::differences(old, &identity).join(", "),
        );
        let location = checkpoint_location(config);
        bail!(
            "{location}: pretraining finished under another config ({changed}); move or delete \
             {location}, or set another train.run_dir (or checkpoint.location), to pretrain again"
        );
    }
    Ok(Some(manifest.state.step))
}

/// The result of fine-tune `job` if it is complete and still matches the config: the same
/// `[finetune.JOB]` section, and the same pretrained weights.
///
/// # Errors
/// A result written under another section or from other weights: the job must be rerun in a
/// fresh folder, which is never done behind the user's back.
fn finished(config: &Config, job: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(result) = finetune::read_result(config, job)? else {
        return Ok(None);
    };
    let state = finetune::state_location(config, job);
    let section = run_config::relative_to_run_dir(
        &serde_json::to_value(config.finetune.get(job))?,
        &run_dir(config).to_string_lossy(),
    );
    if result["section"] != section {
        bail!(
            "{state}/result.json: written under another [finetune.{job}] section; move or \
             delete {state} to run the job again"
        );
    }
    if let Some(used) = result["init"]["weights"].as_str() {
        let now = pretrained(config)?.map(|m| m.group_hash("model"));
        if now.as_deref() != Some(used) {
            bail!(
                "{state}/result.json: fine-tuned from other pretrained weights ({used}, now {}); \
                 move or delete {state} to fine-tune the new ones",
                now.as_deref().unwrap_or("none"),
            );
        }
    }
    Ok(Some(result))
}

/// `arl-worker SUBCOMMAND` with the process-group settings of `config`.
pub(crate) fn worker_args(subcommand: &str, config: &Config) -> Vec<String> {
    let dist = &config.dist;
    let mut args: Vec<String> = [
        subcommand,
        "--backend",
        &config.launch.backend,
        "--init-timeout-s",
        &dist.init_timeout_s.to_string(),
        "--timeout-s",
        &dist.timeout_s.to_string(),
        "--bucket-mb",
        &dist.bucket_mb.to_string(),
        "--gloo-hostname",
        &config.launch.master_addr,
    ]
    .map(str::to_owned)
    .to_vec();
    if !dist.verify_layout {
        args.push("--skip-layout-check".to_owned());
    }
    args
}
