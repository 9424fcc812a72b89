//! Rendezvous safety: every world has a token (job, run, restart round) that rank 0
//! publishes in its store and every rank checks before joining; the group's keys live under it.
//! - a node of another run that reaches a running run's store fails at once, with both tokens
//!   named, and the running run goes on;
//! - a foreign client writing into the store during a run changes nothing: the run finishes
//!   with the weights of an undisturbed one.

use std::path::Path;
use std::process::{Command, Stdio};

use arl_tests::{
    final_model, free_port, pretrain_config, python, release_binary, scratch_dir, wait_for_step,
};

const SETS: [&str; 4] = [
    "train.steps=30",
    "checkpoint.every_steps=5",
    "launch.slurm=false",
    "dist.init_timeout_s=30",
];

/// `arl pretrain` on the test config of `run` with the common overrides and `extra` flags.
fn pretrain(run: &Path, extra: &[&str]) -> Command {
    let config = pretrain_config(run);
    let mut command = Command::new(release_binary("arl"));
    command.args(["pretrain", config.to_str().unwrap()]);
    for set in SETS {
        command.args(["--set", set]);
    }
    command
        .args(extra)
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn a_node_of_another_run_is_refused_by_token_and_the_run_goes_on() {
    let port = free_port().to_string();
    let ours = scratch_dir("rdzv-ours");
    let child = pretrain(&ours, &["--master-port", &port]).spawn().unwrap();
    wait_for_step(&ours, 2);
    // Another run's second node, pointed at our store by mistake.
    let theirs = scratch_dir("rdzv-theirs");
    let out = pretrain(&theirs, &["--nnodes", "2", "--node-rank", "1"])
        .args(["--master-port", &port])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the store belongs to another run (its token "),
        "{stderr}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(final_model(&ours.join("checkpoints")).0, 30);
}

/// A TCPStore client of Python torch that writes 200 keys of its own and reads the run token.
const FOREIGN_CLIENT: &str = r#"
import sys
from datetime import timedelta
import torch.distributed as dist
store = dist.TCPStore("127.0.0.1", int(sys.argv[1]), is_master=False,
                      wait_for_workers=False, timeout=timedelta(seconds=30))
for i in range(200):
    store.set(f"stray/{i}", "x" * 100)
    store.add("stray/counter", 1)
print(store.get("arl/run_token").decode())
"#;

#[test]
fn a_foreign_client_writing_into_the_store_changes_nothing() {
    let undisturbed = scratch_dir("rdzv-undisturbed");
    let out = pretrain(&undisturbed, &[]).output().unwrap();
    assert!(out.status.success());

    let port = free_port().to_string();
    let run = scratch_dir("rdzv-disturbed");
    let child = pretrain(&run, &["--master-port", &port]).spawn().unwrap();
    wait_for_step(&run, 2);
    let client = Command::new(python())
        .args(["-c", FOREIGN_CLIENT, &port])
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    let token = String::from_utf8_lossy(&client.stdout);
    assert_eq!(token.trim().len(), 16, "{token}");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        final_model(&run.join("checkpoints")),
        final_model(&undisturbed.join("checkpoints"))
    );
}
