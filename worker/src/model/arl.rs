//! The assembled ARL model (ARL_SPEC.md §1.1), in ARL's module names: uni-modal encoders,
//! projections and modality embeddings, the co-attention layers with knowledge, the poolers and
//! the pretraining heads.

use tch::{Tensor, nn};

use super::align::AlignHead;
use super::fusion::{FusionLayer, FusionMasks};
use super::heads::{ItmHead, MimDecoder, MlmHead};
use super::layers::{NORMAL_002, additive_mask, linear};
use super::text::TextEncoder;
use super::vision::ClipVision;
use arl_contract::config::model::ModelConfig;

/// The pretraining model.
#[derive(Debug)]
pub struct ArlModel {
    /// `vision_encoder.visual`.
    pub vision: ClipVision,
    /// `language_encoder`.
    pub text: TextEncoder,
    vision_proj: nn::Linear,
    language_proj: nn::Linear,
    modality_type_embeddings: nn::Embedding,
    layers: Vec<FusionLayer>,
    vision_pooler: nn::Linear,
    language_pooler: nn::Linear,
    /// `mlm_head`.
    pub mlm_head: MlmHead,
    /// `itm_head`.
    pub itm_head: ItmHead,
    /// `mim_head`.
    pub mim_head: MimDecoder,
    /// `align_head` (also provides the entity features of every fusion pass).
    pub align_head: AlignHead,
}

/// What one fusion pass returns.
#[derive(Debug)]
pub struct FusionOutput {
    /// Final text states (B, Lt, D).
    pub text: Tensor,
    /// Final image states (B, Nv, D).
    pub image: Tensor,
    /// [text pooled ; image pooled] (B, 2D), text first.
    pub cls_feats: Tensor,
    /// The image stream entering each layer, then the final one: `layers + 1` tensors (B, Nv, D).
    pub image_taps: Vec<Tensor>,
}

impl ArlModel {
    /// Builds every module under `vs` over an entity graph of `entities` nodes and a (2, E)
    /// `edge_index`.
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, entities: i64, edge_index: &Tensor) -> Self {
        let d = cfg.fusion.hidden;
        let (language, vision) = (
            vs / "multi_modal_language_layers",
            vs / "multi_modal_vision_layers",
        );
        let emb = nn::EmbeddingConfig {
            ws_init: NORMAL_002,
            ..Default::default()
        };
        let grid = cfg.vision.grid();
        Self {
            vision: ClipVision::new(vs / "vision_encoder" / "visual", &cfg.vision),
            text: TextEncoder::new(vs / "language_encoder", &cfg.text),
            vision_proj: linear(vs / "multi_modal_vision_proj", cfg.vision.width, d),
            language_proj: linear(vs / "multi_modal_language_proj", cfg.text.hidden, d),
            modality_type_embeddings: nn::embedding(vs / "modality_type_embeddings", 2, d, emb),
            layers: (0..cfg.fusion.layers)
                .map(|i| FusionLayer::new(&language, &vision, i, &cfg.fusion))
                .collect(),
            vision_pooler: linear(vs / "multi_modal_vision_pooler" / "dense", d, d),
            language_pooler: linear(vs / "multi_modal_language_pooler" / "dense", d, d),
            mlm_head: MlmHead::new(vs / "mlm_head", d, cfg.text.vocab_size),
            itm_head: ItmHead::new(vs / "itm_head", d),
            mim_head: MimDecoder::new(vs / "mim_head", &cfg.mim, d, grid, cfg.vision.patch_size),
            align_head: AlignHead::new(vs / "align_head", &cfg.entity, entities, edge_index, d),
        }
    }

    /// Text ids and keep-mask (B, Lt) → projected text tokens + modality row 0 (B, Lt, D).
    pub fn embed_text(&self, ids: &Tensor, keep: &Tensor, train: bool) -> Tensor {
        let states = self
            .text
            .forward(ids, keep, train)
            .apply(&self.language_proj);
        &states + self.modality_row(0, &states)
    }

    /// Vision tokens (B, Nv, Wv) → projected + modality row 1 (B, Nv, D).
    pub fn embed_image(&self, tokens: &Tensor) -> Tensor {
        let states = tokens.apply(&self.vision_proj);
        &states + self.modality_row(1, &states)
    }

    fn modality_row(&self, row: i64, like: &Tensor) -> Tensor {
        Tensor::from_slice(&[row])
            .to_device(like.device())
            .apply(&self.modality_type_embeddings)
            .view([1, 1, -1])
    }

    /// The co-attention layers and poolers. text (B, Lt, D) with keep (B, Lt); image (B, Nv, D);
    /// entity features (B, S, De) for ids (B, S) (−100 = empty); positions P (B, S, Lt).
    #[allow(clippy::too_many_arguments)]
    pub fn fuse(
        &self,
        text: &Tensor,
        text_keep: &Tensor,
        image: &Tensor,
        entities: &Tensor,
        entity_ids: &Tensor,
        positions: &Tensor,
        train: bool,
    ) -> FusionOutput {
        let text_mask = additive_mask(text_keep, text.kind());
        let entity_mask = additive_mask(&entity_ids.ne(-100), text.kind());
        let masks = FusionMasks {
            text: &text_mask,
            image: None,
            entity: &entity_mask,
        };
        let mut image_taps = Vec::with_capacity(self.layers.len() + 1);
        let (mut t, mut v, mut k) = (
            text.shallow_clone(),
            image.shallow_clone(),
            entities.shallow_clone(),
        );
        for layer in &self.layers {
            image_taps.push(v.shallow_clone());
            (t, v, k) = layer.forward(&t, &v, &k, positions, &masks, train);
        }
        image_taps.push(v.shallow_clone());
        let pooled = |xs: &Tensor, pooler: &nn::Linear| xs.select(1, 0).apply(pooler).tanh();
        let cls_feats = Tensor::cat(
            &[
                pooled(&t, &self.language_pooler),
                pooled(&v, &self.vision_pooler),
            ],
            1,
        );
        FusionOutput {
            text: t,
            image: v,
            cls_feats,
            image_taps,
        }
    }
}
