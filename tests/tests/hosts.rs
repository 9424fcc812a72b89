//! Pretraining across "hosts": network namespaces joined by a bridge, each its own network
//! stack and address (tests/src/hosts.rs). Every node binds and advertises its own address
//! (before, every worker bound `master_addr`, so a second host's ranks could not start):
//! - two hosts started with the CLI flags (one naming its address, one finding it);
//! - three hosts started with a SLURM job step's variables (the master's name resolved through
//!   each host's /etc/hosts, the port derived from the job id);
//!
//! each finishes with final weights bit-identical to the same world on one host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arl_tests::hosts::Hosts;
use arl_tests::{final_model, pretrain_config, release_binary, sample_lines, scratch_dir};

/// One thread per rank everywhere: the same arithmetic whatever the ranks per host.
const THREADS: (&str, &str) = ("OMP_NUM_THREADS", "1");

/// The run on one host: `ranks` workers, `sets` overrides.
fn one_host(name: &str, ranks: usize, sets: &[&str]) -> (u64, String) {
    let run = scratch_dir(name);
    let config = pretrain_config(&run);
    let mut args = vec![
        "pretrain".to_owned(),
        config.to_string_lossy().into_owned(),
        "--nproc-per-node".to_owned(),
        ranks.to_string(),
    ];
    for set in sets {
        args.extend(["--set".to_owned(), (*set).to_owned()]);
    }
    let out = Command::new(release_binary("arl"))
        .args(&args)
        .env(THREADS.0, THREADS.1)
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    final_model(&run.join("checkpoints"))
}

/// Node `node`'s `arl pretrain` on `hosts`, with its own run folder and the shared checkpoint
/// location.
fn node(hosts: &Hosts, node: usize, name: &str, shared: &Path, sets: &[&str]) -> Command {
    let run: PathBuf = scratch_dir(&format!("{name}-node{node}"));
    let config = pretrain_config(&run);
    let mut command = hosts.command(node, &release_binary("arl"));
    command
        .args(["pretrain", config.to_str().unwrap()])
        .args(["--nproc-per-node", "1"])
        .arg("--set")
        .arg(format!(
            "checkpoint.location={:?}",
            shared.to_string_lossy()
        ))
        .env(THREADS.0, THREADS.1)
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for set in sets {
        command.args(["--set", set]);
    }
    command
}

