//! Weights from safetensors files: read, rename from another project's names to ours, and
//! assign strictly. Every variable of the module must be found (except those on an explicit
//! allow-list of modules that start fresh) and every tensor of the file must be used (except
//! those a mapping drops on purpose, which it names); otherwise the error lists the keys.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, bail};
use tch::{Tensor, nn};

use super::vision::interpolate_positions;
use arl_contract::config::model::VisionConfig;

/// Tensors by name.
pub type Weights = BTreeMap<String, Tensor>;

/// Reads every tensor of a safetensors file.
///
/// # Errors
/// An unreadable or malformed file, named.
pub fn read(path: &Path) -> anyhow::Result<Weights> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading weights {}", path.display()))?;
    Ok(tensors.into_iter().collect())
}

/// Copies `weights` (in our names, relative to `prefix`) into the variables of `vs` under
/// `prefix` (`""` for the root). Variables for which `fresh(relative name)` holds may be absent
/// from `weights` (modules meant to start fresh).
///
/// # Errors
/// Missing keys, unexpected keys and shape mismatches, all listed, with `file` named.
pub fn assign(
    vs: &nn::VarStore,
    prefix: &str,
    mut weights: Weights,
    fresh: impl Fn(&str) -> bool,
    file: &Path,
) -> anyhow::Result<()> {
    let variables: HashMap<String, Tensor> = vs.variables();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut targets: Vec<(&String, &Tensor)> = variables
        .iter()
        .filter_map(|(name, var)| relative(name, prefix).map(|_| (name, var)))
        .collect();
    targets.sort_by(|a, b| a.0.cmp(b.0));
    tch::no_grad(|| {
        for (name, var) in targets {
            let key = relative(name, prefix).expect("filtered above");
            match weights.remove(key) {
                Some(value) if value.size() == var.size() => {
                    var.shallow_clone().copy_(&value.to_kind(var.kind()));
                }
                Some(value) => mismatched.push(format!(
                    "{key} (file {:?}, model {:?})",
                    value.size(),
                    var.size()
                )),
                None if fresh(key) => {}
                None => missing.push(key.to_owned()),
            }
        }
    });
    let unexpected: Vec<String> = weights.into_keys().collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        return Ok(());
    }
    bail!(
        "weights {} do not fit the model{}:{}{}{}",
        file.display(),
        if prefix.is_empty() {
            String::new()
        } else {
            format!(" at {prefix}")
        },
        listing("missing keys", &missing),
        listing("unexpected keys", &unexpected),
        listing("shape mismatches", &mismatched),
    )
}

fn relative<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('.')
}

fn listing(what: &str, keys: &[String]) -> String {
    const SHOWN: usize = 20;
    if keys.is_empty() {
        return String::new();
    }
    let more = if keys.len() > SHOWN {
        format!(" … and {} more", keys.len() - SHOWN)
    } else {
        String::new()
    };
    format!(
        "\n  {what} ({}): {}{more}",
        keys.len(),
        keys[..keys.len().min(SHOWN)].join(", ")
    )
}

