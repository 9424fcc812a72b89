//! `arl pretrain CONFIG`: the resolved config written into the run folder, checked by the
//! worker, then one `arl-worker pretrain` per rank; rank 0's step lines become progress lines
//! on stderr. Workers resume from the newest committed checkpoint by themselves.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::paths;
use crate::run::worker_args;
use crate::world::{WorldSpec, run_world};

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

/// One progress line from a JSON line of rank 0.
fn progress(line: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        eprintln!("{line}");
        return;
    };
    if let Some(step) = value.get("loss").and(value.get("step")) {
        eprintln!(
            "step {step}: loss {:.4} (mlm {:.3} mim {:.3} itm {:.3} align {:.3}) lr {:.2e} \
             {:.1} samples/s, data wait {:.0} %",
            value["loss"].as_f64().unwrap_or(f64::NAN),
            value["mlm"].as_f64().unwrap_or(f64::NAN),
            value["mim"].as_f64().unwrap_or(f64::NAN),
            value["itm"].as_f64().unwrap_or(f64::NAN),
            value["align"].as_f64().unwrap_or(f64::NAN),
            value["lr"].as_f64().unwrap_or(f64::NAN),
            value["samples_per_s"].as_f64().unwrap_or(f64::NAN),
            100.0 * value["data_wait"].as_f64().unwrap_or(f64::NAN),
        );
    } else {
        eprintln!("{value}");
    }
}

/// Checks the config with the worker, then runs the world to the end (or `stop_at`).
///
/// # Errors
/// An invalid config (named), or a rank that fails (named).
pub fn pretrain(config: &Config, stop_at: Option<u64>) -> anyhow::Result<PathBuf> {
    let dir = run_dir(config);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let resolved = dir.join("config.toml");
    std::fs::write(&resolved, toml::to_string(config)?)
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
    let spec = WorldSpec {
        program: paths::worker_binary()?,
        args,
        nproc: config.launch.nproc_per_node,
        master_addr: config.launch.master_addr.clone(),
        master_port: config.launch.master_port,
        env: Vec::new(),
        on_rank0_line: Some(progress),
    };
    eprintln!(
        "arl pretrain: {} {} ranks, run folder {}",
        spec.nproc,
        config.launch.backend,
        dir.display()
    );
    let outputs = run_world(&spec).context("pretraining")?;
    let log = dir.join("rank0.jsonl");
    std::fs::write(
        &log,
        outputs
            .first()
            .map(|l| l.join("\n") + "\n")
            .unwrap_or_default(),
    )
    .with_context(|| format!("writing {}", log.display()))?;
    Ok(dir)
}
