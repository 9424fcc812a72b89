//! `[model.init]`: the pretrained weights a model starts from (ARL_SPEC.md §1.8). Each file's
//! format is told from its keys, renamed to ours ([`super::load`]) and assigned strictly: every
//! variable under the file's part of the model must be in it and every tensor of it used, with
//! only METER's missing modules allowed to start fresh ([`load::is_fresh_from_meter`]).

use std::path::Path;

use anyhow::bail;
use arl_contract::JobConfig;
use arl_contract::config::model::ModelConfig;
use arl_contract::events::InitFile;
use tch::{Device, Kind, Tensor, nn};

use super::arl::ArlModel;
use super::load::{self, Weights};
use crate::knowledge::store;

/// Where a tower's variables live in [`super::arl::ArlModel`].
const VISION_PREFIX: &str = "vision_encoder.visual";
const TEXT_PREFIX: &str = "language_encoder";

/// A file's layout, told from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Hugging Face `CLIPVisionModel` (`vision_model.*`).
    HfClip,
    /// An OpenAI CLIP state dict (`visual.*`).
    OpenAiClip,
    /// Hugging Face `BertModel` / `RobertaModel` (`embeddings.word_embeddings.weight`, perhaps
    /// under `bert.` or `roberta.`).
    HfText,
    /// A METER checkpoint (`vit_model.*`, `text_transformer.*`).
    Meter,
    /// ARL's own names (`vision_encoder.*`), as `arl export` and the reference write them.
    Arl,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::HfClip => "Hugging Face CLIPVisionModel",
            Self::OpenAiClip => "OpenAI CLIP",
            Self::HfText => "Hugging Face BERT/RoBERTa",
            Self::Meter => "METER",
            Self::Arl => "ARL",
        }
    }

    /// The format of the file under `key` (`whole`, `vision`, `text`), from its tensor names.
    fn detect(key: &str, weights: &Weights, path: &Path) -> anyhow::Result<Self> {
        let any = |prefixes: &[&str]| {
            weights
                .keys()
                .any(|k| prefixes.iter().any(|p| k.starts_with(p)))
        };
        let found = match key {
            "vision" if any(&["vision_model.", "embeddings.patch_embedding."]) => {
                Some(Self::HfClip)
            }
            "vision" if any(&["visual."]) => Some(Self::OpenAiClip),
            "text"
                if weights
                    .keys()
                    .any(|k| k.ends_with("embeddings.word_embeddings.weight")) =>
            {
                Some(Self::HfText)
            }
            "whole" if any(&["vit_model.", "text_transformer."]) => Some(Self::Meter),
            "whole" if any(&["vision_encoder."]) => Some(Self::Arl),
            _ => None,
        };
        let Some(format) = found else {
            let expected = match key {
                "vision" => {
                    "a Hugging Face CLIPVisionModel (vision_model.*) or an OpenAI CLIP state dict (visual.*)"
                }
                "text" => {
                    "a Hugging Face BertModel or RobertaModel (embeddings.word_embeddings.weight)"
                }
                _ => "METER (vit_model.*, text_transformer.*) or ARL (vision_encoder.*) weights",
            };
            let first: Vec<&str> = weights.keys().take(5).map(String::as_str).collect();
            bail!(
                "model.init.{key} = {}: not {expected}; its first keys: {}",
                path.display(),
                first.join(", ")
            );
        };
        Ok(format)
    }
}

/// Sets the variables of `vs` (an [`super::arl::ArlModel`] at `cfg`) from every file of
/// `cfg.init`, in the order `whole`, `vision`, `text`; returns what each file was.
///
/// # Errors
/// An unreadable file, one of no known format, or one that does not fit the model: each named
/// with its key, path and the keys at fault.
pub fn load(vs: &nn::VarStore, cfg: &ModelConfig) -> anyhow::Result<Vec<InitFile>> {
    let mut loaded = Vec::new();
    for (key, path) in cfg.init.files() {
        let weights = load::read(path)?;
        let tensors = weights.len();
        let format = Format::detect(key, &weights, path)?;
        match format {
            Format::HfClip => {
                let weights = load::clip_from_hf(weights, &cfg.vision)?;
                load::assign(vs, VISION_PREFIX, weights, |_| false, path)?;
            }
            Format::OpenAiClip => {
                let weights = load::clip_from_openai(weights, &cfg.vision);
                load::assign(vs, VISION_PREFIX, weights, |_| false, path)?;
            }
            Format::HfText => {
                load::assign(
                    vs,
                    TEXT_PREFIX,
                    load::text_from_hf(weights),
                    |_| false,
                    path,
                )?;
            }
            Format::Meter => {
                let weights = load::arl_from_meter(weights, &cfg.vision);
                load::assign(vs, "", weights, load::is_fresh_from_meter, path)?;
            }
            Format::Arl => {
                let weights = load::resize_arl_positions(weights, &cfg.vision);
                load::assign(vs, "", weights, |_| false, path)?;
            }
        }
        loaded.push(InitFile {
            key: key.to_owned(),
            path: path.display().to_string(),
            format: format.name().to_owned(),
            tensors,
            sha256: cfg.init.sha256.get(key).cloned().unwrap_or_default(),
        });
    }
    Ok(loaded)
}

/// Builds the model of `config` on the CPU and sets it from `[model.init]` as the start of
/// training does (`arl check`): over the knowledge folder's entities when it exists, else as
/// many as a whole-model file's entity table has.
///
/// # Errors
/// As [`load`].
pub fn check(config: &JobConfig) -> anyhow::Result<Vec<InitFile>> {
    let entities = match config.knowledge_dir().ok().map(store::read) {
        Some(Ok((graph, _))) => graph.entities.len() as i64,
        _ => match &config.model.init.whole {
            Some(path) => load::read(path)?
                .get("align_head.x")
                .map_or(1, |table| table.size()[0]),
            None => 1,
        },
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let edges = Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu));
    let _model = ArlModel::new(&vs.root(), &config.model, entities, &edges);
    load(&vs, &config.model)
}
