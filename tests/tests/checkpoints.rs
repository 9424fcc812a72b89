//! Checkpoints on a local disk: a process killed at random points of its saves never loses or
//! corrupts the last committed checkpoint; one flipped byte in any file fails loading with the
//! file named (and resuming falls back to the previous checkpoint); the writer reports a failed
//! save at the next step; retention, and the older steps a checkpoint pins against it; model
//! tensors and random generators restore exactly; one group loads without reading the others;
//! exported weights read back with Python's safetensors; `arl ckpt` lists, verifies, exports.

use std::path::Path;
use std::process::Command;

use arl_checkpoints::export::export_weights;
use arl_checkpoints::manifest::PINNED;
use arl_checkpoints::{
    AsyncSaver, Checkpoints, Dtype, Retention, SaverConfig, Staging, Status, TensorSpec,
    TrainingState,
};
use arl_tests::checkpoint_child::{KillTarget, kill_during_saves};
use arl_tests::{committed_steps, python, release_binary, scratch_dir};
use arl_worker::train_state::{self, Named};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

fn state(step: u64) -> TrainingState {
    TrainingState {
        epoch: step / 10,
        config_hash: "c0ffee".into(),
        data_hash: "da7a".into(),
        ..TrainingState::new(step, 2)
    }
}

/// A staging area with two small groups whose bytes depend on `step`.
fn staged(step: u64) -> Staging {
    let mut staging = Staging::default();
    for (group, name, len) in [
        ("model", "w", 4096),
        ("model", "b", 64),
        ("optim", "w.m", 4096),
    ] {
        let spec = TensorSpec {
            group: group.into(),
            name: name.into(),
            dtype: Dtype::F32,
            shape: vec![len],
        };
        staging.stage(spec).unwrap().fill(step as u8);
    }
    staging
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn killing_a_saving_process_never_loses_the_last_committed_checkpoint() {
    let dir = scratch_dir("ckpt-kill");
    let location = dir.join("run").to_string_lossy().into_owned();
    let target = KillTarget {
        trials: 12,
        mid_save: 6,
        partial_left: 2,
        max_trials: 40,
    };
    let report = kill_during_saves(&location, &[], &[], target, 7);
    eprintln!("{report:?}");
    assert!(
        report.mid_save >= target.mid_save && report.partial_left >= target.partial_left,
        "too few of {} kills landed during a save: {report:?}",
        target.max_trials
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flipped_byte_fails_loading_with_the_file_named_and_resume_falls_back() {
    let dir = scratch_dir("ckpt-flip");
    let checkpoints = Checkpoints::open(&dir.to_string_lossy()).unwrap();
    for step in [10, 20] {
        checkpoints.save(&staged(step), &state(step)).unwrap();
    }
    let folder = dir.join("step-000000000020");
    for name in [
        "model-00000.safetensors",
        "optim-00000.safetensors",
        "manifest.json",
        "COMMITTED",
    ] {
        let path = folder.join(name);
        let pristine = std::fs::read(&path).unwrap();
        flip_byte(&path);
        let error = format!("{:#}", checkpoints.load(20).unwrap_err());
        assert!(
            error.contains(&path.to_string_lossy().into_owned())
                || (name == "manifest.json" && error.contains("manifest.json is corrupt")),
            "{name}: {error}"
        );
        std::fs::write(&path, pristine).unwrap();
        checkpoints.load(20).unwrap();
    }

    flip_byte(&folder.join("optim-00000.safetensors"));
    let resumed = checkpoints.resume().unwrap().expect("the older checkpoint");
    assert_eq!(resumed.manifest.state.step, 10);
    let listed = checkpoints.list().unwrap();
    match &listed[1].status {
        Status::Invalid(reason) => assert!(reason.contains("optim-00000.safetensors"), "{reason}"),
        other => panic!("step 20 should be rejected, is {other:?}"),
    }
    assert_eq!(checkpoints.latest().unwrap().unwrap().state.step, 10);
    // The run continues from step 10 and saves step 20 again, over the rejected folder.
    checkpoints.save(&staged(20), &state(20)).unwrap();
    assert_eq!(
        checkpoints.resume().unwrap().unwrap().manifest.state.step,
        20
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_writer_waits_for_the_save_in_flight_and_reports_a_failed_one_next() {
    let dir = scratch_dir("ckpt-async");
    let location = dir.to_string_lossy().into_owned();
    let config = SaverConfig {
        retention: Retention {
            keep_last: 2,
            keep_every: 3,
        },
    };
    let mut saver = AsyncSaver::new(Checkpoints::open(&location).unwrap(), config).unwrap();
    for step in 1..=7 {
        let mut begin = saver.begin().unwrap();
        // The previous save is committed by the time the next one may begin.
        if step > 1 {
            let latest = Checkpoints::open(&location).unwrap().latest().unwrap();
            assert_eq!(latest.unwrap().state.step, step - 1);
        }
        begin.staging = staged(step);
        saver.submit(begin.staging, state(step)).unwrap();
        assert_eq!(saver.in_flight(), Some(step));
    }
    let steps: Vec<u64> = saver
        .finish()
        .unwrap()
        .into_iter()
        .map(|outcome| outcome.unwrap().step)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7], "each outcome reported once");
    assert!(saver.poll().is_empty());
    assert_eq!(
        committed_steps(&dir),
        [3, 6, 7],
        "keep the last 2 and every 3rd"
    );

    // A file where step 8's folder should go makes that save fail.
    std::fs::write(dir.join("step-000000000008"), b"in the way").unwrap();
    let begin = saver.begin().unwrap();
    drop(begin);
    saver.submit(staged(8), state(8)).unwrap();
    let mut outcomes = Vec::new();
    while outcomes.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(20));
        outcomes = saver.poll();
    }
    let error = format!("{:#}", outcomes[0].as_ref().unwrap_err());
    assert!(
        error.contains("checkpoint of step 8") && error.contains("step-000000000008"),
        "{error}"
    );
    let checkpoints = Checkpoints::open(&location).unwrap();
    assert_eq!(checkpoints.latest().unwrap().unwrap().state.step, 7);
    checkpoints.load(7).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn retention_keeps_the_steps_the_newest_checkpoint_pins() {
    let dir = scratch_dir("ckpt-pinned");
    let checkpoints = Checkpoints::open(&dir.to_string_lossy()).unwrap();
    let keep_last_two = Retention {
        keep_last: 2,
        keep_every: 0,
    };
    // Step 2 is the best; every later checkpoint pins it.
    for step in 1..=5 {
        let mut state = state(step);
        if step >= 2 {
            state
                .extra
                .insert(PINNED.to_owned(), serde_json::json!([2]));
        }
        checkpoints.save(&staged(step), &state).unwrap();
        checkpoints.retain(&keep_last_two).unwrap();
    }
    assert_eq!(committed_steps(&dir), [2, 4, 5]);
    assert_eq!(checkpoints.load(2).unwrap().manifest.state.step, 2);

    // A newer best moves the pin: the old one goes with the next retention.
    let mut newer_best = state(6);
    newer_best
        .extra
        .insert(PINNED.to_owned(), serde_json::json!([6]));
    checkpoints.save(&staged(6), &newer_best).unwrap();
    assert_eq!(checkpoints.retain(&keep_last_two).unwrap(), [2, 4]);
    assert_eq!(committed_steps(&dir), [5, 6]);

    // A malformed pin list stops retention with the manifest named; nothing is deleted.
    let mut malformed = state(7);
    malformed
        .extra
        .insert(PINNED.to_owned(), serde_json::json!("best"));
    checkpoints.save(&staged(7), &malformed).unwrap();
    let error = format!("{:#}", checkpoints.retain(&keep_last_two).unwrap_err());
    assert!(
        error.contains("step-000000000007") && error.contains("extra.pinned"),
        "{error}"
    );
    assert_eq!(committed_steps(&dir), [5, 6, 7]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_group_loads_without_reading_the_others() {
    let dir = scratch_dir("ckpt-group");
    let checkpoints = Checkpoints::open(&dir.to_string_lossy()).unwrap();
    checkpoints.save(&staged(4), &state(4)).unwrap();
    // A corrupt optimiser file fails a whole load, not a load of the model alone.
    flip_byte(&dir.join("step-000000000004/optim-00000.safetensors"));
    let error = format!("{:#}", checkpoints.load(4).unwrap_err());
    assert!(error.contains("optim-00000.safetensors"), "{error}");
    let model = checkpoints.load_group(4, "model").unwrap();
    assert_eq!(model.groups(), ["model"]);
    let tensors = model.tensors("model").unwrap();
    let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["b", "w"]);
    assert!(
        tensors
            .iter()
            .all(|(_, t)| t.data().iter().all(|&b| b == 4))
    );
    let error = format!("{:#}", model.tensors("optim").unwrap_err());
    assert!(error.contains("no tensor group \"optim\""), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tensors() -> Vec<Named> {
    tch::manual_seed(11);
    vec![
        (
            "layer.weight".into(),
            Tensor::randn([5, 7], (Kind::Float, Device::Cpu)),
        ),
        (
            "layer.half".into(),
            Tensor::randn([3, 2], (Kind::BFloat16, Device::Cpu)),
        ),
        ("steps".into(), Tensor::from_slice(&[41i64, 42])),
        ("mask".into(), Tensor::from_slice(&[true, false, true])),
        (
            "strided".into(),
            Tensor::randn([4, 6], (Kind::Double, Device::Cpu)).transpose(0, 1),
        ),
    ]
}

#[test]
fn tensors_and_random_generators_restore_exactly() {
    let dir = scratch_dir("ckpt-restore");
    let location = dir.to_string_lossy().into_owned();
    let originals = tensors();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    rng.set_stream(3);
    for _ in 0..1001 {
        rng.next_u32();
    }
    let mut saver = AsyncSaver::new(
        Checkpoints::open(&location).unwrap(),
        SaverConfig::default(),
    )
    .unwrap();
    saver
        .reserve(train_state::layout("model", &originals).unwrap())
        .unwrap();
    let mut begin = saver.begin().unwrap();
    train_state::snapshot(&mut begin.staging, "model", &originals).unwrap();
    let mut saved_state = state(3);
    saved_state.ranks[1]
        .rng
        .insert("masking".into(), train_state::rng_state(&rng));
    saver.submit(begin.staging, saved_state).unwrap();
    assert!(saver.finish().unwrap()[0].is_ok());
    let continued: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();

    let fresh: Vec<Named> = originals
        .iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect();
    let loaded = Checkpoints::open(&location)
        .unwrap()
        .resume()
        .unwrap()
        .unwrap();
    train_state::restore(&loaded, "model", &fresh).unwrap();
    for ((name, original), (_, restored)) in originals.iter().zip(&fresh) {
        assert!(original.equal(restored), "{name} differs after restore");
    }
    let mut restored_rng =
        train_state::restore_rng(&loaded.manifest.state.ranks[1].rng["masking"]).unwrap();
    let again: Vec<u64> = (0..5).map(|_| restored_rng.next_u64()).collect();
    assert_eq!(continued, again);

    let mut wrong = fresh;
    wrong[0].1 = Tensor::zeros([7, 5], (Kind::Float, Device::Cpu));
    let error = format!(
        "{:#}",
        train_state::restore(&loaded, "model", &wrong).unwrap_err()
    );
    assert!(
        error.contains("model/layer.weight") && error.contains("[5, 7]"),
        "{error}"
    );
    wrong.pop();
    let error = format!(
        "{:#}",
        train_state::restore(&loaded, "model", &wrong).unwrap_err()
    );
    assert!(error.contains("unexpected [\"strided\"]"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exported_weights_read_back_in_python_with_their_lineage() {
    let dir = scratch_dir("ckpt-export");
    let checkpoints = Checkpoints::open(&dir.join("run").to_string_lossy()).unwrap();
    let originals = tensors();
    let mut staging = Staging::default();
    train_state::snapshot(&mut staging, "model", &originals).unwrap();
    train_state::snapshot(&mut staging, "optim", &originals[..1]).unwrap();
    checkpoints.save(&staging, &state(4)).unwrap();
    let loaded = checkpoints.load(4).unwrap();
    let file = dir.join("weights.safetensors");
    export_weights(&loaded, "model", &file.to_string_lossy(), &[]).unwrap();

    let script = "import json, sys\nfrom safetensors import safe_open\n\
        f = safe_open(sys.argv[1], 'pt')\n\
        print(json.dumps({'meta': f.metadata(), 'sums': {k: float(f.get_tensor(k).double().sum()) for k in f.keys()}}))";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["meta"]["format"], "arl-weights/1");
    assert_eq!(read["meta"]["step"], "4");
    assert_eq!(read["meta"]["config_hash"], "c0ffee");
    let sums = read["sums"].as_object().unwrap();
    assert_eq!(
        sums.len(),
        originals.len(),
        "only the model group: {sums:?}"
    );
    for (name, tensor) in &originals {
        let ours = tensor
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        assert_eq!(sums[name].as_f64().unwrap(), ours, "{name}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn arl_ckpt_lists_verifies_and_exports() {
    let dir = scratch_dir("ckpt-cli");
    let location = dir.join("run");
    let checkpoints = Checkpoints::open(&location.to_string_lossy()).unwrap();
    for step in [5, 6] {
        checkpoints.save(&staged(step), &state(step)).unwrap();
    }
    std::fs::create_dir_all(location.join("step-000000000007")).unwrap();
    let arl = |args: &[&str]| {
        let out = Command::new(release_binary("arl"))
            .arg("ckpt")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let location = location.to_string_lossy().into_owned();
    let (ok, text) = arl(&["list", &location]);
    assert!(ok, "{text}");
    assert!(text.contains("5  committed  2 files"), "{text}");
    assert!(text.contains("7  partial"), "{text}");
    let (ok, text) = arl(&["verify", &location, "--all"]);
    assert!(
        ok && text.contains("step 5 verified") && text.contains("step 6 verified"),
        "{text}"
    );
    let output = dir.join("w.safetensors").to_string_lossy().into_owned();
    let (ok, text) = arl(&["export", &location, "--output", &output]);
    assert!(ok && text.contains("exported model of step 6"), "{text}");
    let weights = Tensor::read_safetensors(&output).unwrap();
    assert_eq!(weights.len(), 2);
    flip_byte(&dir.join("run/step-000000000006/model-00000.safetensors"));
    let (ok, text) = arl(&["verify", &location]);
    assert!(
        !ok && text.contains("step-000000000006/model-00000.safetensors"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
