//! `arl run`: the whole job from one config: the distributed preflight, the inputs the config
//! asks to be prepared, then pretraining (resuming from the newest committed checkpoint). The
//! fine-tunes and the results table arrive with issue 9; `run` says so when it ends.

use anyhow::Context;
use serde::Deserialize;

use crate::config::Config;
use crate::paths;
use crate::pretrain::Pretrained;
use crate::topology::Topology;
use crate::world::{WorldSpec, run_world};

#[derive(Deserialize)]
struct PreflightReport {
    world_size: usize,
    rank_sum: i64,
}

/// Runs the stages of the job that exist today: preflight, prepare, pretrain.
///
/// # Errors
/// A rank that fails (named), or a preflight report that cannot be read.
pub fn run(config: &Config) -> anyhow::Result<Pretrained> {
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
    let mut config = config.clone();
    if let Some(prepare) = config.prepare.clone().filter(|p| p.synthetic) {
        crate::prepare::prepare(&mut config, &prepare)?;
    }
    if config.data.is_empty() {
        eprintln!("arl run: the config has no [data] section: nothing to pretrain");
        return Ok(Pretrained {
            dir: crate::pretrain::run_dir(&config),
            stopped: None,
        });
    }
    let pretrained = crate::pretrain::pretrain(&config, None)?;
    if pretrained.stopped.is_none() {
        let dir = &pretrained.dir;
        eprintln!(
            "arl run: pretraining done: checkpoints in {}, step log {}, TensorBoard: \
             tensorboard --logdir {}",
            dir.join("checkpoints").display(),
            dir.join("rank0.jsonl").display(),
            dir.join("tensorboard").display()
        );
    }
    Ok(pretrained)
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
