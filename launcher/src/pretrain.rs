//! `arl pretrain CONFIG`: the resolved config written into the run folder, checked by the
//! worker, then one `arl-worker pretrain` per local rank; rank 0's JSON lines drive the
//! progress bar and the messages about checkpoints. Workers resume from the newest committed
//! checkpoint by themselves.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::Config;
use crate::console;
use crate::paths;
use crate::run::worker_args;
use crate::topology::Topology;
use crate::world::{WorldSpec, log_dir, run_world};

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

/// Turns one JSON line of rank 0 into progress or a message.
fn progress(line: &str) {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        console::line(line);
        return;
    };
    let number = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
    if let (Some(start), Some(end)) = (value["start"].as_u64(), value["end"].as_u64()) {
        console::start_bar(end, start);
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
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written whole and renamed into place: the other nodes of a job may be reading it.
    let resolved = dir.join("config.toml");
    let staged = dir.join(format!(".config.toml.{}", std::process::id()));
    std::fs::write(&staged, toml::to_string(config)?)
        .and_then(|()| std::fs::rename(&staged, &resolved))
        .with_context(|| format!("writing {}", resolved.display()))?;
    let check = std::process::Command::new(paths::worker_binary()?)
        .arg("check-pretrain")
        .arg("--config")
        .arg(&resolved)
        .output()?;
    if !check.status.success() {
        bail!("{}", String::from_utf8_lossy(&check.stderr).trim());
    }
    let mut args = worker_args("pretrain", config);
    args.extend([
        "--config".to_owned(),
        resolved.to_string_lossy().into_owned(),
    ]);
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
    // Rank 0's lines are appended to rank0.jsonl as they come (one log across restarts).
    let log = dir.join("rank0.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let file = Mutex::new(file);
    let on_line = move |line: &str| {
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = writeln!(file, "{line}") {
            console::line(&format!("arl: writing {}: {error}", log.display()));
        }
        progress(line);
    };
    let spec = WorldSpec {
        program: paths::worker_binary()?,
        args,
        topology,
        env: Vec::new(),
        on_rank0_line: Some(Arc::new(on_line)),
        log_dir: Some(log_dir(&dir)),
    };
    let outcome = run_world(&spec);
    console::finish_bar();
    let output = outcome.context("pretraining")?;
    let rank0 = output.stdout.first().cloned().unwrap_or_default();
    let stopped_at = rank0.iter().rev().find_map(|line| {
        serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["stopped"].as_u64())
    });
    Ok(Pretrained {
        dir,
        stopped: output.stopped_by.map(|signal| (signal, stopped_at)),
    })
}
