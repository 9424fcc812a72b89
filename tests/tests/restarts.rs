//! Runs that survive failures, with real processes and real signals:
//! - `arl bench chaos` (shortened): a rank killed mid-step, rank 0 killed while it writes a
//!   checkpoint and a rank stopped with SIGSTOP are each recovered, the stopped rank is named
//!   by the watchdog, and the final weights equal an undisturbed run's bit for bit;
//! - two nodes (two launchers, separate run folders, a shared checkpoint location) restart
//!   together after a rank of one dies, counting one restart between them;
//! - the restart budget spent ends the run with exit code 4, naming the failed rank;
//! - a failure before the first completed step is not retried (exit code 3);
//! - ranks that would resume from different checkpoints stop before a step, each one named;
//! - a run checkpointed on 2 ranks resumes on 1 and on 3, and every step trains the samples
//!   an uninterrupted 2-rank run trains.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arl_tests::{
    arl_ok, find_worker_pid, free_port, pretrain_config, release_binary, scratch_dir,
    wait_for_step, worker_pid,
};
use serde_json::Value;

fn kill(signal: &str, pid: i32) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `arl pretrain` on the test config of `run` with `--set` overrides, started.
fn start_pretrain(run: &Path, sets: &[&str]) -> std::process::Child {
    let config = pretrain_config(run);
    let mut command = Command::new(release_binary("arl"));
    command.args(["pretrain", config.to_str().unwrap()]);
    for set in sets {
        command.args(["--set", set]);
    }
    command
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting arl")
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn chaos_kills_mid_step_and_mid_checkpoint_and_a_stop_are_recovered_bit_identically() {
    let dir = scratch_dir("chaos");
    let out = arl_ok(&[
        "bench",
        "chaos",
        "--kills",
        "2",
        "--steps",
        "60",
        "--every",
        "5",
        "--scenes",
        "60",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("chaos failures=3 recovered=3 identical=true "),
        "{stdout}\n{stderr}"
    );
    // The second kill waits for a checkpoint write; the first, at a random moment, may land in
    // one too.
    let in_write: u32 = stdout
        .split("kills_in_checkpoint_write=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((1..=2).contains(&in_write), "{stdout}\n{stderr}");
    // The stopped rank is the one the watchdog names, with its process stopped.
    let stop = stderr
        .lines()
        .find(|l| l.contains("arl bench chaos: SIGSTOP rank"))
        .expect("the stop is reported");
    let rank = &stop["arl bench chaos: SIGSTOP rank ".len()..][..1];
    assert!(
        stop.contains(&format!(
            "(rank {rank} stalled: no progress past the watchdog's limit"
        )),
        "{stop}"
    );
    assert!(stop.contains("its process stopped"), "{stop}");
    // Every failure left its flight record: each rank's last collectives.
    let record: Value = serde_json::from_slice(
        &std::fs::read(dir.join("chaos/logs/collectives.round0.json")).unwrap(),
    )
    .unwrap();
    let ranks = record["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert!(!ranks[0]["collectives"].as_array().unwrap().is_empty());
}

#[test]
fn two_nodes_restart_together_and_count_one_restart() {
    let shared = scratch_dir("two-node-restart-shared");
    let runs = [
        scratch_dir("two-node-restart-0"),
        scratch_dir("two-node-restart-1"),
    ];
    let port = free_port().to_string();
    let nodes: Vec<std::process::Child> = runs
        .iter()
        .enumerate()
        .map(|(node, run)| {
            let config = pretrain_config(run);
            Command::new(release_binary("arl"))
                .args(["pretrain", config.to_str().unwrap()])
                .args(["--nproc-per-node", "1", "--nnodes", "2"])
                .args(["--node-rank", &node.to_string(), "--master-port", &port])
                .args(["--set", "launch.slurm=false", "--set", "train.steps=30"])
                .args(["--set", "checkpoint.every_steps=5"])
                .args(["--set", "launch.restart_backoff_s=0.2"])
                .arg("--set")
                .arg(format!(
                    "checkpoint.location={:?}",
                    shared.to_string_lossy()
                ))
                .env("TORCH_CPP_LOG_LEVEL", "ERROR")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_for_step(&runs[0], 6);
    kill("KILL", worker_pid(&runs[1], 1));
    for (node, child) in nodes.into_iter().enumerate() {
        let (code, stderr) = finish(child);
        assert_eq!(code, Some(0), "node {node}: {stderr}");
        // One node claims the round; the other claims it too late, or sees it and joins.
        assert!(
            stderr.contains("restart 1 of 3") || stderr.contains("another node started round 1"),
            "node {node}: {stderr}"
        );
    }
    let rounds: Vec<String> = std::fs::read_dir(shared.join("restarts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("round-"))
        .collect();
    assert_eq!(rounds, ["round-1.json"]);
    assert_eq!(arl_tests::committed_steps(&shared).last(), Some(&30));
}

#[test]
fn a_spent_restart_budget_ends_the_run_with_exit_code_4_naming_the_rank() {
    let run = scratch_dir("restart-budget");
    let child = start_pretrain(
        &run,
        &[
            "train.steps=400",
            "checkpoint.every_steps=2",
            "launch.max_restarts=1",
            "launch.restart_backoff_s=0.1",
        ],
    );
    wait_for_step(&run, 2);
    kill("KILL", worker_pid(&run, 1));
    // The world restarts once (round 1) and steps again; the second kill spends the budget.
    let round = run.join("restarts/round-1.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !round.exists() {
        assert!(Instant::now() < deadline, "no restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    let record: Value = serde_json::from_slice(&std::fs::read(&round).unwrap()).unwrap();
    assert_eq!(record["rank"], 1, "{record}");
    // The restarted world commits a checkpoint that records its restart count.
    let deadline = Instant::now() + Duration::from_secs(120);
    while newest_manifest(&run)["state"]["extra"]["restarts"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the restarted world never checkpointed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill("KILL", worker_pid(&run, 1));
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("restart 1 of 1: every rank resumes from the newest committed checkpoint"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "rank 1 of 2 failed (signal: 9 (SIGKILL)); the other ranks were stopped. It wrote \
             nothing on standard error."
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("(restarts used: 1 of launch.max_restarts = 1)"),
        "{stderr}"
    );
    // So does the restarted world's start event.
    let log = std::fs::read_to_string(run.join("rank0.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"event\":\"start\"") && l.contains("\"restart\":1")),
        "{log}"
    );
}

/// The manifest of the newest committed checkpoint of the run in `run` (null before one).
fn newest_manifest(run: &Path) -> Value {
    let Some(newest) = arl_tests::committed_steps(&run.join("checkpoints")).pop() else {
        return Value::Null;
    };
    let path = run.join(format!("checkpoints/step-{newest:012}/manifest.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_failure_before_the_first_step_is_not_retried() {
    let run = scratch_dir("restart-startup");
    let child = start_pretrain(&run, &["train.steps=40"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(pid) = find_worker_pid(&run, 1) {
            break pid;
        }
        assert!(Instant::now() < deadline, "rank 1 never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    kill("KILL", pid);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("before the first completed step: not retried"),
        "{stderr}"
    );
    assert!(!run.join("restarts/round-1.json").exists());
    // A config the check refuses is a start-up failure too.
    let config = pretrain_config(&run);
    let out = Command::new(release_binary("arl"))
        .args(["pretrain", config.to_str().unwrap()])
        .args(["--set", "launch.hang_margin_s=-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("launch.hang_margin_s"));
}

#[test]
fn ranks_that_would_resume_from_different_checkpoints_stop_before_a_step() {
    // Node 0's folder has a checkpoint at step 3; node 1's has none (no shared storage).
    let node0 = scratch_dir("disagree-node0");
    let node1 = scratch_dir("disagree-node1");
    let config0 = pretrain_config(&node0);
    arl_ok(&[
        "pretrain",
        config0.to_str().unwrap(),
        "--nproc-per-node",
        "1",
        "--stop-at",
        "3",
    ]);
    let config1 = pretrain_config(&node1);
    let port = free_port().to_string();
    let start = |config: &Path, node: &str| {
        Command::new(release_binary("arl"))
            .args(["pretrain", config.to_str().unwrap()])
            .args([
                "--nproc-per-node",
                "1",
                "--nnodes",
                "2",
                "--node-rank",
                node,
            ])
            .args(["--master-port", &port, "--set", "launch.slurm=false"])
            // One run by name, though the nodes share no storage.
            .args(["--set", "launch.run_id=\"disagree\""])
            .env("TORCH_CPP_LOG_LEVEL", "ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(&config0, "0"), start(&config1, "1"));
    let outputs: Vec<Output> = [a, b]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
    }
    let stderr = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(
        stderr.contains("the ranks do not resume job pretrain from the same checkpoint: rank 0 from step 3 (config"),
        "{stderr}"
    );
    assert!(stderr.contains("rank 1 from the start"), "{stderr}");
    // Nothing was written: node 0's newest checkpoint is still step 3.
    assert_eq!(
        arl_tests::committed_steps(&node0.join("checkpoints")).last(),
        Some(&3)
    );
}

/// The samples of every step of a run's sample logs: step → sorted (shard, item) of all ranks
/// (a step's last line per rank counts).
fn samples_by_step(run: &Path) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut by_rank_step: BTreeMap<(String, u64), Vec<(u64, u64)>> = BTreeMap::new();
    for line in arl_tests::sample_lines(&[run.to_owned()]) {
        by_rank_step.insert((line.file, line.step), line.ids);
    }
    let mut by_step: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for ((_, step), ids) in by_rank_step {
        by_step.entry(step).or_default().extend(ids);
    }
    for ids in by_step.values_mut() {
        ids.sort_unstable();
    }
    by_step
}

#[test]
fn a_run_checkpointed_on_two_ranks_resumes_on_one_and_on_three_with_the_same_samples() {
    let sets = [
        "--set",
        "train.global_batch=12",
        "--set",
        "train.log_samples=true",
    ];
    let straight = scratch_dir("elastic-straight");
    let config = pretrain_config(&straight);
    arl_ok(&[&["pretrain", config.to_str().unwrap()], &sets[..]].concat());
    let expected = samples_by_step(&straight);
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    for ids in expected.values() {
        assert_eq!(ids.len(), 12);
        assert!(
            ids.windows(2).all(|w| w[0] != w[1]),
            "a sample twice in a step"
        );
    }

    let first = scratch_dir("elastic-2-to-1");
    let config = pretrain_config(&first);
    arl_ok(
        &[
            &["pretrain", config.to_str().unwrap(), "--stop-at", "3"],
            &sets[..],
        ]
        .concat(),
    );
    // The same checkpoint, copied, resumes on three ranks.
    let second = scratch_dir("elastic-2-to-3");
    let copied = Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", first.display()),
            second.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    for (run, ranks) in [(&first, "1"), (&second, "3")] {
        let config = pretrain_config(run);
        let out = arl_ok(
            &[
                &[
                    "pretrain",
                    config.to_str().unwrap(),
                    "--nproc-per-node",
                    ranks,
                ],
                &sets[..],
            ]
            .concat(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("resumed at step 3"), "{stderr}");
        assert_eq!(samples_by_step(run), expected, "2 ranks, then {ranks}");
        let logs = std::fs::read_dir(run.join("samples")).unwrap().count();
        assert_eq!(logs, 2.max(ranks.parse().unwrap()));
    }
}
