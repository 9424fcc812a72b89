//! `cluster/slurm/pretrain.sbatch` on a real SLURM controller: slurmctld and two emulated
//! nodes' slurmd on this machine (`cluster/slurm/local-cluster.sh`), jobs submitted with
//! `sbatch`, shortened through the environment (`CONFIG`, `ARL_ARGS`) and the command line:
//! - a normal job completes;
//! - a preemption warning (`scancel --signal=USR1 --batch`) checkpoints at the step boundary,
//!   the script requeues the job, and the requeued job resumes and finishes with the weights of
//!   the uninterrupted job;
//! - a worker killed inside the allocation is restarted by the restart policy, and the job
//!   completes (the allocation is kept);
//! - a job step over two emulated nodes trains as one node does, and is preempted, requeued
//!   and resumed alike.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arl_tests::{
    final_model, pretrain_config, release_binary, scratch_dir, wait_for_step, workspace_root,
};

/// The cluster's config, started once for this test binary.
fn slurm_conf() -> &'static str {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        // One cluster per machine (its ports are fixed): starting it stops the previous one.
        let dir = std::env::temp_dir().join("arl-slurm");
        let out = Command::new(workspace_root().join("cluster/slurm/local-cluster.sh"))
            .args(["start", "2"])
            .env("ARL_SLURM_DIR", &dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting SLURM: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("slurm.conf").to_string_lossy().into_owned()
    })
}

/// A SLURM client command.
fn slurm(program: &str) -> Command {
    let mut command = Command::new("timeout");
    command
        .args(["60", program])
        .env("SLURM_CONF", slurm_conf());
    command
}

fn text(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Steps of every job here.
const STEPS: &str = "60";

/// Submits the sbatch script for a run in `run` on `nodes` nodes; returns the job id.
fn submit(run: &Path, nodes: usize, ranks_per_node: usize) -> String {
    let config = pretrain_config(run);
    let args = format!(
        "--set launch.backend=gloo --set launch.nproc_per_node={ranks_per_node} \
         --set train.steps={STEPS} --set checkpoint.every_steps=5 \
         --set launch.restart_backoff_s=0.2"
    );
    text(
        slurm("sbatch")
            .args(["--parsable", &format!("--nodes={nodes}")])
            .args(["--gpus-per-node=0", "--cpus-per-task=1", "--time=10"])
            .arg(format!("--output={}/slurm-%j.out", run.display()))
            .arg(format!("--chdir={}", workspace_root().display()))
            .arg(workspace_root().join("cluster/slurm/pretrain.sbatch"))
            .env("CONFIG", &config)
            .env("ARL_BIN", release_binary("arl"))
            .env("ARL_ARGS", args)
            .env("OMP_NUM_THREADS", "1")
            .env("TORCH_CPP_LOG_LEVEL", "ERROR"),
    )
}

/// A field of `scontrol show job ID`.
fn job_field(id: &str, field: &str) -> String {
    let shown = text(slurm("scontrol").args(["show", "job", "-o", id]));
    shown
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .unwrap_or_default()
        .to_owned()
}

/// Waits until job `id` has ended; returns its final state.
fn wait_ended(id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let state = job_field(id, "JobState");
        if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"].contains(&state.as_str()) {
            return state;
        }
        assert!(Instant::now() < deadline, "job {id} still {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_log(run: &Path, id: &str) -> String {
    std::fs::read_to_string(run.join(format!("slurm-{id}.out"))).unwrap_or_default()
}

/// The uninterrupted job on one node with two ranks: its final weights.
fn uninterrupted() -> &'static (u64, String) {
    static DONE: OnceLock<(u64, String)> = OnceLock::new();
    DONE.get_or_init(|| {
        let run = scratch_dir("slurm-straight");
        let id = submit(&run, 1, 2);
        assert_eq!(wait_ended(&id), "COMPLETED", "{}", job_log(&run, &id));
        final_model(&run.join("checkpoints"))
    })
}

/// Preempts a job of `nodes` × `ranks_per_node` ranks after step 5; checks it checkpointed,
/// was requeued, resumed and ended with the uninterrupted job's weights.
fn preempt(name: &str, nodes: usize, ranks_per_node: usize) {
    let run = scratch_dir(name);
    let id = submit(&run, nodes, ranks_per_node);
    wait_for_step(&run, 5);
    text(slurm("scancel").args(["--signal=USR1", "--batch", &id]));
    assert_eq!(wait_ended(&id), "COMPLETED", "{}", job_log(&run, &id));
    assert_eq!(job_field(&id, "Restarts"), "1");
    let events = std::fs::read_to_string(run.join("rank0.jsonl")).unwrap();
    assert!(
        events.contains(r#""event":"stopped""#) && events.contains(r#""signal":"SIGUSR1""#),
        "{events}"
    );
    assert!(events.contains(r#""event":"resumed""#), "{events}");
    assert_eq!(&final_model(&run.join("checkpoints")), uninterrupted());
}

#[test]
fn a_preempted_job_checkpoints_requeues_and_ends_as_an_uninterrupted_one() {
    preempt("slurm-preempt", 1, 2);
}

#[test]
fn a_preempted_job_over_two_nodes_does_the_same() {
    preempt("slurm-preempt-two-nodes", 2, 1);
}

#[test]
fn a_worker_killed_inside_the_allocation_is_restarted_and_the_job_completes() {
    let run = scratch_dir("slurm-kill");
    let id = submit(&run, 1, 2);
    wait_for_step(&run, 5);
    let pid = arl_tests::worker_pid(&run, 1);
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(wait_ended(&id), "COMPLETED", "{}", job_log(&run, &id));
    assert_eq!(job_field(&id, "Restarts"), "0", "the allocation was kept");
    assert!(run.join("restarts/round-1.json").exists());
    assert_eq!(&final_model(&run.join("checkpoints")), uninterrupted());
}

#[test]
fn a_job_step_over_two_nodes_trains_as_one_node_does() {
    let run: PathBuf = scratch_dir("slurm-two-nodes");
    let id = submit(&run, 2, 1);
    assert_eq!(wait_ended(&id), "COMPLETED", "{}", job_log(&run, &id));
    assert_eq!(job_field(&id, "NodeList"), "node[1-2]");
    assert_eq!(&final_model(&run.join("checkpoints")), uninterrupted());
}
