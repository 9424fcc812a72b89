//! The fine-tunes end to end on the synthetic benchmark with two CPU workers, from one small
//! pretrained model shared by every test (each test works on its own copy of the run folder):
//! - `arl run` fine-tunes VQA, classification and retrieval, writes one results table whose
//!   rows cite their weights, config and data by hash, skips every complete job on a rerun,
//!   and refuses to reuse a result written under another section or a pretraining finished
//!   under another pretraining config;
//! - a fine-tune stopped mid-run resumes to exactly the straight run's losses and result, and
//!   `arl eval` evaluates its selected weights again to the same numbers;
//! - a fine-tune at another resolution interpolates the vision positions, and one can start
//!   from scratch;
//! - a bad `[finetune.NAME]` key is named before any worker starts;
//! - `arl ablate` runs the eight AK/RK/LK combinations and from scratch into one table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use arl_checkpoints::Checkpoints;
use arl_tests::{
    SMALL_PIPELINE, arl_ok, committed_steps, release_binary, scratch_dir, step_reports,
    tensorboard_log,
};
use arl_worker::data::shard::ShardWriter;
use arl_worker::data::stream::ShardSource;
use arl_worker::data::table;
use serde_json::Value;

/// `--set` overrides of a small pipeline in run folder `run`.
fn sets(run: &Path) -> Vec<String> {
    let mut args = Vec::new();
    let run_dir = format!("train.run_dir={:?}", run.to_string_lossy());
    for set in std::iter::once(run_dir.as_str()).chain(SMALL_PIPELINE) {
        args.push("--set".to_owned());
        args.push(set.to_owned());
    }
    args
}

/// The prepared inputs and the pretrained model, made once.
fn pretrained() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = scratch_dir("finetune-base");
        let mut args = vec!["run".to_owned()];
        args.extend(sets(&dir));
        args.extend([
            "--set".to_owned(),
            "pipeline.jobs=[\"pretrain\"]".to_owned(),
        ]);
        arl_ok(&args);
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A run folder of its own with the shared inputs and pretraining checkpoints.
fn copy_of(name: &str) -> PathBuf {
    let base = pretrained();
    let run = scratch_dir(&format!("finetune-{name}"));
    for part in ["synth", "knowledge", "checkpoints"] {
        copy_tree(&base.join(part), &run.join(part));
    }
    std::fs::copy(base.join("tokenizer.json"), run.join("tokenizer.json")).unwrap();
    run
}

