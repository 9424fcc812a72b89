//! The weights a fine-tune starts from, the pretrained model read from the pipeline's newest
//! committed pretraining checkpoint (the vision positions interpolated to the fine-tuning
//! resolution; the task head starts fresh), and the model hash the results cite.

use std::collections::BTreeSet;

use anyhow::{Context, ensure};
use arl_checkpoints::{Checkpoints, Loaded, Manifest};
use arl_contract::events::InitialWeights;
use arl_contract::identity::EXTRA_KEY;

use crate::model::vision::interpolate_positions;
use crate::train_state::{self, Named};

/// The vision tower's position table (resized when the resolution changes).
const POSITIONS: &str = "vision_encoder.visual.positional_embedding";

/// The hash of a checkpoint's model weights: what the results table cites.
pub fn model_hash(manifest: &Manifest) -> String {
    manifest.group_hash("model")
}

/// Copies the pretrained model of the newest committed checkpoint at `location` into
/// `variables`, except those under `fresh` (the task head); returns what they were.
///
/// # Errors
/// No committed checkpoint, or tensors missing, unexpected or of another shape (listed).
pub fn load_pretrained(
    location: &str,
    variables: &[Named],
    fresh: &str,
    grid: i64,
) -> anyhow::Result<InitialWeights> {
    let loaded = Checkpoints::open(location)?.resume()?.with_context(|| {
        format!("{location}: no committed pretraining checkpoint (run the pretraining job first)")
    })?;
    copy_model(&loaded, variables, |name| name.starts_with(fresh), grid)?;
    let state = &loaded.manifest.state;
    // The pretraining identity records the hashes of its [model.init] files.
    let model_init = state
        .extra
        .get(EXTRA_KEY)
        .and_then(|identity| identity["model"]["init"]["sha256"].as_object())
        .map(|hashes| {
            hashes
                .iter()
                .filter_map(|(key, hash)| Some((key.clone(), hash.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(InitialWeights::Pretrained {
        pretrained: location.to_owned(),
        step: state.step,
        weights: model_hash(&loaded.manifest),
        model_init,
    })
}

/// Copies the `model` group of `loaded` into `variables`; those for which `fresh` holds must
/// be absent, every other must be there, and nothing else may be.
///
/// # Errors
/// Missing, unexpected or mismatched tensors, listed with the checkpoint named.
pub fn copy_model(
    loaded: &Loaded,
    variables: &[Named],
    fresh: impl Fn(&str) -> bool,
    grid: i64,
) -> anyhow::Result<()> {
    let saved = loaded.tensors("model")?;
    let wanted: BTreeSet<&str> = variables
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !fresh(n))
        .collect();
    let have: BTreeSet<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<_> = wanted.difference(&have).collect();
    let unexpected: Vec<_> = have.difference(&wanted).collect();
    ensure!(
        missing.is_empty() && unexpected.is_empty(),
        "{}: the model does not match this job's: missing {missing:?}, unexpected {unexpected:?}",
        loaded.location
    );
    let _guard = tch::no_grad_guard();
    for (name, view) in &saved {
        let (_, variable) = variables
            .iter()
            .find(|(n, _)| n == name)
            .expect("checked above");
        let what = || format!("{}: model/{name}", loaded.location);
        let mut value = train_state::tensor_of(view).with_context(what)?;
        if name == POSITIONS && value.size() != variable.size() {
            value = interpolate_positions(&value, grid);
        }
        ensure!(
            value.size() == variable.size(),
            "{}: saved {:?}, the model has {:?}",
            what(),
            value.size(),
            variable.size()
        );
        variable
            .shallow_clone()
            .f_copy_(&value.to_kind(variable.kind()))
            .with_context(what)?;
    }
    Ok(())
}