fn wait_all(children: Vec<std::process::Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn assert_success(outputs: &[Output]) {
    for (node, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn two_hosts_from_the_cli_flags_train_as_one_host_does() {
    let hosts = Hosts::new(2);
    let shared = scratch_dir("hosts2-shared");
    let master = hosts.addr(0);
    let children = (0..2)
        .map(|i| {
            node(&hosts, i, "hosts2", &shared, &[])
                .args(["--nnodes", "2", "--node-rank", &i.to_string()])
                .args(["--master-addr", &master, "--master-port", "29500"])
                .args(["--set", "launch.slurm=false"])
                // Node 1 names its address; node 0 finds its own.
                .args(if i == 1 {
                    vec!["--node-addr", "10.99.0.2"]
                } else {
                    vec![]
                })
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = wait_all(children);
    assert_success(&outputs);
    let stderr = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(stderr.contains("node 0 of 2, world 2"), "{stderr}");
    assert_eq!(final_model(&shared), one_host("hosts2-alone", 2, &[]));
}

#[test]
fn three_hosts_from_a_slurm_job_step_train_as_one_host_does() {
    let hosts = Hosts::new(3);
    let shared = scratch_dir("hosts3-shared");
    let sets = ["train.global_batch=12"];
    let children = (0..3)
        .map(|i| {
            node(&hosts, i, "hosts3", &shared, &sets)
                .envs([
                    ("SLURM_JOB_ID", "4242"),
                    ("SLURM_STEP_ID", "0"),
                    ("SLURM_STEP_NUM_NODES", "3"),
                    ("SLURM_STEP_NODELIST", "arl-host[0-2]"),
                ])
                .env("SLURM_NODEID", i.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = wait_all(children);
    assert_success(&outputs);
    let stderr = String::from_utf8_lossy(&outputs[2].stderr);
    assert!(stderr.contains("node 2 of 3, world 3"), "{stderr}");
    assert_eq!(final_model(&shared), one_host("hosts3-alone", 3, &sets));
}

/// `arl pretrain` of two hosts, 30 steps with a checkpoint every 5, ready to restart.
const LOSS_SETS: [&str; 7] = [
    "train.steps=30",
    "checkpoint.every_steps=5",
    "launch.restart_backoff_s=0.2",
    "dist.init_timeout_s=120",
    "dist.timeout_s=8",
    "data.storage_wait_s=4",
    "launch.slurm=false",
];

fn two_node_command(hosts: &Hosts, i: usize, name: &str, shared: &Path) -> Command {
    let mut command = node(hosts, i, name, shared, &LOSS_SETS);
    command
        .args(["--nnodes", "2", "--node-rank", &i.to_string()])
        .args(["--master-addr", &hosts.addr(0), "--master-port", "29500"]);
    command
}

/// The run folder `scratch_dir(name)` made.
fn run_folder(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("arl-{name}-{}", std::process::id()))
}

/// Waits until `path` exists.
fn wait_for(path: &Path, what: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    Instant::now()
}

#[test]
fn a_lost_host_is_named_and_the_job_resumes_when_it_returns() {
    let hosts = Hosts::new(2);
    let shared = scratch_dir("hostloss-shared");
    let node0 = two_node_command(&hosts, 0, "hostloss", &shared)
        .spawn()
        .unwrap();
    let node1 = two_node_command(&hosts, 1, "hostloss", &shared)
        .spawn()
        .unwrap();
    arl_tests::wait_for_step(&run_folder("hostloss-node0"), 8);
    hosts.kill(1);
    let _ = node1.wait_with_output();
    let killed = Instant::now();
    let decided = wait_for(&shared.join("restarts/round-1.json"), "a restart");
    assert!(
        decided - killed < Duration::from_secs(5),
        "{:?}",
        decided - killed
    );
    // Node 1 comes back after node 0 has seen it silent.
    std::thread::sleep(Duration::from_secs(5));
    let node1 = two_node_command(&hosts, 1, "hostloss-back", &shared)
        .spawn()
        .unwrap();
    let outputs = wait_all(vec![node0, node1]);
    assert_success(&outputs);
    let stderr = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(stderr.contains("arl: lost node 1 (silent for"), "{stderr}");
    assert_eq!(
        final_model(&shared),
        one_host("hostloss-alone", 2, &LOSS_SETS[..2])
    );
}

#[test]
fn a_cut_link_is_detected_within_the_collective_timeout_and_healed() {
    let hosts = Hosts::new(2);
    let shared = scratch_dir("linkcut-shared");
    let children: Vec<_> = (0..2)
        .map(|i| {
            two_node_command(&hosts, i, "linkcut", &shared)
                .spawn()
                .unwrap()
        })
        .collect();
    arl_tests::wait_for_step(&run_folder("linkcut-node0"), 8);
    hosts.link(1, false);
    let cut = Instant::now();
    let decided = wait_for(&shared.join("restarts/round-1.json"), "a restart");
    // dist.timeout_s = 8 in a collective, and a few seconds to spare.
    assert!(
        decided - cut < Duration::from_secs(14),
        "{:?}",
        decided - cut
    );
    std::thread::sleep(Duration::from_secs(3));
    hosts.link(1, true);
    let outputs = wait_all(children);
    assert_success(&outputs);
    let stderr = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(
        stderr.contains("restart 1 of 3") || stderr.contains("started round 1"),
        "{stderr}"
    );
    // Node 0 names node 1 unreachable, not lost: its launcher kept beating on the folder.
    assert!(
        stderr.contains("arl: node 1 (silent for")
            && stderr.contains("unreachable over the network"),
        "{stderr}"
    );
    assert_eq!(
        final_model(&shared),
        one_host("linkcut-alone", 2, &LOSS_SETS[..2])
    );
}

/// Per step, the sorted samples of the last world that trained it (`lead`'s log decides which
/// world that was: rank 0 is in every world).
fn samples_that_counted(lead: &Path, runs: &[PathBuf]) -> Vec<Vec<(u64, u64)>> {
    let lead_lines = sample_lines(&[lead.to_owned()]);
    let all = sample_lines(runs);
    let last_step = lead_lines.iter().map(|l| l.step).max().unwrap();
    (1..=last_step)
        .map(|step| {
            let world = &lead_lines
                .iter()
                .rev()
                .find(|l| l.step == step)
                .unwrap()
                .world;
            let mut ids: Vec<(u64, u64)> = all
                .iter()
                .filter(|l| l.step == step && &l.world == world)
                .flat_map(|l| l.ids.clone())
                .collect();
            ids.sort_unstable();
            ids
        })
        .collect()
}

fn round_members(shared: &Path, round: u32) -> Vec<u64> {
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(shared.join(format!("restarts/round-{round}.json"))).unwrap(),
    )
    .unwrap();
    record["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .collect()
}

#[test]
fn a_lost_host_is_left_behind_and_admitted_again_at_the_next_restart() {
    let sets = [
        "train.steps=40",
        "checkpoint.every_steps=5",
        "train.log_samples=true",
        "launch.restart_backoff_s=0.2",
        "launch.rejoin_timeout_s=3",
        "dist.timeout_s=8",
        "data.storage_wait_s=4",
        "launch.slurm=false",
    ];
    let hosts = Hosts::new(2);
    let shared = scratch_dir("elastic-shared");
    let start = |i: usize, name: &str| {
        node(&hosts, i, name, &shared, &sets)
            .args(["--nnodes", "1:2", "--node-rank", &i.to_string()])
            .args(["--master-addr", &hosts.addr(0), "--master-port", "29500"])
            .spawn()
            .unwrap()
    };
    let node0 = start(0, "elastic");
    let node1 = start(1, "elastic");
    let lead = run_folder("elastic-node0");
    arl_tests::wait_for_step(&lead, 8);
    hosts.kill(1);
    let _ = node1.wait_with_output();
    // After the rejoin timeout node 0 goes on alone, as a world of one.
    wait_for(&shared.join("restarts/round-1.json"), "the shrink");
    assert_eq!(round_members(&shared, 1), [0]);
    let shrunk = arl_tests::step_reports(&lead).len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arl_tests::step_reports(&lead).len() < shrunk + 3 {
        assert!(Instant::now() < deadline, "the smaller world never stepped");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Node 1 comes back and waits; the next restart (a killed worker) admits it.
    let back = start(1, "elastic-back");
    std::thread::sleep(Duration::from_secs(2));
    let pid = arl_tests::find_worker_pid(&lead, 0).expect("node 0's worker");
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let outputs = wait_all(vec![node0, back]);
    assert_success(&outputs);
    assert_eq!(round_members(&shared, 2), [0, 1]);
    let stderr = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(
        stderr.contains(
            "did not return within launch.rejoin_timeout_s; the world goes on with nodes [0]"
        ),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&outputs[1].stderr);
    assert!(
        stderr.contains("waits to be admitted at the next restart"),
        "{stderr}"
    );
    // Every step trained exactly the samples an uninterrupted run of two ranks trains.
    let straight = scratch_dir("elastic-straight");
    let config = pretrain_config(&straight);
    let out = Command::new(release_binary("arl"))
        .args(["pretrain", config.to_str().unwrap()])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let runs = [
        lead.clone(),
        run_folder("elastic-node1"),
        run_folder("elastic-back-node1"),
    ];
    let expected = samples_that_counted(&straight, std::slice::from_ref(&straight));
    assert_eq!(expected.len(), 40);
    assert_eq!(samples_that_counted(&lead, &runs), expected);
}