fn arl(command: &str, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![command.to_owned()];
    args.extend(sets(run));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    arl_ok(&args)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

fn is_sha256(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Items of a dataset, from its manifest.
fn items(dataset: &Path) -> u64 {
    json(&dataset.join("index.json"))["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["items"].as_u64().unwrap())
        .sum()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_pipeline_fine_tunes_every_task_into_one_table_and_skips_what_is_done() {
    let run = copy_of("pipeline");
    let out = arl("run", &run, &[]);
    let log = stderr(&out);
    assert!(
        log.contains("pretraining is complete (step 4); skipped"),
        "{log}"
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for heading in ["## Med-VQA", "## Med-ITC", "## Med-ITR"] {
        assert!(table.contains(heading), "{table}");
    }
    assert!(table.contains("| irtr | zero-shot |") && table.contains("| irtr | fine-tuned |"));
    assert_eq!(
        std::fs::read_to_string(run.join("results.md")).unwrap(),
        table
    );

    let results = json(&run.join("results.json"));
    let pretrained = Checkpoints::open(&run.join("checkpoints").to_string_lossy())
        .unwrap()
        .latest()
        .unwrap()
        .unwrap()
        .group_hash("model");
    for job in ["vqa", "cls", "irtr"] {
        let result = &results["jobs"][job];
        assert_eq!(
            result,
            &json(&run.join("finetune").join(job).join("result.json"))
        );
        assert!(is_sha256(&result["weights"]), "{job}: {result}");
        assert!(is_sha256(&result["config_hash"]), "{job}: {result}");
        for split in ["train", "val", "test"] {
            assert!(is_sha256(&result["data"][split]), "{job}: {result}");
        }
        assert_eq!(
            result["init"]["weights"].as_str(),
            Some(pretrained.as_str())
        );
        assert_eq!(result["init"]["step"], 4);
    }
    let vqa = &results["jobs"]["vqa"]["test"]["vqa"];
    assert_eq!(
        vqa["questions"].as_u64(),
        Some(items(&run.join("synth/vqa/test")))
    );
    for key in ["open", "closed", "overall"] {
        let value = vqa[key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&value), "{key} {value}");
    }
    let cls = &results["jobs"]["cls"]["test"]["cls"];
    assert_eq!(
        cls["items"].as_u64(),
        Some(items(&run.join("synth/cls/test")))
    );
    let irtr = &results["jobs"]["irtr"];
    let pairs = items(&run.join("synth/irtr/test"));
    for recall in [&irtr["test"]["irtr"], &irtr["zero_shot"]["irtr"]] {
        assert_eq!(recall["texts"].as_u64(), Some(pairs));
        // Recall@K can only grow with K.
        for direction in ["i2t", "t2i"] {
            let r: Vec<f64> = (0..3)
                .map(|k| recall[direction][k].as_f64().unwrap())
                .collect();
            assert!(r[0] <= r[1] && r[1] <= r[2], "{direction}: {r:?}");
        }
    }
    // The retrieval result is the final model's; the others the best validation epoch's.
    assert_eq!(irtr["selected"]["rule"], "final weights");
    assert_eq!(
        results["jobs"]["cls"]["selected"]["rule"],
        "best validation epoch"
    );

    // TensorBoard: per-step training scalars, every validation and test number, and the
    // zero-shot recalls, equal to the result's (as float32).
    let f32_of = |v: &Value| v.as_f64().unwrap() as f32;
    for (job, metric, tags) in [
        ("vqa", "vqa", &["overall", "open", "closed"][..]),
        ("cls", "cls", &["accuracy"][..]),
        // Retrieval keeps its final weights: no validation.
        ("irtr", "irtr", &[][..]),
    ] {
        let log = tensorboard_log(&run.join("finetune").join(job).join("tensorboard"));
        let last = |tag: &str| {
            let points = log["scalars"][tag].as_array();
            points
                .and_then(|p| p.last())
                .map(|p| f32_of(&p[1]))
                .unwrap_or_else(|| panic!("{job}: no {tag} in {log}"))
        };
        for tag in ["loss", "grad_norm", "lr/head", "throughput/samples_per_s"] {
            last(tag);
        }
        for tag in tags {
            last(&format!("val/{tag}"));
            assert_eq!(
                last(&format!("test/{tag}")),
                f32_of(&results["jobs"][job]["test"][metric][*tag]),
                "{job} {tag}"
            );
        }
        if job == "irtr" {
            let zero_shot = &results["jobs"]["irtr"]["zero_shot"]["irtr"];
            assert_eq!(last("zero_shot/i2t_r1"), f32_of(&zero_shot["i2t"][0]));
            assert_eq!(
                last("test/t2i_r10"),
                f32_of(&irtr["test"]["irtr"]["t2i"][2])
            );
        }
    }

    // A rerun skips every job and prints the same table.
    let again = arl("run", &run, &[]);
    let log = stderr(&again);
    for job in ["vqa", "cls", "irtr"] {
        assert!(
            log.contains(&format!("fine-tune {job} is complete; skipped")),
            "{log}"
        );
    }
    assert_eq!(String::from_utf8_lossy(&again.stdout), table);

    // A result written under another section is not reused.
    let refused = |set: &str| {
        let mut args = vec!["run".to_owned()];
        args.extend(sets(&run));
        args.extend(["--set".to_owned(), set.to_owned()]);
        let out = Command::new(release_binary("arl"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{set}");
        stderr(&out)
    };
    let log = refused("finetune.cls.epochs=3");
    assert!(
        log.contains("finetune/cls/result.json") && log.contains("another [finetune.cls] section"),
        "{log}"
    );
    // Nor is a pretraining finished under another pretraining config (the run folder was
    // copied from the one that pretrained, which does not count).
    let log = refused("train.seed=1");
    assert!(
        log.contains("pretraining finished under another config (train.seed: 0 → 1)"),
        "{log}"
    );
}

#[test]
fn a_stopped_fine_tune_resumes_to_exactly_the_straight_result() {
    let straight = copy_of("straight");
    // Keeping only the newest checkpoint, the best epoch's stays too: every later one pins it.
    arl(
        "finetune",
        &straight,
        &["--job", "cls", "--set", "checkpoint.retention.keep_last=1"],
    );
    let selected = json(&straight.join("finetune/cls/result.json"))["selected"]["step"]
        .as_u64()
        .unwrap();
    assert_eq!(
        committed_steps(&straight.join("finetune/cls/checkpoints")),
        [selected, 12],
        "the best epoch (step {selected}) and the last"
    );
    let resumed = copy_of("resumed");
    // 48 training items, 8 per step: epoch 1 ends at step 6 (validation, best epoch so far), and
    // the job stops at 8, in epoch 2.
    arl("finetune", &resumed, &["--job", "cls", "--stop-at", "8"]);
    let job = resumed.join("finetune/cls");
    assert!(!job.join("result.json").exists());
    // It continues only under the section it started with.
    let mut args = vec!["finetune".to_owned()];
    args.extend(sets(&resumed));
    args.extend(["--job", "cls", "--set", "finetune.cls.lr=2e-4"].map(str::to_owned));
    let out = Command::new(release_binary("arl"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("was started under another [finetune.cls] section"),
        "{}",
        stderr(&out)
    );
    let out = arl("finetune", &resumed, &["--job", "cls"]);
    assert!(
        stderr(&out).contains("resumed at step 8"),
        "{}",
        stderr(&out)
    );

    let (a, b) = (
        step_reports(&straight.join("finetune/cls")),
        step_reports(&job),
    );
    assert_eq!(a.len(), 12);
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        for key in ["step", "loss", "lr", "grad_norm"] {
            assert_eq!(a[key], b[key], "{a} vs {b}");
        }
    }
    let (a, b) = (
        json(&straight.join("finetune/cls/result.json")),
        json(&job.join("result.json")),
    );
    // (The config hashes differ: the two runs' folders are in their paths.)
    for key in ["test", "weights", "selected", "data"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(a["init"]["weights"], b["init"]["weights"]);

    // `arl eval` evaluates the selected weights again, to the same numbers.
    let out = arl("eval", &resumed, &["--job", "cls"]);
    assert!(
        stderr(&out).contains("arl finetune: cls done: accuracy"),
        "{}",
        stderr(&out)
    );
    let again = json(&job.join("result.json"));
    assert_eq!(again["test"], b["test"]);
    assert_eq!(again["weights"], b["weights"]);
}

#[test]
fn fine_tunes_run_at_another_resolution_and_from_scratch() {
    let run = copy_of("resolution");
    // The tiny preset pretrains at 32 px (4 × 4 patches of 8); fine-tune at 48 (6 × 6).
    arl(
        "finetune",
        &run,
        &["--job", "vqa", "--set", "finetune.vqa.image_size=48"],
    );
    let last = Checkpoints::open(&run.join("finetune/vqa/checkpoints").to_string_lossy())
        .unwrap()
        .resume()
        .unwrap()
        .expect("a fine-tune checkpoint");
    let tensors = last.tensors("model").unwrap();
    let (_, positions) = tensors
        .iter()
        .find(|(name, _)| name == "vision_encoder.visual.positional_embedding")
        .unwrap();
    assert_eq!(positions.shape()[0], 1 + 36);

    // Zero-shot retrieval evaluates the pretrained model as it was trained, at 32 px, whatever
    // the fine-tune's resolution.
    let zero_shot = |size: &str| {
        let section = format!("finetune.irtr.image_size={size}");
        arl(
            "finetune",
            &run,
            &[
                "--job",
                "irtr",
                "--set",
                &section,
                "--set",
                "finetune.irtr.epochs=1",
            ],
        );
        let result = json(&run.join("finetune/irtr/result.json"));
        std::fs::remove_dir_all(run.join("finetune/irtr")).unwrap();
        assert_eq!(result["zero_shot_image_size"], 32);
        result["zero_shot"].clone()
    };
    assert_eq!(zero_shot("48"), zero_shot("32"));

    arl(
        "finetune",
        &run,
        &["--job", "cls", "--set", "finetune.cls.init=\"scratch\""],
    );
    let result = json(&run.join("finetune/cls/result.json"));
    assert_eq!(result["init"], "scratch");
}

/// Rewrites the dataset in `dataset` with its first row's image cut in half; returns the row's
/// image id and its number of texts.
fn damage_first_image(dataset: &Path) -> (String, u64) {
    let cache = scratch_dir("finetune-damage-cache");
    let source = ShardSource::open(&dataset.to_string_lossy(), &cache, 1 << 30).unwrap();
    let mut rows = Vec::new();
    for shard in 0..source.manifest().shards.len() as u32 {
        for batch in source.shard(shard).unwrap() {
            for r in 0..batch.num_rows() {
                rows.push(table::row(&batch, r).unwrap());
            }
        }
    }
    let first = &mut rows[0];
    first.image.truncate(first.image.len() / 2);
    let damaged = (first.image_id.clone(), first.captions.len() as u64);
    let manifest = source.manifest().clone();
    std::fs::remove_dir_all(dataset).unwrap();
    let mut writer = ShardWriter::new(dataset, 16 << 20).unwrap();
    for row in rows {
        writer.push(row).unwrap();
    }
    writer
        .finish_with(manifest.entities, manifest.label_names)
        .unwrap();
    damaged
}

#[test]
fn a_bad_image_in_the_test_split_costs_only_its_own_items() {
    let run = copy_of("bad-test-image");
    let test = run.join("synth/cls/test");
    let before = items(&test);
    let (id, texts) = damage_first_image(&test);
    arl(
        "finetune",
        &run,
        &["--job", "cls", "--set", "finetune.cls.init=\"scratch\""],
    );
    let result = json(&run.join("finetune/cls/result.json"));
    assert_eq!(result["test"]["cls"]["items"], before - texts, "{result}");
    let log = std::fs::read_to_string(run.join("finetune/cls/logs/rank0.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("skipped a bad sample") && l.contains(&format!("{id:?}"))),
        "{log}"
    );
}

#[test]
fn bad_fine_tune_sections_are_named_before_any_worker_starts() {
    let run = scratch_dir("finetune-bad");
    for (extra, expected) in [
        (
            vec!["--job", "vqa", "--set", "finetune.vqa.epoch=3"],
            vec!["finetune.vqa.epoch"],
        ),
        (vec!["--job", "nope"], vec!["no [finetune.nope] section"]),
        (
            vec![
                "--job",
                "cls",
                "--set",
                "finetune.cls.task=\"segmentation\"",
            ],
            vec!["finetune.cls.task", "segmentation"],
        ),
    ] {
        let mut args = vec!["finetune".to_owned()];
        args.extend(sets(&run));
        args.extend(["--set".to_owned(), "prepare.synthetic=false".to_owned()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = Command::new(release_binary("arl"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
        let log = stderr(&out);
        for text in expected {
            assert!(log.contains(text), "{extra:?}: {log}");
        }
        assert!(!log.contains("[rank"), "a worker started: {log}");
    }
}

#[test]
fn ablate_runs_every_knowledge_combination_and_from_scratch_into_one_table() {
    let run = copy_of("ablate");
    let out = arl(
        "ablate",
        &run,
        &[
            "--set",
            "pipeline.jobs=[\"pretrain\", \"cls\"]",
            "--set",
            "train.steps=2",
            "--set",
            "finetune.cls.epochs=1",
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains("| ID | AK | RK | LK | parameters | cls accuracy |"),
        "{table}"
    );
    assert!(table.contains("| from scratch | – | – | – |"), "{table}");
    assert!(table.contains("| 1 |  |  |  |"), "{table}");
    assert!(table.contains("| 8 | ✓ | ✓ | ✓ |"), "{table}");
    assert_eq!(
        std::fs::read_to_string(run.join("ablation.md")).unwrap(),
        table
    );
    let rows = json(&run.join("ablation.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 9);
    let parameters = |variant: &str| {
        let row = rows.iter().find(|r| r["variant"] == variant).unwrap();
        row["jobs"]["cls"]["parameters"].as_u64().unwrap()
    };
    // RK adds the knowledge sublayers; AK and LK change only the pretraining objective.
    assert!(parameters("3") > parameters("1"));
    assert_eq!(parameters("2"), parameters("1"));
    assert_eq!(parameters("8"), parameters("3"));
    let scratch = rows.iter().find(|r| r["variant"] == "scratch").unwrap();
    assert_eq!(scratch["jobs"]["cls"]["init"], "scratch");
    let eight = rows.iter().find(|r| r["variant"] == "8").unwrap();
    assert_eq!(eight["jobs"]["cls"]["init"]["step"], 2);
}
