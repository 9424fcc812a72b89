//! The co-attention fusion layers (ARL_SPEC.md §1.5): an image layer and a text layer that
//! carries the knowledge sub-stream, both post-LN BERT style. By default each stream's
//! cross-attention reads the other stream's *input* to the layer (the reference code, after
//! METER); [`CrossSource::SameLayer`] reads its self-attention output instead (the paper).

use arl_contract::config::model::{CrossSource, FusionConfig};
use tch::{Tensor, nn};

use super::layers::linear;
use super::text::{BertAttention, FeedForward, SelfOutput};

/// Masks of one fusion pass, additive, shaped (B, 1, 1, L).
pub struct FusionMasks<'a> {
    /// Text padding.
    pub text: &'a Tensor,
    /// Image tokens (all kept in the reference; `None` = no mask).
    pub image: Option<&'a Tensor>,
    /// Entity slots (id ≠ −100).
    pub entity: &'a Tensor,
}

/// Image layer (`BertCrossLayer`): self-attention, cross-attention to text, feed-forward.
#[derive(Debug)]
pub struct ImageLayer {
    attention: BertAttention,
    crossattention: BertAttention,
    ffn: FeedForward,
}

impl ImageLayer {
    /// Keys `attention`, `crossattention`, `intermediate`, `output` under `vs`.
    pub fn new(vs: nn::Path, cfg: &FusionConfig) -> Self {
        let (h, eps, p) = (cfg.hidden, cfg.layer_norm_eps, cfg.dropout);
        Self {
            attention: BertAttention::new(&vs / "attention", h, h, cfg.heads, eps, p),
            crossattention: BertAttention::new(&vs / "crossattention", h, h, cfg.heads, eps, p),
            ffn: FeedForward::new(vs, h, cfg.intermediate, eps, p),
        }
    }

    /// Vs = LN(V + SA(V)). V: (B, Nv, D).
    fn attend_self(&self, image: &Tensor, masks: &FusionMasks, train: bool) -> Tensor {
        self.attention.forward(image, image, masks.image, train)
    }

    /// V' = FFN(LN(Vs + CA(Vs, text))). text: (B, Lt, D) → (B, Nv, D).
    fn finish(
        &self,
        image_self: &Tensor,
        text: &Tensor,
        masks: &FusionMasks,
        train: bool,
    ) -> Tensor {
        let crossed = self
            .crossattention
            .forward(image_self, text, Some(masks.text), train);
        self.ffn.forward(&crossed, train)
    }
}

/// Text layer (`BertCrossLayerWithKnowledge`): self-attention, cross-attention to the image and
/// a feed-forward, with the [`Knowledge`] sublayers between them unless RK is off (then it is
/// METER's `BertCrossLayer`).
#[derive(Debug)]
pub struct TextLayer {
    attention: BertAttention,
    crossattention: BertAttention,
    ffn: FeedForward,
    knowledge: Option<Knowledge>,
}

/// The knowledge sublayers of a text layer: entity self-attention, entity→image
/// cross-attention (through `image2knowledge`), fusion of entities into the tokens they cover
/// (`knowledge2text`, `knowledge_fusion_output`) and an entity feed-forward.
#[derive(Debug)]
struct Knowledge {
    attention: BertAttention,
    crossattention: BertAttention,
    ffn: FeedForward,
    image2knowledge: nn::Linear,
    knowledge2text: nn::Linear,
    fusion_output: SelfOutput,
}

impl Knowledge {
    /// Keys `knowledge_attention`, `knowledge_crossattention`, `knowledge_intermediate`,
    /// `knowledge_output`, `image2knowledge`, `knowledge2text`, `knowledge_fusion_output`.
    fn new(vs: &nn::Path, cfg: &FusionConfig) -> Self {
        let (h, e, eps, p) = (
            cfg.hidden,
            cfg.entity_hidden,
            cfg.layer_norm_eps,
            cfg.dropout,
        );
        let attention = |name: &str| BertAttention::new(vs / name, e, e, cfg.entity_heads, eps, p);
        Self {
            attention: attention("knowledge_attention"),
            crossattention: attention("knowledge_crossattention"),
            ffn: FeedForward::with_names(
                vs,
                "knowledge_intermediate",
                "knowledge_output",
                e,
                cfg.entity_intermediate,
                eps,
                p,
            ),
            image2knowledge: linear(vs / "image2knowledge", h, e),
            knowledge2text: linear(vs / "knowledge2text", e, h),
            fusion_output: SelfOutput::new(vs / "knowledge_fusion_output", h, h, eps, p),
        }
    }

    /// Entities attending to the image: (B, Ne, De) from entity_self (B, Ne, De) and image
    /// (B, Nv, D).
    fn cross(
        &self,
        entity_self: &Tensor,
        image: &Tensor,
        masks: &FusionMasks,
        train: bool,
    ) -> Tensor {
        let image_keys = image.apply(&self.image2knowledge); // (B, Nv, De)
        self.crossattention
            .forward(entity_self, &image_keys, masks.image, train)
    }

