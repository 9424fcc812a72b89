//! `[model.init]` end to end: `arl pretrain` started from a tiny `CLIPVisionModel` and
//! `RobertaModel` that transformers saved, and from the real all-MiniLM-L6-v2, holds at its first
//! checkpoint towers that give transformers' outputs on the same inputs (step 1 runs at the
//! warm-up's learning rate 0, ARL_SPEC.md §5.2, so its weights are the start's). The files'
//! hashes reach the checkpoint's identity and the run's events; a resume reads none of them;
//! a file that does not fit is named with its bad keys before any rank starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use arl_checkpoints::manifest::sha256_of_file;
use arl_contract::config::model::{TextConfig, VisionConfig};
use arl_tests::{
    CLIP_TINY_VISION, ModelFixture, arl_ok, check_pretrain_config, export_model, model_fixture,
    pretrain_config, release_binary, scratch_dir, step_reports, text_overrides,
};
use arl_worker::model::load::{self, Weights};
use arl_worker::model::text::TextEncoder;
use arl_worker::model::vision::ClipVision;
use serde_json::Value;
use tch::{Tensor, nn};

/// The largest tolerated absolute difference in float32.
const TOLERANCE: f64 = 1e-5;

/// `arl pretrain` of one step with a checkpoint, on the shared test inputs, with `extra`
/// overrides; returns the run folder.
fn pretrain_one_step(name: &str, extra: &[String]) -> PathBuf {
    let run = scratch_dir(&format!("model-init-{name}"));
    let config = pretrain_config(&run);
    let mut args: Vec<String> = vec!["pretrain".into(), config.to_string_lossy().into()];
    for set in ["train.steps=1", "checkpoint.every_steps=1"]
        .into_iter()
        .map(str::to_owned)
        .chain(extra.iter().cloned())
    {
        args.extend(["--set".into(), set]);
    }
    arl_ok(&args);
    run
}

/// The model weights of the run's newest checkpoint, exported by `arl ckpt export`.
fn exported(run: &Path) -> Weights {
    load::read(&export_model(run)).unwrap()
}

