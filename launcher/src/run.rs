//! `arl run`: the whole pipeline from one config: the distributed preflight, the inputs the
//! config asks to be prepared, then the jobs of `pipeline.jobs` in order (pretraining, then
//! fine-tunes, each its own world of workers), then the results table. A job already complete
//! is skipped, and an interrupted one resumes from its newest committed checkpoint, so running
//! the same command again continues where a pipeline stopped.

use anyhow::{Context, bail};
use arl_checkpoints::{Checkpoints, Manifest};
use arl_contract::events::JobResult;
use arl_contract::identity::{EXTRA_KEY, differences, identity_hash};
use arl_contract::locations::{events_log, tensorboard_dir};
use arl_contract::{Event, JobConfig, PRETRAIN_JOB};

use crate::finetune;
use crate::job;
use crate::spawn::WorldSpec;
use crate::spawn::worker_binary;
use crate::topology::Topology;
use crate::world::run_world;

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

/// Runs the preflight, the preparation and every job of the pipeline of a checked config.
///
/// # Errors
/// A rank that fails (named), or a finished job whose result no longer matches the config.
pub fn run(config: &JobConfig) -> anyhow::Result<Outcome> {
    if let Some(signal) = prepared(config)? {
        return Ok(Outcome::Stopped {
            job: "preflight".to_owned(),
            stopped: (signal, None),
        });
    }
    let (outcome, _) = run_jobs(config)?;
    Ok(outcome)
}

/// The preflight, then the preparation of the config's inputs (`[prepare]`); returns the
/// signal that stopped the preflight, if one did (then nothing is prepared).
///
/// # Errors
/// A rank that fails the preflight, or a preparation step that fails (named).
pub fn prepared(config: &JobConfig) -> anyhow::Result<Option<i32>> {
    if let Some(signal) = preflight(config)? {
        return Ok(Some(signal));
    }
    if config.prepare.as_ref().is_some_and(|p| p.synthetic) {
        crate::prepare::prepare(config)?;
    }
    Ok(None)
}

/// Runs every job of a prepared config's pipeline, then writes its results table; returns how
/// it ended and the fine-tunes' results.
///
/// # Errors
/// A rank that fails (named), or a finished job whose result no longer matches the config.
pub fn run_jobs(config: &JobConfig) -> anyhow::Result<(Outcome, Vec<(String, JobResult)>)> {
    let mut results = Vec::new();
    for job in config.jobs() {
        if job == PRETRAIN_JOB {
            if let Some(step) = pretraining_done(config)? {
                eprintln!("arl run: pretraining is complete (step {step}); skipped");
                continue;
            }
            let pretrained = crate::pretrain::pretrain(config, None)?;
            if let Some(stopped) = pretrained.stopped() {
                return Ok((Outcome::Stopped { job, stopped }, results));
            }
            let at = config.locations();
            eprintln!(
                "arl run: pretraining done: checkpoints in {}, step log {}, TensorBoard: \
                 tensorboard --logdir {}",
                at.checkpoints(),
                events_log(at.run_dir()).display(),
                tensorboard_dir(at.run_dir()).display()
            );
            continue;
        }
        if let Some(result) = finished(config, &job)? {
            eprintln!("arl run: fine-tune {job} is complete; skipped");
            results.push((job, result));
            continue;
        }
        let finetuned = finetune::finetune(config, &job, finetune::Mode::Train(None))?;
        if let Some(stopped) = finetuned.stopped() {
            return Ok((Outcome::Stopped { job, stopped }, results));
        }
        let result = finetune::read_result(config, &job)?
            .with_context(|| format!("fine-tune {job} ended without a result.json"))?;
        results.push((job, result));
    }
    if results.is_empty() {
        return Ok((Outcome::Done(None), results));
    }
    let dir = config.locations().run_dir().to_owned();
    let md = crate::results::write(&dir, &results)?;
    eprintln!(
        "arl run: results in {} and {}",
        dir.join("results.md").display(),
        dir.join("results.json").display()
    );
    Ok((Outcome::Done(Some(md)), results))
}

/// Starts every rank once and checks that an all-reduce of the ranks adds up; returns the stop
/// signal that ended it early, if one did.
fn preflight(config: &JobConfig) -> anyhow::Result<Option<i32>> {
    let resolved = job::write_resolved(config)?;
    let spec = WorldSpec {
        program: worker_binary()?,
        args: job::worker_args("preflight", &resolved),
        topology: Topology::of(&config.launch)?,
        env: vec![(
            arl_contract::rank_env::RUN_TOKEN_VAR.to_owned(),
            job::run_token(config, "preflight", 0),
        )],
        on_rank0_line: None,
        kill_grace: std::time::Duration::from_secs_f64(config.launch.kill_grace_s),
        log_dir: None,
    };
    eprintln!(
        "arl run: starting {} {} ranks",
        spec.topology.nproc_per_node, config.launch.backend
    );
    let world = run_world(&spec)
        .context("distributed preflight")
        .map_err(crate::failure::Failure::start_up)?;
    if world.stopped_by.is_some() {
        return Ok(world.stopped_by);
    }
    let outputs = world.stdout;
    if spec.topology.node_rank != 0 {
        // Global rank 0, which reports, runs on node 0.
        eprintln!(
            "arl run: preflight passed on node {}",
            spec.topology.node_rank
        );
        return Ok(None);
    }
    let line = outputs
        .first()
        .and_then(|lines| lines.last())
        .context("rank 0 printed no preflight report")?;
    match Event::parse(line)? {
        Event::Preflight {
            world_size,
            rank_sum,
        } => eprintln!(
            "arl run: preflight passed: {world_size} ranks joined, all-reduced rank sum \
             {rank_sum}"
        ),
        other => bail!("rank 0 reported {other:?} instead of the preflight"),
    }
    Ok(None)
}

/// The newest pretraining checkpoint, if one is committed.
fn pretrained(config: &JobConfig) -> anyhow::Result<Option<Manifest>> {
    Checkpoints::open(&config.locations().checkpoints())?.latest()
}

/// The step of the final pretraining checkpoint, if pretraining is complete for this config:
/// `train.steps` reached under the same pretraining identity.
///
/// # Errors
/// A final checkpoint written under another pretraining config (the keys named): the run must
/// go to a fresh folder, which is never done behind the user's back.
fn pretraining_done(config: &JobConfig) -> anyhow::Result<Option<u64>> {
    let Some(manifest) = pretrained(config)?.filter(|m| m.state.step >= config.train.steps) else {
        return Ok(None);
    };
    let identity = config.pretraining_identity();
    if manifest.state.config_hash != identity_hash(&identity) {
        let changed = manifest.state.extra.get(EXTRA_KEY).map_or_else(
            || "a checkpoint from an older arl that does not record it".to_owned(),
            |old| differences(old, &identity).join(", "),
        );
        let location = config.locations().checkpoints();
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
fn finished(config: &JobConfig, job: &str) -> anyhow::Result<Option<JobResult>> {
    let Some(result) = finetune::read_result(config, job)? else {
        return Ok(None);
    };
    let state = config.locations().finetune_state(job);
    if result.section != config.finetune_section(job) {
        bail!(
            "{state}/result.json: written under another [finetune.{job}] section; move or \
             delete {state} to run the job again"
        );
    }
    if let Some(used) = result.init.weights() {
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
