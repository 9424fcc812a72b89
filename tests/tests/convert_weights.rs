//! `scripts/convert_weights.py`: the common downloads (a Hugging Face CLIPModel and a
//! RobertaForMaskedLM as `pytorch_model.bin`, a Lightning checkpoint) become safetensors files
//! that `[model.init]` takes and `arl check` finds fitting; a pickle that would run a command
//! is refused, and the command never runs.

use std::path::Path;
use std::process::{Command, Output};

use arl_tests::{
    CLIP_TINY_VISION, check_pretrain_config, model_fixture, python, scratch_dir, text_overrides,
    weight_download_fixtures, workspace_root,
};
use arl_worker::model::load;

fn convert(key: &str, source: &Path, output: &Path) -> Output {
    Command::new(python())
        .arg(workspace_root().join("scripts/convert_weights.py"))
        .args([key.as_ref(), source.as_os_str(), output.as_os_str()])
        .output()
        .unwrap()
}

fn converted(key: &str, source: &Path, output: &Path) {
    let out = convert(key, source, output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `arl check` of the test pretraining config with `sets`; its standard error.
fn check(sets: &[String]) -> String {
    let (passed, stderr) = check_pretrain_config("convert-check", sets);
    assert!(passed, "{stderr}");
    stderr
}

#[test]
fn downloads_convert_to_files_that_fit_the_model() {
    let downloads = weight_download_fixtures();
    let dir = scratch_dir("convert-weights");
    let (vision, text, whole) = (
        dir.join("clip.safetensors"),
        dir.join("roberta.safetensors"),
        dir.join("meter.safetensors"),
    );
    converted("vision", &downloads.join("clip"), &vision);
    converted("text", &downloads.join("roberta"), &text);
    converted("whole", &downloads.join("meter.ckpt"), &whole);

    let names = |file: &Path| -> Vec<String> { load::read(file).unwrap().into_keys().collect() };
    assert!(names(&vision).iter().all(|k| !k.starts_with("text_model.")));
    assert!(names(&text).iter().all(|k| !k.starts_with("lm_head.")));
    assert_eq!(
        names(&whole),
        ["itm_score.fc.weight", "vit_model.visual.class_embedding"]
    );
    // The towers fit a model of their shapes, as training would load them.
    let mut sets: Vec<String> = CLIP_TINY_VISION.map(str::to_owned).to_vec();
    sets.extend(text_overrides(&model_fixture("roberta_tiny").config));
    sets.push(format!("model.init.vision={vision:?}"));
    sets.push(format!("model.init.text={text:?}"));
    let said = check(&sets);
    assert!(said.contains("model.init.vision fits the model"), "{said}");
    assert!(said.contains("Hugging Face BERT/RoBERTa"), "{said}");
}

#[test]
fn a_pickle_that_runs_code_is_refused_unrun() {
    let downloads = weight_download_fixtures();
    let output = scratch_dir("convert-evil").join("evil.safetensors");
    let out = convert("text", &downloads.join("evil.bin"), &output);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused to load"), "{stderr}");
    assert!(
        !downloads.join("pwned").exists(),
        "the pickle ran its command"
    );
    assert!(!output.exists());
}