/// The tensors of `weights` under `prefix.`, relative to it.
fn under(weights: &Weights, prefix: &str) -> Weights {
    weights
        .iter()
        .filter_map(|(key, value)| {
            let key = key.strip_prefix(prefix)?.strip_prefix('.')?;
            Some((key.to_owned(), value.shallow_clone()))
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// The text tower of `weights` on the fixture's inputs, against transformers' outputs.
fn text_difference(weights: &Weights, fixture: &ModelFixture) -> f64 {
    let cfg = TextConfig::from_hf_json(&fixture.config).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let encoder = TextEncoder::new(vs.root(), &cfg);
    let file = Path::new("checkpoint");
    load::assign(&vs, "", under(weights, "language_encoder"), |_| false, file).unwrap();
    let out = tch::no_grad(|| encoder.forward(&fixture.io["ids"], &fixture.io["mask"], false));
    max_abs_diff(&out, &fixture.io["expected"])
}

/// The run's events of one kind.
fn events(run: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("rank0.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event"] == kind)
        .collect()
}

/// The `[model.init]` hashes in the identity of the run's newest checkpoint.
fn checkpoint_init_hashes(run: &Path) -> Value {
    let checkpoints =
        arl_checkpoints::Checkpoints::open(&run.join("checkpoints").to_string_lossy()).unwrap();
    let loaded = checkpoints
        .resume()
        .unwrap()
        .expect("a committed checkpoint");
    loaded.manifest.state.extra["config"]["model"]["init"]["sha256"].clone()
}

#[test]
fn pretraining_starts_from_transformers_clip_and_roberta_and_a_resume_reads_neither() {
    let (clip, roberta) = (model_fixture("clip_tiny"), model_fixture("roberta_tiny"));
    // Copies, so that the resume below can change one under the same name.
    let dir = scratch_dir("model-init-files");
    let vision_file = dir.join("clip.safetensors");
    std::fs::copy(&clip.weights, &vision_file).unwrap();
    let mut sets: Vec<String> = CLIP_TINY_VISION.iter().map(|s| (*s).to_owned()).collect();
    sets.extend(text_overrides(&roberta.config));
    sets.push(format!("model.init.vision={:?}", vision_file));
    sets.push(format!("model.init.text={:?}", roberta.weights));
    let run = pretrain_one_step("clip-roberta", &sets);

    let weights = exported(&run);
    let cfg = VisionConfig::from_hf_clip_json(&clip.config, 48, false).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let tower = ClipVision::new(vs.root(), &cfg);
    let file = Path::new("checkpoint");
    load::assign(
        &vs,
        "",
        under(&weights, "vision_encoder.visual"),
        |_| false,
        file,
    )
    .unwrap();
    let out = tch::no_grad(|| tower.forward(&clip.io["pixels"]));
    let vision = max_abs_diff(&out, &clip.io["expected_last_dropped"]);
    assert!(vision <= TOLERANCE, "vision: max abs diff {vision:e}");
    let text = text_difference(&weights, &roberta);
    assert!(text <= TOLERANCE, "text: max abs diff {text:e}");

    // The lineage: the files' hashes in the checkpoint's identity and in the start's event.
    let vision_hash = sha256_of_file(&vision_file).unwrap();
    let text_hash = sha256_of_file(&roberta.weights).unwrap();
    let recorded = checkpoint_init_hashes(&run);
    assert_eq!(recorded["vision"], vision_hash.as_str(), "{recorded}");
    assert_eq!(recorded["text"], text_hash.as_str(), "{recorded}");
    let started = events(&run, "initialised");
    assert_eq!(started.len(), 1);
    let files = started[0]["files"].as_array().unwrap();
    assert_eq!(files[0]["key"], "vision");
    assert_eq!(files[0]["format"], "Hugging Face CLIPVisionModel");
    assert_eq!(files[1]["sha256"], text_hash.as_str());

    // A resume with the vision file's content changed keeps the trained weights: the start's
    // files are not read again.
    let doubled: Vec<(String, Tensor)> = load::read(&clip.weights)
        .unwrap()
        .into_iter()
        .map(|(key, value)| (key, value * 2.0))
        .collect();
    Tensor::write_safetensors(&doubled, &vision_file).unwrap();
    let config = run.with_extension("toml");
    let mut args: Vec<String> = vec!["pretrain".into(), config.to_string_lossy().into()];
    for set in [
        "train.steps=2".to_owned(),
        "checkpoint.every_steps=1".into(),
    ]
    .into_iter()
    .chain(sets)
    {
        args.extend(["--set".into(), set]);
    }
    arl_ok(&args);
    assert_eq!(events(&run, "resumed").len(), 1);
    assert_eq!(
        events(&run, "initialised").len(),
        1,
        "the resume loaded the files"
    );
    assert_eq!(step_reports(&run).last().unwrap()["step"], 2);
    let after = exported(&run);
    let key = "vision_encoder.visual.conv1.weight";
    let moved = max_abs_diff(&after[key], &weights[key]);
    assert!(
        moved < 0.01,
        "the vision tower moved by {moved} in one step"
    );
}

#[test]
fn pretraining_starts_from_the_real_minilm_weights() {
    let minilm = model_fixture("bert_minilm");
    let mut sets = text_overrides(&minilm.config);
    sets.push(format!("model.init.text={:?}", minilm.weights));
    let run = pretrain_one_step("minilm", &sets);
    let text = text_difference(&exported(&run), &minilm);
    assert!(text <= TOLERANCE, "MiniLM: max abs diff {text:e}");
}

/// `arl check` of the test pretraining config with `sets`; its error output when it fails.
fn check_error(sets: &[String]) -> String {
    let (passed, stderr) = check_pretrain_config("model-init-check", sets);
    assert!(!passed, "arl check passed with {sets:?}");
    stderr
}

#[test]
fn a_file_that_does_not_fit_is_named_with_its_bad_keys_before_anything_starts() {
    let (clip, roberta) = (model_fixture("clip_tiny"), model_fixture("roberta_tiny"));
    // The tiny preset's text tower is 64 wide; the file's is 32.
    let error = check_error(&[format!("model.init.text={:?}", roberta.weights)]);
    assert!(
        error.contains(&roberta.weights.display().to_string()),
        "{error}"
    );
    assert!(error.contains("shape mismatches"), "{error}");
    assert!(
        error.contains("embeddings.word_embeddings.weight (file [1000, 32], model [1000, 64])"),
        "{error}"
    );
    // A vision file as the text tower: not of the expected format, its keys shown.
    let error = check_error(&[format!("model.init.text={:?}", clip.weights)]);
    assert!(
        error.contains("not a Hugging Face BertModel or RobertaModel"),
        "{error}"
    );
    assert!(
        error.contains("embeddings.patch_embedding.weight"),
        "{error}"
    );
    // A missing file, and a pinned hash that the file does not have.
    let error = check_error(&["model.init.vision=\"/nonexistent/clip.safetensors\"".into()]);
    assert!(
        error.contains("/nonexistent/clip.safetensors: no such file"),
        "{error}"
    );
    let mut sets: Vec<String> = CLIP_TINY_VISION.iter().map(|s| (*s).to_owned()).collect();
    sets.push(format!("model.init.vision={:?}", clip.weights));
    sets.push(format!("model.init.sha256.vision=\"{}\"", "0".repeat(64)));
    let error = check_error(&sets);
    assert!(
        error.contains("the config pins model.init.sha256.vision"),
        "{error}"
    );
}

#[test]
fn the_minilm_demo_starts_its_text_tower_from_the_installed_weights() {
    // scripts/setup copies all-MiniLM-L6-v2 to data/minilm; the paths are the project root's.
    let out = Command::new(release_binary("arl"))
        .args(["check", "configs/demo-minilm.toml"])
        .current_dir(arl_tests::workspace_root())
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("model.init.text fits the model: data/minilm/model.safetensors"),
        "{stderr}"
    );
    let minilm = model_fixture("bert_minilm");
    let resolved = String::from_utf8_lossy(&out.stdout);
    let hash = sha256_of_file(&minilm.weights).unwrap();
    assert!(
        resolved.contains(&format!("text = \"{hash}\"")),
        "{resolved}"
    );
}
