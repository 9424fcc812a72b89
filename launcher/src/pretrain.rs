//! `arl pretrain CONFIG`: the resolved config written into the run folder, checked by the
//! worker, then one `arl-worker pretrain` per local rank; rank 0's JSON lines drive the
//! progress bar and the messages about checkpoints. Workers resume from the newest committed
//! checkpoint by themselves.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::config::Config;
use crate::console;
use crate::job;
use crate::run::worker_args;
use crate::topology::Topology;

/// The run folder of `config` (`train.run_dir`, default `runs/default`).
pub fn run_dir(config: &Config) -> PathBuf {
    PathBuf::from(
        config
            .train
            .get("run_dir")
            .and_then(|v| v.as_str())
            .unwrap_or("runs/default"),
    )
}

/// How pretraining ended.
#[derive(Debug)]
pub struct Pretrained {
    /// The run folder.
    pub dir: PathBuf,
    /// The signal that stopped it early, and the step of its final checkpoint (known on the
    /// node of rank 0).
    pub stopped: Option<(i32, Option<u64>)>,
}

/// Turns one JSON line of rank 0 into progress or a message (the pretraining lines, and the
/// checkpoint and stop lines every job prints).
pub(crate) fn progress(line: &str) {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        console::line(line);
        return;
    };
    let number = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
    if let (Some(start), Some(end)) = (value["start"].as_u64(), value["end"].as_u64()) {
        console::start_bar("pretrain", end, start);
    } else if let (Some(step), true) = (value["step"].as_u64(), value.get("loss").is_some()) {
        console::advance(
            step,
            &format!(
                "loss {:.4} (mlm {:.3} mim {:.3} itm {:.3} align {:.3}), lr {:.2e}, \
                 {:.1} samples/s, data wait {:.0} %",
                number("loss"),
                number("mlm"),
                number("mim"),
                number("itm"),
                number("align"),
                number("lr"),
                number("samples_per_s"),
                100.0 * number("data_wait"),
            ),
        );
    } else if let Some(step) = value["resumed"].as_u64() {
        console::line(&format!(
            "resumed at step {step} from {}",
            value["from"].as_str().unwrap_or("?")
        ));
    } else if let Some(step) = value["checkpoint"].as_u64() {
        console::line(&format!(
            "checkpoint of step {step} staged ({:.0} ms of training time)",
            number("stall_ms") + number("waited_ms")
        ));
    } else if let Some(step) = value["committed"].as_u64() {
        console::line(&format!(
            "checkpoint of step {step} committed ({:.1} MB written in {:.1} s)",
            number("bytes") / 1e6,
            number("write_s")
        ));
    } else if let Some(step) = value["stopped"].as_u64() {
        console::line(&format!(
            "stopped by {} after step {step}",
            value["signal"].as_str().unwrap_or("a signal")
        ));
    } else {
        console::line(&value.to_string());
    }
}

/// Checks the config with the worker, then runs this node's ranks to the end (or `stop_at`,
/// or a stop signal).
///
/// # Errors
/// An invalid config (named), or a rank that fails (named, with the tail of its log).
pub fn pretrain(config: &Config, stop_at: Option<u64>) -> anyhow::Result<Pretrained> {
    let topology = Topology::of(&config.launch)?;
    let dir = run_dir(config);
    let resolved = job::write_resolved(config, &dir)?;
    let resolved = resolved.to_string_lossy().into_owned();
    job::worker_check(&["check-pretrain", "--config", &resolved])?;
    let mut args = worker_args("pretrain", config);
    args.extend(["--config".to_owned(), resolved]);
    if let Some(step) = stop_at {
        args.extend(["--stop-at".to_owned(), step.to_string()]);
    }
    console::line(&format!(
        "arl pretrain: {} {} ranks on this node (node {} of {}, world {}), run folder {}, \
         TensorBoard logs {}",
        topology.nproc_per_node,
        config.launch.backend,
        topology.node_rank,
        topology.nnodes,
        topology.world_size(),
        dir.display(),
        dir.join("tensorboard").display()
    ));
    let output = job::run_job(config, args, &dir, progress).context("pretraining")?;
    Ok(Pretrained {
        stopped: output
            .stopped_by
            .map(|signal| (signal, job::stopped_at(&output))),
        dir,
    })
}