/// Hugging Face `CLIPVisionModel` names → our (OpenAI) names under `visual`: q, k and v are fused
/// into `in_proj_*`, positions are resized to `cfg`'s grid, and blocks past the ones built are
/// dropped (the reference drops CLIP's last block).
///
/// # Errors
/// A block with only some of q, k, v.
pub fn clip_from_hf(weights: Weights, cfg: &VisionConfig) -> anyhow::Result<Weights> {
    let mut source: Weights = weights
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("vision_model.").unwrap_or(&k).to_owned(), v))
        .collect();
    source.remove("embeddings.position_ids");
    let mut out = Weights::new();
    for (from, to) in [
        ("embeddings.class_embedding", "class_embedding"),
        ("embeddings.patch_embedding.weight", "conv1.weight"),
        ("pre_layrnorm.weight", "ln_pre.weight"),
        ("pre_layrnorm.bias", "ln_pre.bias"),
        ("post_layernorm.weight", "ln_post.weight"),
        ("post_layernorm.bias", "ln_post.bias"),
    ] {
        rename(&mut source, &mut out, from, to);
    }
    if let Some(table) = source.remove("embeddings.position_embedding.weight") {
        out.insert(
            "positional_embedding".into(),
            interpolate_positions(&table, cfg.grid()),
        );
    }
    let mut layer = 0;
    while source
        .keys()
        .any(|k| k.starts_with(&format!("encoder.layers.{layer}.")))
    {
        let from = format!("encoder.layers.{layer}.");
        if layer >= cfg.built_layers() {
            source.retain(|k, _| !k.starts_with(&from));
            layer += 1;
            continue;
        }
        let to = format!("transformer.resblocks.{layer}.");
        for part in ["weight", "bias"] {
            let qkv: Vec<Tensor> = ["q_proj", "k_proj", "v_proj"]
                .iter()
                .filter_map(|p| source.remove(&format!("{from}self_attn.{p}.{part}")))
                .collect();
            match qkv.len() {
                0 => {}
                3 => {
                    out.insert(format!("{to}attn.in_proj_{part}"), Tensor::cat(&qkv, 0));
                }
                n => bail!("CLIP block {layer} has {n} of q/k/v {part}s"),
            }
        }
        for (f, t) in [
            ("self_attn.out_proj", "attn.out_proj"),
            ("layer_norm1", "ln_1"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
            ("layer_norm2", "ln_2"),
        ] {
            for part in ["weight", "bias"] {
                rename(
                    &mut source,
                    &mut out,
                    &format!("{from}{f}.{part}"),
                    &format!("{to}{t}.{part}"),
                );
            }
        }
        layer += 1;
    }
    // Whatever is left keeps its name and shows up as unexpected when assigned.
    out.extend(source);
    Ok(out)
}

/// Moves `source[from]`, if present, to `out[to]`.
fn rename(source: &mut Weights, out: &mut Weights, from: &str, to: &str) {
    if let Some(t) = source.remove(from) {
        out.insert(to.to_owned(), t);
    }
}

/// Hugging Face `BertModel` / `RobertaModel` names → ours: the `bert.` / `roberta.` prefix is
/// removed, and the pooler (unused by the reference) and the `position_ids` buffer are dropped.
pub fn text_from_hf(weights: Weights) -> Weights {
    weights
        .into_iter()
        .map(|(k, v)| {
            let k = k
                .strip_prefix("bert.")
                .or_else(|| k.strip_prefix("roberta."))
                .unwrap_or(&k)
                .to_owned();
            (k, v)
        })
        .filter(|(k, _)| !k.starts_with("pooler.") && k != "embeddings.position_ids")
        .collect()
}

/// torch-geometric `GATConv` names → ours (`lin_src.weight`, `att_src`, `att_dst`, `bias`):
/// PyG ≥ 2.3 stores the shared map as `lin.weight`; PyG 2.0 stores it twice, as `lin_src` and
/// `lin_dst` (the same module), and the copy is dropped.
///
/// # Errors
/// A `lin_dst.weight` that differs from its `lin_src.weight` (separate maps are not supported).
pub fn gat_from_pyg(weights: Weights) -> anyhow::Result<Weights> {
    let mut out = Weights::new();
    let mut targets = Vec::new();
    for (key, value) in weights {
        if let Some(layer) = key.strip_suffix("lin.weight") {
            out.insert(format!("{layer}lin_src.weight"), value);
        } else if let Some(layer) = key.strip_suffix("lin_dst.weight") {
            targets.push((layer.to_owned(), value));
        } else {
            out.insert(key, value);
        }
    }
    for (layer, target) in targets {
        match out.get(&format!("{layer}lin_src.weight")) {
            Some(source) if source.equal(&target) => {}
            _ => bail!(
                "GAT layer {layer:?} has a lin_dst map that differs from lin_src (separate maps are not supported)"
            ),
        }
    }
    Ok(out)
}

