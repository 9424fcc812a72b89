//! `arl bench chaos`: pretraining that survives failures, measured. A small model pretrains on
//! the embedded default's data with 2 ranks twice: once undisturbed, once while
//! [`faults`](super::faults) kills a random rank with SIGKILL K times (every other kill while a
//! checkpoint is being written) and stops one with SIGSTOP once. The disturbed run must finish
//! by itself with final weights bit-identical to the undisturbed one.
//!
//! Prints `chaos failures=… recovered=… identical=… detect_s_median=… restart_s_median=…
//! goodput=…`, where detect_s runs from a fault to the launcher's decision, restart_s from the
//! decision to the new world's first step, and goodput is the time of the steps the final
//! weights came from (each step's last run) over the disturbed run's wall time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use arl_checkpoints::Checkpoints;
use arl_contract::{Event, JobConfig};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::{Fault, Injected, Moment, Target};
use crate::console;

/// Settings of the chaos benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Ranks killed with SIGKILL (every other one while a checkpoint is written).
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Optimiser steps of each run.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 10)]
    pub every: u64,
    /// The watchdog's margin in seconds (`launch.hang_margin_s`) of the disturbed run.
    #[arg(long, default_value_t = 3.0)]
    pub hang_margin_s: f64,
    /// Seed of the fault plan.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scenes of the synthetic corpus.
    #[arg(long, default_value_t = 200)]
    pub scenes: usize,
    /// Working folder (replaced).
    #[arg(long, default_value = "runs/bench-chaos")]
    pub dir: PathBuf,
}

/// Runs the benchmark and prints its line.
///
/// # Errors
/// A run that fails, or a fault that cannot be injected.
pub fn run(args: &ChaosArgs) -> anyhow::Result<()> {
    ensure!(args.every > 0, "--every must be positive");
    let _ = std::fs::remove_dir_all(&args.dir);
    let inputs = args.dir.join("inputs");
    let prepared = config(args, &inputs, &[format!("prepare.scenes={}", args.scenes)])?;
    crate::prepare::prepare(&prepared)?;
    let data = [
        format!(
            "data.train={:?}",
            prepared.data.train.clone().unwrap_or_default()
        ),
        format!(
            "data.tokenizer={:?}",
            prepared.data.tokenizer.clone().unwrap_or_default()
        ),
        format!(
            "knowledge.dir={:?}",
            prepared.knowledge.dir.clone().unwrap_or_default()
        ),
    ];

    console::line("arl bench chaos: the undisturbed run");
    let reference = config(args, &args.dir.join("reference"), &data)?;
    let started = Instant::now();
    let mut child = spawn(args, &reference, "reference")?;
    ensure!(child.wait()?.success(), "the undisturbed run failed");
    let reference_s = started.elapsed().as_secs_f64();

    let mut overrides = data.to_vec();
    overrides.extend([
        format!("launch.max_restarts={}", args.kills + 2),
        format!("launch.hang_margin_s={}", args.hang_margin_s),
        "launch.restart_backoff_s=0.5".to_owned(),
    ]);
    let disturbed = config(args, &args.dir.join("chaos"), &overrides)?;
    console::line(&format!(
        "arl bench chaos: the disturbed run ({} kills, 1 stop)",
        args.kills
    ));
    let started = Instant::now();
    let child = spawn(args, &disturbed, "chaos")?;
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut child = child;
            let status = child.wait();
            running.store(false, Ordering::SeqCst);
            status
        })
    };
    let at = disturbed.locations();
    let target = Target {
        run_dir: at.run_dir().to_owned(),
        checkpoints: PathBuf::from(at.checkpoints()),
        restarts: PathBuf::from(at.restarts(arl_contract::PRETRAIN_JOB)),
    };
    let is_running = || running.load(Ordering::SeqCst);
    let mut injected = Vec::new();
    for fault in plan(args) {
        match target.inject(fault, &is_running) {
            Ok(done) => {
                console::line(&describe(&done));
                injected.push(done);
            }
            Err(error) => {
                console::line(&format!(
                    "arl bench chaos: {fault:?} not recovered: {error:#}"
                ));
                break;
            }
        }
    }
    let status = watcher.join().expect("the watcher thread")?;
    let wall_s = started.elapsed().as_secs_f64();
    let finished = status.success();

    let identical = finished && final_model(&reference)? == final_model(&disturbed)?;
    let useful_s = useful_step_seconds(&target.run_dir, disturbed.train.global_batch)?;
    let median = |values: Vec<f64>| median(values).map_or("nan".to_owned(), |m| format!("{m:.2}"));
    let recovered = if finished { injected.len() } else { 0 };
    println!(
        "chaos failures={} recovered={recovered} identical={identical} detect_s_median={} \
         restart_s_median={} goodput={:.3}",
        args.kills + 1,
        median(injected.iter().map(|i| i.detect_s).collect()),
        median(injected.iter().map(|i| i.restart_s).collect()),
        useful_s / wall_s,
    );
    let kills = |signal| {
        injected
            .iter()
            .filter(move |i: &&Injected| i.fault.signal == signal)
    };
    let detect_of = |signal| median(kills(signal).map(|i| i.detect_s).collect());
    println!(
        "chaos kills_in_checkpoint_write={} kill_detect_s_median={} hang_detect_s={} \
         undisturbed_s={reference_s:.1} disturbed_s={wall_s:.1}",
        kills(Signal::SIGKILL)
            .filter(|i| i.in_checkpoint_write)
            .count(),
        detect_of(Signal::SIGKILL),
        detect_of(Signal::SIGSTOP),
    );
    if !finished {
        bail!("the disturbed run did not finish: {status}");
    }
    Ok(())
}

