//! A dataset converted from a folder that holds hostile images (a decompression bomb, a
//! 1×65535 PNG, a truncated JPEG, and an RLE DICOM on which dicom-rs 0.10 panics, found by the
//! fuzzer) trains to completion in bounded memory, the bad samples
//! counted and named; `arl data check` names the same samples, and exits non-zero when they
//! are more than `data.max_bad_fraction`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arl_tests::{
    arl_ok, committed_steps, find_worker_pid, grey_png, image_fixtures, pretrain_config,
    release_binary, scratch_dir, workspace_root,
};

/// The hostile training images: (ROCO id, what the bad sample's reason says).
const HOSTILE: [(&str, &str); 4] = [
    ("ROCO_train_bomb", "16384×16384"),
    ("ROCO_train_thin", "1×65535"),
    ("ROCO_train_cut", "truncated"),
    ("ROCO_train_rle", "RLE frame"),
];

/// Ordinary training images: with the hostile ones, 40 items, five global batches of 8.
const ORDINARY: usize = 36;

/// A ROCO folder in its released layout (`{split}/radiology/{images/, captions.txt,
/// dlinks.txt}`) of grey PNGs, the hostile images among the training ones.
fn roco_folder(dir: &Path) -> PathBuf {
    let roco = dir.join("roco");
    let jpeg = std::fs::read(image_fixtures().join("MR_small.jpg")).unwrap();
    for split in ["train", "val", "test"] {
        let radiology = roco.join(split).join("radiology");
        std::fs::create_dir_all(radiology.join("images")).unwrap();
        let count = if split == "train" { ORDINARY } else { 4 };
        let mut images: Vec<(String, Vec<u8>)> = (0..count)
            .map(|i| {
                (
                    format!("ROCO_{split}_{i}"),
                    grey_png(40, 30, 20 + 5 * i as u8),
                )
            })
            .collect();
        if split == "train" {
            let [bomb, thin, cut, rle] = HOSTILE.map(|(id, _)| id.to_owned());
            images.push((bomb, grey_png(16_384, 16_384, 0)));
            images.push((thin, grey_png(1, 65_535, 0)));
            images.push((cut, jpeg[..jpeg.len() / 2].to_vec()));
            let panics =
                workspace_root().join("tests/fuzz/regressions/dicom/rle_short_segment.dcm");
            images.push((rle, std::fs::read(panics).unwrap()));
        }
        let (mut captions, mut dlinks) = (String::new(), String::new());
        for (k, (id, bytes)) in images.iter().enumerate() {
            std::fs::write(radiology.join("images").join(format!("{id}.jpg")), bytes).unwrap();
            captions.push_str(&format!(
                "{id}\tChest radiograph {k} shows a pleural effusion and cardiomegaly.\n"
            ));
            dlinks.push_str(&format!(
                "{id}\twget -c https://example.org/pub/PMC{k}.tar.gz\tfig{k}.jpg\n"
            ));
        }
        std::fs::write(radiology.join("captions.txt"), captions).unwrap();
        std::fs::write(radiology.join("dlinks.txt"), dlinks).unwrap();
    }
    roco
}

/// `arl data check DATASET --config CONFIG` with `sets`: (success, stdout).
fn data_check(dataset: &Path, config: &Path, sets: &[&str]) -> (bool, String) {
    let out = Command::new(release_binary("arl"))
        .args(["data", "check"])
        .arg(dataset)
        .arg("--config")
        .arg(config)
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// The ROCO ids named by the lines of `text` that contain `marker`.
fn named(text: &str, marker: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| line.contains(marker))
        .flat_map(|line| HOSTILE.iter().filter(move |(id, _)| line.contains(id)))
        .map(|(id, _)| (*id).to_owned())
        .collect()
}

/// Peak resident memory (VmHWM) of the process `pid`, in bytes, if it runs.
fn peak_rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[test]
fn hostile_images_are_named_by_data_check_and_cost_a_run_only_their_samples() {
    let dir = scratch_dir("bad-data");
    let roco = roco_folder(&dir);
    let converted = dir.join("converted");
    arl_ok(&[
        "data",
        "convert",
        "--dataset",
        "roco",
        "--input",
        &roco.to_string_lossy(),
        "--output",
        &converted.to_string_lossy(),
    ]);
    let dataset = converted.join("train");
    let run = dir.join("run");
    let config = pretrain_config(&run);
    let train = format!("data.train={:?}", dataset.to_string_lossy());
    let hostile: BTreeSet<String> = HOSTILE.iter().map(|(id, _)| (*id).to_owned()).collect();

    // 4 bad samples of 40 are more than the default 1 %: named, and a failure.
    let (passed, report) = data_check(&dataset, &config, &[]);
    assert!(!passed, "{report}");
    assert_eq!(named(&report, "bad sample:"), hostile, "{report}");
    for (id, reason) in HOSTILE {
        assert!(
            report.lines().any(|l| l.contains(id)
                && l.contains(reason)
                && l.contains("shard-00000.arrow, row")),
            "{id}: {report}"
        );
    }
    assert!(report.contains("40 samples, 4 bad (10.00 %)"), "{report}");
    let (passed, _) = data_check(&dataset, &config, &["data.max_bad_fraction=0.2"]);
    assert!(passed);

    // Pretraining on it: five steps of 8, every sample once.
    let mut child = Command::new(release_binary("arl"))
        .arg("pretrain")
        .arg(&config)
        .args(["--set", &train, "--set", "data.max_bad_fraction=0.2"])
        .args(["--set", "train.steps=5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        for rank in 0..2 {
            if let Some(rss) = find_worker_pid(&run, rank).and_then(peak_rss) {
                peak = peak.max(rss);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(committed_steps(&run.join("checkpoints")).last(), Some(&5));
    let mut logs = String::new();
    for entry in std::fs::read_dir(run.join("logs")).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(entry.path()).unwrap());
    }
    assert_eq!(named(&logs, "skipped a bad sample"), hostile, "{logs}");
    assert!(
        peak > 0 && peak < 3 << 30,
        "a worker's peak resident memory: {} MiB",
        peak >> 20
    );
    eprintln!("peak worker memory: {} MiB", peak >> 20);
}