    /// Text after cross-attention (B, Lt, D) with the entities' features added to the tokens
    /// they cover (positions P: (B, Ne, Lt)).
    fn inject(
        &self,
        entity_cross: &Tensor,
        text_cross: &Tensor,
        positions: &Tensor,
        train: bool,
    ) -> Tensor {
        let injected = positions
            .transpose(1, 2)
            .matmul(&entity_cross.apply(&self.knowledge2text)); // (B, Lt, D)
        self.fusion_output
            .forward(&(text_cross + injected), text_cross, train)
    }
}

impl TextLayer {
    /// Text keys as [`ImageLayer`], plus the [`Knowledge`] keys when `cfg.knowledge`.
    pub fn new(vs: nn::Path, cfg: &FusionConfig) -> Self {
        let (h, eps, p) = (cfg.hidden, cfg.layer_norm_eps, cfg.dropout);
        Self {
            attention: BertAttention::new(&vs / "attention", h, h, cfg.heads, eps, p),
            crossattention: BertAttention::new(&vs / "crossattention", h, h, cfg.heads, eps, p),
            ffn: FeedForward::with_names(
                &vs,
                "intermediate",
                "output",
                h,
                cfg.intermediate,
                eps,
                p,
            ),
            knowledge: cfg.knowledge.then(|| Knowledge::new(&vs, cfg)),
        }
    }

    /// Ts = LN(T + SA(T)) and Ks = LN(K + SA(K)) (K unchanged without knowledge sublayers).
    /// T: (B, Lt, D); K: (B, Ne, De).
    fn attend_self(
        &self,
        text: &Tensor,
        entities: &Tensor,
        masks: &FusionMasks,
        train: bool,
    ) -> (Tensor, Tensor) {
        let text_self = self.attention.forward(text, text, Some(masks.text), train);
        let entity_self = match &self.knowledge {
            Some(knowledge) => {
                knowledge
                    .attention
                    .forward(entities, entities, Some(masks.entity), train)
            }
            None => entities.shallow_clone(),
        };
        (text_self, entity_self)
    }

    /// The remaining sublayers, in the reference's order. image: (B, Nv, D); positions P:
    /// (B, Ne, Lt) → (T' (B, Lt, D), K' (B, Ne, De)).
    fn finish(
        &self,
        (text_self, entity_self): (&Tensor, &Tensor),
        image: &Tensor,
        positions: &Tensor,
        masks: &FusionMasks,
        train: bool,
    ) -> (Tensor, Tensor) {
        // The reference's order (it decides the dropout draws): entities, then text.
        let entity_cross = self
            .knowledge
            .as_ref()
            .map(|k| k.cross(entity_self, image, masks, train));
        let text_cross = self
            .crossattention
            .forward(text_self, image, masks.image, train);
        let Some((knowledge, entity_cross)) = self.knowledge.as_ref().zip(entity_cross) else {
            return (
                self.ffn.forward(&text_cross, train),
                entity_self.shallow_clone(),
            );
        };
        let fused = knowledge.inject(&entity_cross, &text_cross, positions, train);
        (
            self.ffn.forward(&fused, train),
            knowledge.ffn.forward(&entity_cross, train),
        )
    }
}

/// One co-attention layer: both streams updated in parallel from the previous layer's outputs.
#[derive(Debug)]
pub struct FusionLayer {
    /// The text side (`multi_modal_language_layers.N`).
    pub text: TextLayer,
    /// The image side (`multi_modal_vision_layers.N`).
    pub image: ImageLayer,
    cross_source: CrossSource,
}

impl FusionLayer {
    /// Builds layer `index` under `language` and `vision` (the two layer lists).
    pub fn new(language: &nn::Path, vision: &nn::Path, index: i64, cfg: &FusionConfig) -> Self {
        Self {
            text: TextLayer::new(language / index, cfg),
            image: ImageLayer::new(vision / index, cfg),
            cross_source: cfg.cross_source,
        }
    }

    /// (T, V, K) → (T', V', K'); shapes as in [`TextLayer`] and [`ImageLayer`].
    pub fn forward(
        &self,
        text: &Tensor,
        image: &Tensor,
        entities: &Tensor,
        positions: &Tensor,
        masks: &FusionMasks,
        train: bool,
    ) -> (Tensor, Tensor, Tensor) {
        let (text_self, entity_self) = self.text.attend_self(text, entities, masks, train);
        let image_self = self.image.attend_self(image, masks, train);
        let (text_context, image_context) = match self.cross_source {
            CrossSource::PreviousLayer => (text, image),
            CrossSource::SameLayer => (&text_self, &image_self),
        };
        let (text_out, entity_out) = self.text.finish(
            (&text_self, &entity_self),
            image_context,
            positions,
            masks,
            train,
        );
        let image_out = self.image.finish(&image_self, text_context, masks, train);
        (text_out, image_out, entity_out)
    }
}
