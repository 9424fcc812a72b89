//! Pretraining runs as the end-to-end tests drive them: shared inputs and a small config, the
//! rank-0 step log, waiting for steps, finding a rank's worker, the final checkpoint's model,
//! and the sample logs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{arl_ok, scratch_dir, workspace_root};

/// The steps of a job's rank-0 event log (`<dir>/rank0.jsonl`), each as JSON with `step`,
/// `loss`, every loss part by name (`mlm`, …), `lr` (the base group's), `grad_norm`,
/// `samples_per_s`, `data_wait`, `comm_exposed`, and `tflops` and `mfu` where reported.
///
/// # Panics
/// If the log cannot be read, or a line of it is not an event.
pub fn step_reports(job_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(job_dir.join("rank0.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| match arl_contract::Event::parse(line).unwrap() {
            arl_contract::Event::Step(report) => Some(report),
            _ => None,
        })
        .map(|report| {
            let mut step = serde_json::json!({
                "step": report.step, "loss": report.loss, "lr": report.lr["base"],
                "grad_norm": report.grad_norm, "samples_per_s": report.samples_per_s,
                "data_wait": report.data_wait, "comm_exposed": report.comm_exposed,
            });
            for (name, value) in &report.losses {
                step[name] = (*value).into();
            }
            for (name, value) in [("tflops", report.tflops), ("mfu", report.mfu)] {
                if let Some(value) = value {
                    step[name] = value.into();
                }
            }
            step
        })
        .collect()
}

/// The synthetic corpus, its tokenizer and its knowledge, made once per test binary.
pub fn pretrain_inputs() -> &'static Path {
    static INPUTS: OnceLock<PathBuf> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = scratch_dir("pretrain-inputs");
        let synth = dir.join("synth");
        arl_ok(&[
            "data",
            "synth",
            "--output",
            &synth.to_string_lossy(),
            "--size",
            "60",
        ]);
        arl_ok(&[
            "data",
            "tokenizer",
            "--corpus",
            &synth.join("corpus.txt").to_string_lossy(),
            "--output",
            &dir.join("tokenizer.json").to_string_lossy(),
        ]);
        let knowledge = dir.join("knowledge.toml");
        std::fs::write(
            &knowledge,
            format!(
                "[knowledge]\nontology = {:?}\ncorpus = [{:?}]\nmin_count = 2\nexpand_hops = 2\n\
                 holdout = 0.0\noutput = {:?}\n[knowledge.transe]\nepochs = 5\ndim = 32\n",
                workspace_root().join("data/hpo/hp.obo"),
                synth.join("corpus.txt"),
                dir.join("knowledge"),
            ),
        )
        .unwrap();
        arl_ok(&[
            "knowledge",
            "build",
            "--config",
            &knowledge.to_string_lossy(),
        ]);
        dir
    })
}

/// A job config (two ranks, six steps, a checkpoint every three) whose run folder is `run`.
pub fn pretrain_config(run: &Path) -> PathBuf {
    let inputs = pretrain_inputs();
    std::fs::create_dir_all(run).unwrap();
    let path = run.with_extension("toml");
    let sections = format!(
        "[launch]\nnproc_per_node = 2\nbackend = \"gloo\"\nmaster_addr = \"127.0.0.1\"\n\
         master_port = 0\n\
         [dist]\ninit_timeout_s = 300\ntimeout_s = 100\nbucket_mb = 25\nverify_layout = true\n\
         [model]\npreset = \"tiny\"\n\
         [data]\ntrain = {:?}\ntokenizer = {:?}\nmax_text_len = 32\n\
         [knowledge]\ndir = {:?}\n\
         [train]\nsteps = 6\nglobal_batch = 8\nseed = 3\nrun_dir = {:?}\nimage_every = 2\n\
         [optim]\nlr = 1e-4\nwarmup = 2\n\
         [checkpoint]\nevery_steps = 3\n",
        inputs.join("synth/pretrain/train"),
        inputs.join("tokenizer.json"),
        inputs.join("knowledge"),
        run,
    );
    std::fs::write(&path, sections).unwrap();
    path
}

/// Waits until the run has logged step `step`.
pub fn wait_for_step(run: &Path, step: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let logged = std::fs::read_to_string(run.join("rank0.jsonl")).unwrap_or_default();
        if logged.lines().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["step"].as_u64() >= Some(step))
        }) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the run in {} never reached step {step}", run.display());
}

/// The pid of the worker of rank `rank` of the run in `run`, if it runs.
pub fn find_worker_pid(run: &Path, rank: usize) -> Option<i32> {
    arl_launcher::bench::faults::worker_pid(run, rank)
}

/// The pid of the worker of rank `rank` of the run in `run`.
///
/// # Panics
/// If there is none.
pub fn worker_pid(run: &Path, rank: usize) -> i32 {
    find_worker_pid(run, rank)
        .unwrap_or_else(|| panic!("no worker of rank {rank} for {}", run.display()))
}

/// The step and model hash of the newest committed checkpoint at `location`.
///
/// # Panics
/// If there is none.
pub fn final_model(location: &Path) -> (u64, String) {
    let latest = arl_checkpoints::Checkpoints::open(&location.to_string_lossy())
        .unwrap()
        .latest()
        .unwrap()
        .expect("a committed checkpoint");
    (latest.state.step, latest.group_hash("model"))
}

/// One line of a pretraining rank's sample log (`[train] log_samples`).
pub struct SampleLine {
    /// The log's file name (`rank<R>.jsonl`).
    pub file: String,
    /// The step.
    pub step: u64,
    /// The token of the world that trained it.
    pub world: String,
    /// The samples, as (shard, item).
    pub ids: Vec<(u64, u64)>,
}

/// Every line of the sample logs in `<run>/samples/` of each of `runs`, file by file.
pub fn sample_lines(runs: &[PathBuf]) -> Vec<SampleLine> {
    let mut lines = Vec::new();
    for run in runs {
        let Ok(files) = std::fs::read_dir(run.join("samples")) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(file.path()).unwrap().lines() {
                let line: Value = serde_json::from_str(line).unwrap();
                lines.push(SampleLine {
                    file: name.clone(),
                    step: line["step"].as_u64().unwrap(),
                    world: line["world"].as_str().unwrap_or_default().to_owned(),
                    ids: line["samples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| (s[0].as_u64().unwrap(), s[1].as_u64().unwrap()))
                        .collect(),
                });
            }
        }
    }
    lines
}

/// `arl check` of [`pretrain_config`] (in a fresh folder `name`) with `--set` values `sets`:
/// whether it passed, and its standard error.
pub fn check_pretrain_config(name: &str, sets: &[String]) -> (bool, String) {
    let run = crate::scratch_dir(name);
    let mut command = std::process::Command::new(crate::release_binary("arl"));
    command.arg("check").arg(pretrain_config(&run));
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .expect("starting arl check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exports the model weights of the newest checkpoint of the run in `run` with `arl ckpt
/// export` to `<run>/weights.safetensors`; returns that path.
pub fn export_model(run: &Path) -> PathBuf {
    let file = run.join("weights.safetensors");
    crate::arl_ok(&[
        "ckpt",
        "export",
        &run.join("checkpoints").to_string_lossy(),
        "--output",
        &file.to_string_lossy(),
    ]);
    file
}
