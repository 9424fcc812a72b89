//! The part of a pretraining config that its checkpoints belong to: the sections that decide
//! what the run computes, without the keys that may change between the restarts of one run
//! (its length, its folder, caching, logging). Pretraining records it in every manifest, and
//! `arl run` compares it before it takes a finished pretraining as done for the config at hand.

use serde_json::{Map, Value, json};

use arl_checkpoints::manifest::sha256_hex;

use crate::config::JobConfig;
use crate::config::finetune::FinetuneConfig;
use crate::config::model::ModelConfig;

/// The config sections that decide what pretraining computes.
const SECTIONS: [&str; 6] = ["model", "data", "knowledge", "train", "optim", "pretext"];

/// Keys of those sections that do not change what a step computes.
const RESTART_KEYS: [(&str, &str); 11] = [
    ("train", "steps"),
    ("train", "run_dir"),
    ("train", "tensorboard"),
    ("train", "image_every"),
    ("train", "log_samples"),
    ("train", "peak_tflops"),
    ("data", "cache_dir"),
    ("data", "cache_mb"),
    ("data", "threads"),
    ("data", "max_bad_fraction"),
    ("data", "storage_wait_s"),
];

/// The key of [`arl_checkpoints::TrainingState::extra`] that holds a pretraining's [`identity`].
pub const EXTRA_KEY: &str = "config";

/// The pretraining identity of a whole config (its JSON form): [`SECTIONS`] without
/// [`RESTART_KEYS`], missing sections as empty tables, and paths inside `train.run_dir`
/// written relative to it (`$run_dir/…`), so that a run folder can be moved or copied.
pub fn identity(config: &Value) -> Value {
    let run_dir = config["train"]["run_dir"].as_str().unwrap_or_default();
    let sections = SECTIONS.iter().map(|&section| {
        let mut table = config
            .get(section)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (_, key) in RESTART_KEYS.iter().filter(|(s, _)| *s == section) {
            table.remove(*key);
        }
        let table = relative_to_run_dir(&Value::Object(table), run_dir);
        (section.to_owned(), table)
    });
    Value::Object(sections.collect::<Map<_, _>>())
}

/// `value` with every string inside the folder `run_dir` written relative to it
/// (`$run_dir/…`), so that settings compare equal across a copied or moved run folder, and
/// across the nodes of a run, each with its own folder. An empty `run_dir` changes nothing.
pub fn relative_to_run_dir(value: &Value, run_dir: &str) -> Value {
    let mut value = value.clone();
    if !run_dir.is_empty() {
        relative_to(&format!("{}/", run_dir.trim_end_matches('/')), &mut value);
    }
    value
}

/// Rewrites every string under `value` that starts with `dir` (ending in `/`) as `$run_dir/…`.
fn relative_to(dir: &str, value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(dir) {
                *s = format!("$run_dir/{rest}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relative_to(dir, v)),
        Value::Object(map) => map.values_mut().for_each(|v| relative_to(dir, v)),
        _ => {}
    }
}

/// sha256 of an identity (its JSON with sorted keys).
pub fn identity_hash(identity: &Value) -> String {
    sha256_hex(identity.to_string().as_bytes())
}

/// The dotted keys whose values differ between two identities, as `key: old → new`
/// (`unset` for a missing key), in key order.
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", Some(old), Some(new), &mut out);
    out
}

fn diff(prefix: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (old, new) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            diff(&path, a.get(key), b.get(key), out);
        }
    } else if old != new {
        let shown = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), Value::to_string);
        out.push(format!("{prefix}: {} → {}", shown(old), shown(new)));
    }
}

impl JobConfig {
    /// The pretraining identity of this config ([`identity`]).
    pub fn pretraining_identity(&self) -> Value {
        identity(&serde_json::to_value(self).expect("a config serialises"))
    }

    /// Fine-tune `job`'s section as written (unset keys left out), paths in the run folder
    /// relative to it: what a finished or resumed job is compared against.
    pub fn finetune_section(&self, job: &str) -> Value {
        relative_to_run_dir(
            &serde_json::to_value(self.finetune.get(job)).expect("a section serialises"),
            &self.train.run_dir.to_string_lossy(),
        )
    }

    /// The identity of fine-tune `job` at `model`: its resolved settings, the model, the
    /// knowledge and the tokenizer, paths in the run folder relative to it (each node of a
    /// pipeline has its own folder).
    pub fn finetune_identity(&self, job: &FinetuneConfig, model: &ModelConfig) -> Value {
        relative_to_run_dir(
            &json!({
                "job": job, "model": model, "knowledge": self.knowledge,
                "tokenizer": self.data.tokenizer,
            }),
            &self.train.run_dir.to_string_lossy(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn restart_keys_and_other_sections_do_not_count() {
        let a = json!({"train": {"steps": 10, "seed": 0, "run_dir": "runs/a"},
                       "data": {"train": "runs/a/synth", "shards": ["runs/a/x", "/data/y"]},
                       "finetune": {"x": 1}, "checkpoint": {"every_steps": 5}});
        let b = json!({"train": {"steps": 99, "seed": 0, "run_dir": "runs/b/"},
                       "data": {"train": "runs/b/synth", "shards": ["runs/b/x", "/data/y"]},
                       "finetune": {"x": 2}, "checkpoint": {"every_steps": 7}});
        assert_eq!(identity_hash(&identity(&a)), identity_hash(&identity(&b)));
        assert!(differences(&identity(&a), &identity(&b)).is_empty());
    }

    #[test]
    fn a_changed_or_missing_key_is_named() {
        let a = json!({"train": {"seed": 0, "run_dir": "runs/a"}, "data": {"train": "runs/a/s"},
                       "model": {"vision": {"width": 64}}});
        let b = json!({"train": {"seed": 1, "run_dir": "runs/b"}, "data": {"train": "runs/a/s"},
                       "model": {"vision": {}}});
        assert_ne!(identity_hash(&identity(&a)), identity_hash(&identity(&b)));
        assert_eq!(
            differences(&identity(&a), &identity(&b)),
            [
                "data.train: \"$run_dir/s\" → \"runs/a/s\"",
                "model.vision.width: 64 → unset",
                "train.seed: 0 → 1"
            ]
        );
    }
}