/// Keys of an OpenAI CLIP checkpoint that belong to the text tower or the final projection,
/// which ARL's vision tower does not build.
const OPENAI_UNUSED: [&str; 7] = [
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
    "logit_scale",
    "visual.proj",
];

/// OpenAI CLIP names (`visual.*`) → ours under `visual`: the text tower and `visual.proj` are
/// dropped, as are blocks past the ones built; positions are resized to `cfg`'s grid.
pub fn clip_from_openai(weights: Weights, cfg: &VisionConfig) -> Weights {
    let mut out = Weights::new();
    for (key, value) in weights {
        let Some(visual) = key.strip_prefix("visual.") else {
            if !OPENAI_UNUSED.iter().any(|u| key.starts_with(u)) {
                out.insert(key, value); // left for `assign` to report
            }
            continue;
        };
        if key == "visual.proj"
            || beyond_built(visual, "transformer.resblocks.", cfg.built_layers())
        {
            continue;
        }
        let value = if visual == "positional_embedding" {
            interpolate_positions(&value, cfg.grid())
        } else {
            value
        };
        out.insert(visual.to_owned(), value);
    }
    out
}

/// Whether `key` names a block `prefix N.…` with N ≥ `built`.
fn beyond_built(key: &str, prefix: &str, built: i64) -> bool {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse::<i64>().ok())
        .is_some_and(|n| n >= built)
}

/// METER's module names → ARL's (ARL_SPEC.md §1.8). The knowledge sublayers and the align head
/// have no METER counterpart: load with [`is_fresh_from_meter`] as the allow-list.
pub const METER_TO_ARL: [(&str, &str); 11] = [
    ("vit_model.", "vision_encoder."),
    ("text_transformer.", "language_encoder."),
    ("cross_modal_image_layers.", "multi_modal_vision_layers."),
    ("cross_modal_text_layers.", "multi_modal_language_layers."),
    ("cross_modal_image_transform.", "multi_modal_vision_proj."),
    ("cross_modal_text_transform.", "multi_modal_language_proj."),
    ("token_type_embeddings.", "modality_type_embeddings."),
    ("cross_modal_image_pooler.", "multi_modal_vision_pooler."),
    ("cross_modal_text_pooler.", "multi_modal_language_pooler."),
    ("itm_score.", "itm_head."),
    ("mlm_score.", "mlm_head."),
];

/// Whether an ARL parameter has no METER counterpart and starts fresh: the knowledge
/// sublayers, the align head and the MIM decoder.
pub fn is_fresh_from_meter(key: &str) -> bool {
    key.starts_with("align_head.")
        || key.starts_with("mim_head.")
        || (key.starts_with("multi_modal_language_layers.") && key.contains("knowledge"))
}

/// A METER checkpoint's names → ARL's; keys outside the map keep their names (and are reported
/// by `assign` if unknown). `vision_encoder.visual.positional_embedding` is resized to `cfg`.
pub fn arl_from_meter(weights: Weights, cfg: &VisionConfig) -> Weights {
    let renamed = weights.into_iter().map(|(key, value)| {
        let key = METER_TO_ARL
            .iter()
            .find_map(|(from, to)| key.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or(key);
        (key, value)
    });
    resize_arl_positions(renamed.collect(), cfg)
}

/// An ARL checkpoint as is, with its vision positions resized to `cfg` (fine-tuning at another
/// resolution than pretraining).
pub fn resize_arl_positions(mut weights: Weights, cfg: &VisionConfig) -> Weights {
    let key = "vision_encoder.visual.positional_embedding";
    if let Some(table) = weights.remove(key) {
        weights.insert(key.to_owned(), interpolate_positions(&table, cfg.grid()));
    }
    weights
}

/// Writes every variable of `vs` (ARL names) to a safetensors file.
///
/// # Errors
/// The file cannot be written (named).
pub fn export(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let variables: Weights = vs.variables().into_iter().collect();
    let named: Vec<(&str, &Tensor)> = variables.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Tensor::write_safetensors(&named, path)
        .with_context(|| format!("writing weights {}", path.display()))
}
