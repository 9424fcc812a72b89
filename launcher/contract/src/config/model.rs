//! `[model]`: the ARL model's settings and the two presets, `tiny` (tests and the CPU demo) and
//! `base` (the paper's ViT-B/16 at 288 px with RoBERTa-base; ARL_SPEC.md §1). The section names
//! a preset and overrides any of its keys in place (`[model.vision] image_size = 384`); the
//! resolved config holds every key.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::model_init::ModelInit;

/// The CLIP ViT vision tower (ARL_SPEC.md §1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionConfig {
    /// Input resolution in pixels (square).
    pub image_size: i64,
    /// Patch size in pixels.
    pub patch_size: i64,
    /// Token width.
    pub width: i64,
    /// Blocks of the pretrained tower (12 for ViT-B/16).
    pub layers: i64,
    /// Attention heads.
    pub heads: i64,
    /// Build every pretrained block; the reference (after METER) drops the last one.
    pub keep_last_layer: bool,
}

impl VisionConfig {
    /// Blocks actually built: `layers - 1` unless `keep_last_layer`.
    pub fn built_layers(&self) -> i64 {
        if self.keep_last_layer {
            self.layers
        } else {
            self.layers - 1
        }
    }

    /// Patches per side at `image_size`.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }
}

/// Which Hugging Face family the language encoder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextFamily {
    /// RoBERTa: position ids start after the padding id.
    Roberta,
    /// BERT: position ids start at 0.
    Bert,
}

/// The BERT-family language encoder (ARL_SPEC.md §1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// RoBERTa or BERT position ids.
    pub family: TextFamily,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Hidden width.
    pub hidden: i64,
    /// Encoder layers.
    pub layers: i64,
    /// Attention heads.
    pub heads: i64,
    /// Feed-forward width.
    pub intermediate: i64,
    /// Rows of the position-embedding table.
    pub max_positions: i64,
    /// Rows of the token-type table.
    pub type_vocab_size: i64,
    /// LayerNorm epsilon (1e-5 for RoBERTa, 1e-12 for BERT).
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    pub pad_token_id: i64,
    /// Dropout on hidden states and attention probabilities.
    pub dropout: f64,
}

/// The whole model's settings (the `[model]` section), read as a preset with overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct ModelConfig {
    /// Vision tower.
    pub vision: VisionConfig,
    /// Language encoder.
    pub text: TextConfig,
    /// Co-attention fusion with knowledge.
    pub fusion: FusionConfig,
    /// Entity graph encoder.
    pub entity: EntityConfig,
    /// MIM decoder.
    pub mim: MimConfig,
    /// The pretrained weights it starts from (none: random).
    #[serde(default, skip_serializing_if = "ModelInit::is_empty")]
    pub init: ModelInit,
}

