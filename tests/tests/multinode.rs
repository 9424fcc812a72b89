//! Two "nodes" on one machine, as a cloud run without a shared file system: each node's `arl
//! run` has its own run folder, and only the checkpoint location is shared. Pretraining and
//! the fine-tunes (checkpoints, result) keep their state there, so every node resumes, tests
//! the same best epoch and skips finished jobs alike. (Before, a node other than 0 failed `arl
//! run`'s preflight, found no best weights, and judged finished jobs by its own folder.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arl_tests::{SMALL_PIPELINE, free_port, release_binary, scratch_dir};

/// `arl ARGS` on node `node` of two, with run folder `run` and the shared checkpoint location
/// (`ARGS`: the subcommand, then overrides that win over this file's small pipeline).
fn node(args: &[&str], node: usize, run: &Path, shared: &Path, port: u16) -> Command {
    let mut command = Command::new(release_binary("arl"));
    command.arg(args[0]);
    for set in [
        format!("train.run_dir={:?}", run.to_string_lossy()),
        format!("checkpoint.location={:?}", shared.to_string_lossy()),
        "launch.nproc_per_node=1".to_owned(),
        "launch.nnodes=2".to_owned(),
        format!("launch.node_rank={node}"),
        format!("launch.master_port={port}"),
        "pipeline.jobs=[\"pretrain\", \"vqa\", \"irtr\"]".to_owned(),
    ]
    .iter()
    .map(String::as_str)
    .chain(SMALL_PIPELINE)
    {
        command.args(["--set", set]);
    }
    command.args(&args[1..]);
    command
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `arl ARGS` on both nodes at once; returns their outputs after checking that both
/// succeeded.
fn both(args: &[&str], runs: &[PathBuf; 2], shared: &Path) -> [Output; 2] {
    let port = free_port();
    let children = [0, 1].map(|i| {
        node(args, i, &runs[i], shared, port)
            .spawn()
            .expect("starting arl")
    });
    children.map(|child| {
        let out = child.wait_with_output().expect("waiting for arl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    })
}

/// The results table without its title line (which names the node's run folder).
fn table(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn two_nodes_without_a_shared_run_folder_fine_tune_and_skip_alike() {
    let root = scratch_dir("multinode");
    let runs = [root.join("node0"), root.join("node1")];
    let shared = root.join("shared");

    let first = both(&["run"], &runs, &shared);
    assert!(table(&first[0]).contains("| vqa |"), "{}", table(&first[0]));
    assert_eq!(table(&first[0]), table(&first[1]));
    for job in ["vqa", "irtr"] {
        let state = shared.join("finetune").join(job);
        assert!(state.join("result.json").is_file(), "{job}");
        assert!(state.join("checkpoints").is_dir(), "{job}");
        // Node 0's folder has its copy of the result; neither has checkpoints of its own.
        assert!(
            runs[0]
                .join("finetune")
                .join(job)
                .join("result.json")
                .is_file()
        );
        for run in &runs {
            assert!(!run.join("finetune").join(job).join("checkpoints").exists());
        }
    }
    // The best epoch's checkpoint, which the test split was evaluated on, is kept there.
    let vqa = shared.join("finetune/vqa");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vqa.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["selected"]["rule"], "best validation epoch");
    let best = result["selected"]["step"].as_u64().unwrap();
    assert!(
        vqa.join(format!("checkpoints/step-{best:012}/COMMITTED"))
            .is_file(),
        "{result}"
    );
    assert!(!runs[1].join("checkpoints").exists());

    // Both nodes see every job as done, and print the same table again.
    let again = both(&["run"], &runs, &shared);
    for out in &again {
        let log = String::from_utf8_lossy(&out.stderr);
        for line in [
            "pretraining is complete (step 4); skipped",
            "fine-tune vqa is complete; skipped",
            "fine-tune irtr is complete; skipped",
        ] {
            assert!(log.contains(line), "{line}: {log}");
        }
        assert_eq!(table(out), table(&first[0]));
    }

    // A fine-tune stopped on both nodes resumes on both from the shared checkpoint.
    both(
        &["finetune", "--job", "cls", "--stop-at", "3"],
        &runs,
        &shared,
    );
    let resumed = both(&["finetune", "--job", "cls"], &runs, &shared);
    let log = String::from_utf8_lossy(&resumed[0].stderr);
    assert!(log.contains("resumed at step 3"), "{log}");
    // The nodes' run folders differ; the job's config does not.
    for out in &resumed {
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains("with a different config"), "{log}");
    }
    assert!(log.contains("arl finetune: cls done: accuracy"), "{log}");
    assert!(shared.join("finetune/cls/result.json").is_file());
}

#[test]
fn an_ablation_on_two_nodes_keeps_each_variant_in_the_shared_location() {
    let root = scratch_dir("multinode-ablate");
    let runs = [root.join("node0"), root.join("node1")];
    let shared = root.join("shared");
    let outs = both(
        &[
            "ablate",
            "--set",
            "pipeline.jobs=[\"pretrain\", \"cls\"]",
            "--set",
            "train.steps=2",
            "--set",
            "checkpoint.every_steps=2",
            "--set",
            "finetune.cls.epochs=1",
        ],
        &runs,
        &shared,
    );
    let tables = outs.map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    assert!(tables[0].contains("| 8 | ✓ | ✓ | ✓ |"), "{}", tables[0]);
    assert_eq!(tables[0], tables[1]);
    assert!(runs[0].join("ablation.md").is_file());
    for variant in ["1", "8", "scratch"] {
        let state = shared.join("ablate").join(variant);
        assert!(
            state.join("finetune/cls/result.json").is_file(),
            "{variant}"
        );
        for run in &runs {
            assert!(
                !run.join("ablate")
                    .join(variant)
                    .join("checkpoints")
                    .exists()
            );
        }
    }
    // From scratch has no pretraining; every other variant pretrained into its own folder.
    assert!(shared.join("ablate/8/step-000000000002").is_dir());
    assert!(!shared.join("ablate/scratch/step-000000000002").exists());
}
