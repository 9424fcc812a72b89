//! The `arl` command as a user meets it: its subcommands, the embedded default job, configs
//! with bad keys, and the all-reduce benchmark's output format.

use std::process::{Command, Output};

use arl_tests::release_binary;

fn arl(args: &[&str]) -> Output {
    Command::new(release_binary("arl"))
        .args(args)
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .expect("running arl")
}

/// Checks that `fields` are `key=value` for `keys`, in order, with positive numbers.
fn assert_positive_fields(line: &str, fields: &[&str], keys: &[&str]) {
    for (field, key) in fields.iter().zip(keys) {
        let value = field
            .strip_prefix(&format!("{key}="))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().unwrap() > 0.0, "{line}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_planned_subcommand() {
    let out = arl(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in [
        "run",
        "check",
        "bench",
        "pretrain",
        "finetune",
        "eval",
        "data",
        "knowledge",
        "ckpt",
    ] {
        assert!(
            help.contains(&format!("\n  {sub} ")),
            "{sub} missing from:\n{help}"
        );
    }
}

/// `arl run` on the embedded default, shortened, in a run folder of its own.
fn short_run(name: &str, extra: &[&str]) -> Output {
    let dir = arl_tests::scratch_dir(name);
    let run_dir = format!("train.run_dir={:?}", dir.join("run").to_string_lossy());
    let mut args = vec![
        "run",
        "--set",
        "train.steps=3",
        "--set",
        "prepare.scenes=40",
    ];
    args.extend(["--set", &run_dir]);
    args.extend(extra);
    let out = arl(&args);
    let _ = std::fs::remove_dir_all(dir);
    out
}

#[test]
fn run_on_the_embedded_default_prepares_pretrains_fine_tunes_and_writes_the_table() {
    let out = short_run("cli-run", &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("preflight passed: 2 ranks joined, all-reduced rank sum 1"),
        "{stderr}"
    );
    for stage in [
        "writing the synthetic benchmark (40 scenes)",
        "learning a tokenizer",
        "linking the reports to HPO",
        "step 3/3: loss",
        "pretraining done",
        "arl finetune: job vqa",
        "arl finetune: job cls",
        "arl finetune: job irtr",
        "zero-shot: T2I R@1/5/10",
        "arl run: results in",
    ] {
        assert!(stderr.contains(stage), "{stage}: {stderr}");
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let table = text(&out.stdout);
    for heading in ["## Med-VQA", "## Med-ITC", "## Med-ITR"] {
        assert!(table.contains(heading), "{table}");
    }
}

#[test]
fn run_with_three_ranks_through_the_nproc_flag() {
    let out = short_run(
        "cli-run3",
        &[
            "--nproc-per-node",
            "3",
            "--set",
            "train.global_batch=6",
            "--set",
            "pipeline.jobs=[\"pretrain\"]",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("3 ranks joined, all-reduced rank sum 3") && stderr.contains("step 3/3:"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_file_and_the_unknown_key() {
    let dir = std::env::temp_dir().join(format!("arl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[launch]\nnproc_per_node = 2\nbackend = \"gloo\"\nmaster_addr = \"127.0.0.1\"\nmaster_port = 0\nthreads = 4\n").unwrap();
    let out = arl(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "a start-up failure");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(bad.to_str().unwrap()) && stderr.contains("threads"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_prints_the_resolved_config() {
    let out = arl(&["check", "--set", "dist.bucket_mb=4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let resolved = text(&out.stdout);
    assert!(
        resolved.contains("bucket_mb = 4.0") && resolved.contains("nproc_per_node = 2"),
        "{resolved}"
    );
}

#[test]
fn bench_allreduce_prints_one_line_per_size_in_the_documented_format() {
    let out = arl(&[
        "bench",
        "allreduce",
        "--sizes-mb",
        "1,2",
        "--rounds",
        "1",
        "--warmup",
        "1",
        "--iters",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, size) in lines.iter().zip([1, 2]) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], "allreduce");
        assert_eq!(fields[1], format!("size_mb={size}"));
        assert_positive_fields(line, &fields[2..], &["arl_gbps", "torch_gbps", "ratio"]);
    }
}

#[test]
fn a_failing_rank_is_named_and_its_c10d_error_shown() {
    // This build has no NCCL (or this machine no GPU): every rank fails to create its group.
    let out = arl(&[
        "run",
        "--set",
        "launch.backend=nccl",
        "--set",
        "dist.init_timeout_s=20",
    ]);
    assert_eq!(out.status.code(), Some(3), "a start-up failure");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("of 2 failed"), "{stderr}");
    assert!(stderr.contains("Nccl init"), "{stderr}");
    // The failing rank's last lines come with the error, from its log.
    let tail = stderr
        .split("Last lines of rank")
        .nth(1)
        .unwrap_or_default();
    assert!(tail.contains("Nccl init"), "{stderr}");
}

#[test]
fn worker_matmul_check_reports_throughput() {
    let out = Command::new(release_binary("arl-worker"))
        .args([
            "bench-matmul",
            "--kind",
            "f32",
            "--size",
            "64",
            "--iters",
            "3",
            "--device",
            "cpu",
        ])
        .output()
        .expect("running arl-worker");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["size"], 64);
    assert_eq!(report["device"], "Cpu");
    assert!(report["tflops"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn model_summary_lists_modules_and_the_knowledge_sublayers() {
    let out = arl(&["model", "summary", "--preset", "tiny", "--entities", "10"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for module in [
        "vision_encoder",
        "language_encoder",
        "multi_modal_language_layers",
        "align_head",
        "total",
    ] {
        assert!(table.contains(module), "{module} missing:\n{table}");
    }
    assert!(table.contains("of which knowledge sublayers"), "{table}");
    let demo = release_binary("arl")
        .ancestors()
        .nth(3)
        .unwrap()
        .join("configs/demo.toml");
    let from_config = arl(&["model", "summary", "--config", demo.to_str().unwrap()]);
    assert!(
        from_config.status.success(),
        "{}",
        text(&from_config.stderr)
    );
    assert!(
        text(&from_config.stdout).contains("demo.toml"),
        "{}",
        text(&from_config.stdout)
    );
    let bad = arl(&["model", "summary", "--preset", "huge"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("unknown model preset \"huge\""),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn bench_model_and_pretrain_print_one_line_in_the_documented_format() {
    let pretrain = &[
        "arl_sps",
        "torch_sps",
        "ratio",
        "arl_tflops",
        "arl_rss_gib",
        "torch_rss_gib",
        "rss_ratio",
    ][..];
    for (bench, precision, keys) in [
        ("model", "fp32", &["arl_ms", "torch_ms", "ratio"][..]),
        ("pretrain", "fp32", pretrain),
        ("pretrain", "bf16", pretrain),
    ] {
        let mut args = vec![
            "bench",
            bench,
            "--preset",
            "tiny",
            "--rounds",
            "1",
            "--iters",
            "1",
            "--batch",
            "2",
            "--text-len",
            "8",
        ];
        if precision == "bf16" {
            args.push("--bf16");
        }
        let out = arl(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        let fields: Vec<&str> = line.trim().split(' ').collect();
        assert_eq!(fields.len(), 3 + keys.len(), "{line}");
        let precision = format!("precision={precision}");
        assert_eq!(fields[..3], [bench, "preset=tiny", &precision], "{line}");
        assert_positive_fields(&line, &fields[3..], keys);
    }
}

#[test]
fn knowledge_link_finds_negated_and_plural_findings_in_hpo() {
    let report = "No pneumothorax. Severe cardiomegaly with small bilateral pleural effusions.";
    let out = arl(&["knowledge", "link", report]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "3-15\tC0032326\tPneumothorax\t\"pneumothorax\" negated",
            "24-36\tC0018800\tCardiomegaly\t\"cardiomegaly\"",
            "58-75\tC0032227\tPleural effusion\t\"pleural effusions\"",
        ]
    );
}

#[test]
fn bench_link_prints_the_documented_line_over_the_odd_numbered_reports() {
    let out = arl(&["bench", "link", "--passes", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let fields: Vec<&str> = line.trim().split(' ').collect();
    assert_eq!(fields[0], "link", "{line}");
    assert!(
        fields[1].starts_with("reports_per_s=") && fields[2].starts_with("mentions_per_report="),
        "{line}"
    );
    assert!(fields[3].starts_with("reports_with_mention="), "{line}");
    assert_eq!(fields[4], "reports=1979", "{line}");
}

#[test]
fn bench_data_prints_both_figures() {
    let out = arl(&[
        "bench",
        "data",
        "--rounds",
        "1",
        "--passes",
        "1",
        "--size",
        "48",
        "--stream-mb",
        "8",
        "--stream-image-kb",
        "64,1024",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(fields[..2], ["data", "images_per_s"], "{stdout}");
    assert_positive_fields(lines[0], &fields[2..5], &["arl", "torch", "ratio"]);
    assert_eq!(fields[5..], ["images=8", "size=48"], "{stdout}");
    for (line, image_kb) in lines[1..].iter().zip(["64", "1024"]) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[..2], ["data", "stream_mb_per_s"], "{line}");
        assert_eq!(fields[2], format!("image_kb={image_kb}"), "{line}");
        assert_positive_fields(line, &fields[3..7], &["get", "cold", "warm", "cold/get"]);
        assert_eq!(fields[7], "mb=8", "{line}");
    }
}

#[test]
fn a_stop_signal_during_the_preflight_ends_the_run_as_a_stop_before_anything_is_prepared() {
    let dir = arl_tests::scratch_dir("cli-preflight-stop");
    let run_dir = format!("train.run_dir={:?}", dir.join("run").to_string_lossy());
    // A rendezvous that waits for a second node that never comes: the stop lands in it.
    let child = Command::new(release_binary("arl"))
        .args(["run", "--set", &run_dir, "--set", "launch.nnodes=2"])
        .args(["--master-port", &arl_tests::free_port().to_string()])
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(
        stderr.contains("arl run: job preflight was stopped"),
        "{stderr}"
    );
    assert!(
        !dir.join("run/synth").exists(),
        "nothing is prepared after a stop"
    );
}