/// The benchmark's config: the embedded default at 2 ranks in `run_dir`, with `overrides`.
fn config(args: &ChaosArgs, run_dir: &Path, overrides: &[String]) -> anyhow::Result<JobConfig> {
    let mut all = vec![
        format!("train.run_dir={:?}", run_dir.to_string_lossy()),
        format!("train.steps={}", args.steps),
        format!("checkpoint.every_steps={}", args.every),
        "launch.nproc_per_node=2".to_owned(),
        "train.tensorboard=false".to_owned(),
    ];
    all.extend_from_slice(overrides);
    JobConfig::load(None, &all)
}

/// Starts `arl pretrain` on `config` (written as `<dir>/<name>.toml`), its output in
/// `<dir>/<name>.log`.
fn spawn(args: &ChaosArgs, config: &JobConfig, name: &str) -> anyhow::Result<std::process::Child> {
    let path = args.dir.join(format!("{name}.toml"));
    std::fs::write(&path, config.resolved_toml()?)
        .with_context(|| format!("writing {}", path.display()))?;
    let log_path = args.dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    Command::new(std::env::current_exe()?)
        .arg("pretrain")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting arl pretrain")
}

/// K kills, every other one during a checkpoint write, and one stop, in a seeded order.
fn plan(args: &ChaosArgs) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut faults: Vec<Fault> = (0..args.kills)
        .map(|k| {
            let in_write = k % 2 == 1;
            Fault {
                signal: Signal::SIGKILL,
                // Rank 0 writes the checkpoints.
                rank: if in_write { 0 } else { rng.gen_range(0..2) },
                moment: if in_write {
                    Moment::CheckpointWrite
                } else {
                    Moment::Random
                },
                delay_s: rng.gen_range(0.0..2.0),
            }
        })
        .collect();
    let stop_at = rng.gen_range(0..=faults.len());
    faults.insert(
        stop_at,
        Fault {
            signal: Signal::SIGSTOP,
            rank: rng.gen_range(0..2),
            moment: Moment::Random,
            delay_s: rng.gen_range(0.0..2.0),
        },
    );
    faults
}

fn describe(done: &Injected) -> String {
    let fault = &done.fault;
    format!(
        "arl bench chaos: {} rank {} after step {}{}: the launcher decided in {:.2} s ({}), the \
         new world stepped {:.2} s later",
        fault.signal,
        fault.rank,
        done.step,
        if done.in_checkpoint_write {
            " during a checkpoint write"
        } else {
            ""
        },
        done.detect_s,
        done.reason,
        done.restart_s
    )
}

/// The step and model hash of a run's final checkpoint (its files verified).
fn final_model(config: &JobConfig) -> anyhow::Result<(u64, String)> {
    let checkpoints = Checkpoints::open(&config.locations().checkpoints())?;
    let latest = checkpoints
        .latest()?
        .context("the run committed no checkpoint")?;
    let loaded = checkpoints.load(latest.state.step)?;
    Ok((
        loaded.manifest.state.step,
        loaded.manifest.group_hash("model"),
    ))
}

/// Seconds of the steps the final weights came from: the last report of each step.
fn useful_step_seconds(run_dir: &Path, global_batch: usize) -> anyhow::Result<f64> {
    let log = arl_contract::locations::events_log(run_dir);
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let mut seconds = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Ok(Event::Step(step)) = Event::parse(line) {
            seconds.insert(step.step, global_batch as f64 / step.samples_per_s);
        }
    }
    Ok(seconds.values().sum())
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}
