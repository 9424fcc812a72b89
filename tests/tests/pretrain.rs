//! `arl pretrain` end to end on the synthetic benchmark with two CPU workers: the four losses
//! fall, the ranks stay identical (the run checks its parameter checksum across ranks and
//! would stop), and a run stopped at step 3 and resumed continues with exactly the losses of a
//! straight run, bit for bit.

use std::path::{Path, PathBuf};

use arl_tests::{arl_ok, scratch_dir, workspace_root};
use serde_json::Value;

/// The synthetic corpus, its tokenizer and its knowledge, in `dir`.
fn inputs(dir: &Path) {
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
}

/// A two-rank job config whose run folder is `run`.
fn config(dir: &Path, run: &str) -> PathBuf {
    let path = dir.join(format!("{run}.toml"));
    let sections = format!(
        "[launch]\nnproc_per_node = 2\nbackend = \"gloo\"\nmaster_addr = \"127.0.0.1\"\n\
         master_port = 0\n\
         [dist]\ninit_timeout_s = 300\ntimeout_s = 100\nbucket_mb = 25\nverify_layout = true\n\
         [model]\npreset = \"tiny\"\n\
         [data]\ntrain = {:?}\ntokenizer = {:?}\nmax_text_len = 32\n\
         [knowledge]\ndir = {:?}\n\
         [train]\nsteps = 6\nglobal_batch = 8\nseed = 3\nrun_dir = {:?}\n\
         [optim]\nlr = 1e-4\nwarmup = 2\n\
         [checkpoint]\nevery_steps = 3\n",
        dir.join("synth/pretrain/train"),
        dir.join("tokenizer.json"),
        dir.join("knowledge"),
        dir.join(run),
    );
    std::fs::write(&path, sections).unwrap();
    path
}

/// The step lines of a run's rank-0 log.
fn steps(dir: &Path, run: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(run).join("rank0.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .collect()
}

/// What must agree bit for bit between two runs.
fn trajectory(step: &Value) -> Vec<u64> {
    ["loss", "mlm", "mim", "itm", "align", "grad_norm", "lr"]
        .iter()
        .map(|k| step[k].as_f64().unwrap().to_bits())
        .collect()
}

#[test]
fn two_workers_pretrain_and_a_resumed_run_matches_a_straight_one_bit_for_bit() {
    let dir = scratch_dir("pretrain");
    inputs(&dir);

    arl_ok(&["pretrain", &config(&dir, "straight").to_string_lossy()]);
    let straight = steps(&dir, "straight");
    assert_eq!(straight.len(), 6);
    let first = straight[0]["loss"].as_f64().unwrap();
    let last = straight[5]["loss"].as_f64().unwrap();
    assert!(last < first, "loss {first} -> {last}");

    let resumed_config = config(&dir, "resumed");
    let out = arl_ok(&[
        "pretrain",
        &resumed_config.to_string_lossy(),
        "--stop-at",
        "3",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("step 3:"));
    let out = arl_ok(&["pretrain", &resumed_config.to_string_lossy()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"resumed\":3"));
    let resumed = steps(&dir, "resumed");
    assert_eq!(resumed.len(), 3, "{resumed:?}");
    for (straight, resumed) in straight[3..].iter().zip(&resumed) {
        assert_eq!(straight["step"], resumed["step"]);
        assert_eq!(
            trajectory(straight),
            trajectory(resumed),
            "step {}: {straight} vs {resumed}",
            straight["step"]
        );
    }
    let list = arl_ok(&[
        "ckpt",
        "list",
        &dir.join("resumed/checkpoints").to_string_lossy(),
    ]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("3  committed") && list.contains("6  committed"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