impl ModelConfig {
    /// A named preset: `tiny` or `base`.
    ///
    /// # Errors
    /// An unknown name, listing the known ones.
    pub fn preset(name: &str) -> anyhow::Result<Self> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "base" => Ok(Self::base()),
            other => anyhow::bail!("unknown model preset {other:?} (known: tiny, base)"),
        }
    }

    /// The paper's model: CLIP ViT-B/16 at 288 px (11 of 12 blocks), RoBERTa-base.
    pub fn base() -> Self {
        Self {
            vision: VisionConfig {
                image_size: 288,
                patch_size: 16,
                width: 768,
                layers: 12,
                heads: 12,
                keep_last_layer: false,
            },
            text: TextConfig {
                family: TextFamily::Roberta,
                vocab_size: 50265,
                hidden: 768,
                layers: 12,
                heads: 12,
                intermediate: 3072,
                max_positions: 514,
                type_vocab_size: 1,
                layer_norm_eps: 1e-5,
                pad_token_id: 1,
                dropout: 0.1,
            },
            fusion: FusionConfig {
                hidden: 768,
                heads: 12,
                intermediate: 3072,
                layers: 6,
                entity_hidden: 256,
                entity_heads: 4,
                entity_intermediate: 1024,
                layer_norm_eps: 1e-12,
                dropout: 0.1,
                cross_source: CrossSource::PreviousLayer,
                knowledge: true,
            },
            entity: EntityConfig {
                width: 256,
                gat_heads: 8,
                gat_head_width: 64,
                dropout: 0.2,
                final_relu: true,
            },
            mim: MimConfig {
                width: 384,
                layers: 4,
                heads: 6,
                tap_layer: 3,
                mask_ratio: 0.75,
            },
            init: ModelInit::default(),
        }
    }

    /// A small model with the same structure, for tests and the CPU demo.
    pub fn tiny() -> Self {
        Self {
            vision: VisionConfig {
                image_size: 32,
                patch_size: 8,
                width: 64,
                layers: 3,
                heads: 4,
                keep_last_layer: false,
            },
            text: TextConfig {
                family: TextFamily::Roberta,
                vocab_size: 1000,
                hidden: 64,
                layers: 2,
                heads: 4,
                intermediate: 128,
                max_positions: 66,
                type_vocab_size: 1,
                layer_norm_eps: 1e-5,
                pad_token_id: 1,
                dropout: 0.1,
            },
            fusion: FusionConfig {
                hidden: 64,
                heads: 4,
                intermediate: 128,
                layers: 2,
                entity_hidden: 32,
                entity_heads: 2,
                entity_intermediate: 64,
                layer_norm_eps: 1e-12,
                dropout: 0.1,
                cross_source: CrossSource::PreviousLayer,
                knowledge: true,
            },
            entity: EntityConfig {
                width: 32,
                gat_heads: 4,
                gat_head_width: 8,
                dropout: 0.2,
                final_relu: true,
            },
            mim: MimConfig {
                width: 32,
                layers: 1,
                heads: 4,
                tap_layer: 1,
                mask_ratio: 0.75,
            },
            init: ModelInit::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

/// A model section with every key, as the resolved config writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolved {
    vision: VisionConfig,
    text: TextConfig,
    fusion: FusionConfig,
    entity: EntityConfig,
    mim: MimConfig,
}

impl ModelConfig {
    /// The `[model]` section of a job config: `preset = "tiny" | "base"` (default `tiny`), with
    /// any key of the preset overridden in place (`[model.vision] image_size = 384`).
    ///
    /// # Errors
    /// An unknown preset, or an unknown key or a wrong type, named with its dotted path.
    pub fn from_section(section: &toml::Table) -> anyhow::Result<Self> {
        let mut overrides = section.clone();
        let init = match overrides.remove("init") {
            None => ModelInit::default(),
            Some(init) => serde_path_to_error::deserialize(init)
                .map_err(|e| anyhow::anyhow!("model.init.{}: {}", e.path(), e.inner()))?,
        };
        let preset = match overrides.remove("preset") {
            None => "tiny".to_owned(),
            Some(toml::Value::String(name)) => name,
            Some(other) => bail!("model.preset must be a string, not {other}"),
        };
        let mut merged =
            toml::Table::try_from(Self::preset(&preset)?).context("serialising the preset")?;
        merged.remove("init");
        merge(&mut merged, overrides, "model")?;
        let Resolved {
            vision,
            text,
            fusion,
            entity,
            mim,
        } = serde_path_to_error::deserialize(toml::Value::Table(merged))
            .map_err(|e| anyhow::anyhow!("model.{}: {}", e.path(), e.inner()))?;
        Ok(Self {
            vision,
            text,
            fusion,
            entity,
            mim,
            init,
        })
    }
}

impl TryFrom<toml::Table> for ModelConfig {
    type Error = String;

    fn try_from(section: toml::Table) -> Result<Self, String> {
        Self::from_section(&section).map_err(|e| format!("{e:#}"))
    }
}

/// Overwrites `base` with `overrides`, recursively; a key that `base` lacks is an error naming
/// its dotted path.
fn merge(base: &mut toml::Table, overrides: toml::Table, path: &str) -> anyhow::Result<()> {
    for (key, value) in overrides {
        let dotted = format!("{path}.{key}");
        match (base.get_mut(&key), value) {
            (None, _) => bail!("unknown key {dotted}"),
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => {
                merge(inner, value, &dotted)?
            }
            (Some(slot), value) => *slot = value,
        }
    }
    Ok(())
}

/// A number from a Hugging Face `config.json`, naming the key and file when absent.
fn hf_number(json: &serde_json::Value, key: &str, path: &Path) -> anyhow::Result<f64> {
    json.get(key)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{}: missing or non-numeric key {key:?}", path.display()))
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

impl TextConfig {
    /// From a Hugging Face `config.json` of a `BertModel` or `RobertaModel`.
    ///
    /// # Errors
    /// An unreadable file, another model type, or a missing key (named with the file).
    pub fn from_hf_json(path: &Path) -> anyhow::Result<Self> {
        let json = read_json(path)?;
        let family = match json.get("model_type").and_then(serde_json::Value::as_str) {
            Some("roberta") => TextFamily::Roberta,
            Some("bert") => TextFamily::Bert,
            other => bail!(
                "{}: model_type {other:?} is neither \"bert\" nor \"roberta\"",
                path.display()
            ),
        };
        let int = |key| hf_number(&json, key, path).map(|v| v as i64);
        Ok(Self {
            family,
            vocab_size: int("vocab_size")?,
            hidden: int("hidden_size")?,
            layers: int("num_hidden_layers")?,
            heads: int("num_attention_heads")?,
            intermediate: int("intermediate_size")?,
            max_positions: int("max_position_embeddings")?,
            type_vocab_size: int("type_vocab_size")?,
            layer_norm_eps: hf_number(&json, "layer_norm_eps", path)?,
            pad_token_id: int("pad_token_id")?,
            dropout: hf_number(&json, "hidden_dropout_prob", path)?,
        })
    }
}

impl VisionConfig {
    /// From a Hugging Face `CLIPVisionConfig` `config.json`, to run at `image_size`.
    ///
    /// # Errors
    /// An unreadable file, a missing key, or an MLP that is not 4× the width (CLIP's).
    pub fn from_hf_clip_json(
        path: &Path,
        image_size: i64,
        keep_last_layer: bool,
    ) -> anyhow::Result<Self> {
        let json = read_json(path)?;
        let json = json.get("vision_config").cloned().unwrap_or(json);
        let int = |key| hf_number(&json, key, path).map(|v| v as i64);
        let width = int("hidden_size")?;
        if int("intermediate_size")? != 4 * width {
            bail!(
                "{}: intermediate_size must be 4 × hidden_size for a CLIP tower",
                path.display()
            );
        }
        Ok(Self {
            image_size,
            patch_size: int("patch_size")?,
            width,
            layers: int("num_hidden_layers")?,
            heads: int("num_attention_heads")?,
            keep_last_layer,
        })
    }
}

/// What a stream's cross-attention attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrossSource {
    /// The other stream's input to this layer (reference code).
    PreviousLayer,
    /// The other stream's self-attention output in this layer (paper, eqs. 6-7 and 16).
    SameLayer,
}

/// Settings of the fusion module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// Width of both streams.
    pub hidden: i64,
    /// Attention heads of both streams.
    pub heads: i64,
    /// Feed-forward width.
    pub intermediate: i64,
    /// Co-attention layers.
    pub layers: i64,
    /// Entity (knowledge) width.
    pub entity_hidden: i64,
    /// Knowledge attention heads.
    pub entity_heads: i64,
    /// Knowledge feed-forward width.
    pub entity_intermediate: i64,
    /// LayerNorm epsilon of every sublayer.
    pub layer_norm_eps: f64,
    /// Dropout on hidden states and attention probabilities.
    pub dropout: f64,
    /// Where cross-attention reads the other stream.
    pub cross_source: CrossSource,
    /// Reason with knowledge (the paper's RK): the text layers carry the knowledge sublayers.
    /// Off: METER's text layer, and the entity stream passes through unchanged.
    #[serde(default = "knowledge_on")]
    pub knowledge: bool,
}

fn knowledge_on() -> bool {
    true
}

/// Settings of the entity graph encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityConfig {
    /// Entity vector width (TransE dimension).
    pub width: i64,
    /// Heads of the first GAT layer.
    pub gat_heads: i64,
    /// Width of each head of the first GAT layer, which concatenates them: the reference's
    /// `GATConv(256, 64, heads=8)` is 512 wide, and its second layer maps that back to `width`.
    pub gat_head_width: i64,
    /// Dropout on the table, between the GAT layers and on attention coefficients.
    pub dropout: f64,
    /// A ReLU after the second layer of the image and text alignment MLPs (the reference
    /// code); off: a plain projection before the dot product, closer to the paper's linear map.
    #[serde(default = "final_relu_on")]
    pub final_relu: bool,
}

fn final_relu_on() -> bool {
    true
}

/// Settings of the MIM decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimConfig {
    /// Decoder width.
    pub width: i64,
    /// Decoder blocks.
    pub layers: i64,
    /// Decoder heads.
    pub heads: i64,
    /// The fusion layer whose image input the decoder reads (3: after layers 0, 1, 2).
    pub tap_layer: i64,
    /// Fraction of patches removed.
    pub mask_ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> anyhow::Result<ModelConfig> {
        ModelConfig::from_section(&toml::from_str(text).unwrap())
    }

    #[test]
    fn a_section_picks_a_preset_and_overrides_keys_in_place() {
        let cfg = section("preset = \"base\"\n[vision]\nimage_size = 384\n[fusion]\ncross_source = \"same-layer\"").unwrap();
        assert_eq!(cfg.vision.image_size, 384);
        assert_eq!(cfg.vision.grid(), 24);
        assert_eq!(cfg.fusion.cross_source, CrossSource::SameLayer);
        assert_eq!(cfg.text, ModelConfig::base().text);
        assert_eq!(section("").unwrap(), ModelConfig::tiny());
    }

    #[test]
    fn unknown_keys_presets_and_types_are_named() {
        let error = format!("{:#}", section("[vision]\nimage_sise = 384").unwrap_err());
        assert!(error.contains("model.vision.image_sise"), "{error}");
        let error = format!("{:#}", section("preset = \"large\"").unwrap_err());
        assert!(error.contains("unknown model preset \"large\""), "{error}");
        let error = format!(
            "{:#}",
            section("[vision]\nimage_size = \"big\"").unwrap_err()
        );
        assert!(error.contains("image_size"), "{error}");
    }
}
