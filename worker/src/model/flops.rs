//! Model FLOPs of a pretraining step, counted from the config: what MFU divides by the time a
//! step takes. Only matrix products count, each (m × k)·(k × n) as 2·m·n·k: linear layers, the
//! patch convolution (a linear map of each p×p×3 patch), the attention scores QKᵀ and the
//! attention-weighted values. Softmax, activations, LayerNorm, dropout, residuals, gathers and
//! the GAT's edge scores and scatters count 0, as in PaLM's and Megatron-LM's MFU and as
//! PyTorch's `FlopCounterMode` counts (tests/tests/flops.rs checks every block below against
//! it, on the reference model of scripts/fixtures/arl_reference.py).
//!
//! A training step counts [`TRAINING_PER_FORWARD`] = 3 × its forward: the backward of a matrix
//! product is two products of the same size (the gradients of its input and of its weight).
//! That is the convention, and an upper bound: work whose output reaches no loss (the MIM
//! pass's layers after its tap, the poolers of the MLM and MIM passes) and inputs that need no
//! gradient (the images, P) have no backward: PyTorch's counter finds a backward of 1.59 × the
//! forward on the tiny step and 1.87 × on the base one, not 2 ×.
//!
//! Notation (ARL_SPEC.md §1): B samples per micro-batch, Lt text positions (texts are padded to
//! `data.max_text_len`), S entity slots, Ne entities; vision width Wv, patch p, grid g, Nv = g² + 1
//! image tokens (Nk = K + 1 in the MIM pass, K = ⌊g²·(1 − mask_ratio)⌋ kept patches); text
//! width Ht, feed-forward It; fusion width D, feed-forward I; entity width De, feed-forward Ie;
//! GAT heads H of width C; MIM decoder width Dm; vocabulary V. lin(L, a, b) = 2·L·a·b and
//! att(Lq, Lk, W) = 4·Lq·Lk·W (QKᵀ and attention·V over all heads). Per sample:
//!
//! | block | FLOPs |
//! |---|---|
//! | CLIP block, L tokens, width W | lin(L, W, 3W) + att(L, L, W) + lin(L, W, W) + lin(L, W, 4W) + lin(L, 4W, W) = 24·L·W² + 4·L²·W |
//! | vision tower, L tokens | lin(g², 3p², Wv) (conv, all patches also in the MIM pass) + blocks × CLIP block(L, Wv) |
//! | BERT attention, Lq queries of width W over Lk keys of width Wc | 2·lin(Lq, W, W) + 2·lin(Lk, Wc, W) + att(Lq, Lk, W) |
//! | feed-forward, L tokens | lin(L, W, I) + lin(L, I, W) |
//! | text tower | layers × (attention(Lt, Lt, Ht) + feed-forward(Lt, Ht, It)) |
//! | projections | lin(Lt, Ht, D); lin(Nv, Wv, D) |
//! | fusion image layer | attention(Nv, Nv, D) + attention(Nv, Lt, D) + feed-forward(Nv, D, I) |
//! | fusion text layer | attention(Lt, Lt, D) + attention(Lt, Nv, D) + feed-forward(Lt, D, I) |
//! | its knowledge sublayers (RK on) | attention(S, S, De) + lin(Nv, D, De) (`image2knowledge`) + attention(S, Nv, De) + lin(S, De, D) (`knowledge2text`) + 2·Lt·S·D (Pᵀ·E) + lin(Lt, D, D) (`knowledge_fusion_output`) + feed-forward(S, De, Ie) |
//! | fusion pass | layers × (text layer + image layer) + 2·lin(1, D, D) (poolers) |
//! | MLM head | lin(Lt, D, D) + lin(Lt, D, V) (every position, as the model computes it) |
//! | MIM decoder | lin(Nk, D, Dm) + blocks × CLIP block(g² + 1, Dm) + lin(g² + 1, Dm, 3p²) |
//! | ITM head | lin(1, 2D, 2) |
//! | alignment | 2·(lin(1, D, D) + lin(1, D, De)) (queries) + 2·lin(1, De, Ne) (logits) |
//! | GAT, per micro-batch | lin(Ne, De, H·C) + lin(Ne, H·C, De) |
//!
//! Our step (`pretext.rs`) runs, per micro-batch: the GAT once; the text tower and its
//! projection twice (masked text for MLM, plain text shared by MIM, ITM and alignment); the
//! vision tower and its projection once on the full image (shared by MLM, ITM and alignment)
//! and once on the MIM patches; three fusion passes (MLM and ITM with Nv image tokens, MIM with
//! Nk); the MLM, MIM and ITM heads; alignment unless it is off. The ARL code's step runs more:
//! the GAT five times, the plain text three times and the full image three times, each
//! objective encoding its own inputs. MFU counts the FLOPs of the step that runs here.

use arl_contract::config::model::{FusionConfig, ModelConfig};

/// FLOPs of a training step per forward FLOP (forward 1, backward 2).
pub const TRAINING_PER_FORWARD: u64 = 3;

/// What the FLOPs of a pretraining micro-batch depend on besides the model config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PretrainShape {
    /// Samples in the micro-batch (B).
    pub batch: i64,
    /// Text positions (Lt): `data.max_text_len`, which every text is padded to.
    pub text_len: i64,
    /// Entity slots per text (S, [`crate::knowledge::inputs::MAX_ENTITIES`]).
    pub slots: i64,
    /// Entities in the knowledge graph (Ne).
    pub entities: i64,
    /// Whether the alignment objective runs (`pretext.align`).
    pub align: bool,
}

/// Forward FLOPs of each block of a pretraining step, each for one call on the whole
/// micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PretrainFlops {
    /// The shape they were counted for.
    pub shape: PretrainShape,
    /// The vision tower on the full images.
    pub vision: u64,
    /// The vision tower on the patches the MIM pass keeps.
    pub vision_masked: u64,
    /// The text tower.
    pub text: u64,
    /// `multi_modal_language_proj`.
    pub language_proj: u64,
    /// `multi_modal_vision_proj` on the full image's tokens.
    pub vision_proj: u64,
    /// `multi_modal_vision_proj` on the MIM pass's tokens.
    pub vision_proj_masked: u64,
    /// A fusion pass (with its poolers) on the full image.
    pub fusion: u64,
    /// A fusion pass on the MIM pass's image tokens.
    pub fusion_masked: u64,
    /// The MLM head.
    pub mlm_head: u64,
    /// The MIM decoder.
    pub mim_head: u64,
    /// The ITM head.
    pub itm_head: u64,
    /// The image and text queries of alignment.
    pub align_queries: u64,
    /// Their logits against every entity.
    pub align_logits: u64,
    /// The GAT over the whole graph.
    pub graph: u64,
}

/// 2·tokens·input·output: a linear map of `tokens` rows.
fn lin(tokens: i64, input: i64, output: i64) -> u64 {
    (2 * tokens * input * output) as u64
}

/// QKᵀ and attention·V over all heads: 2·Lq·Lk·W each.
fn att(queries: i64, keys: i64, width: i64) -> u64 {
    (4 * queries * keys * width) as u64
}

/// A pre-LN CLIP block (fused QKV, 4× MLP) over `tokens` tokens.
fn clip_block(tokens: i64, width: i64) -> u64 {
    lin(tokens, width, 3 * width)
        + att(tokens, tokens, width)
        + lin(tokens, width, width)
        + lin(tokens, width, 4 * width)
        + lin(tokens, 4 * width, width)
}

/// BERT attention: `queries` of `width` over `keys` of `context` width, with its output dense.
fn bert_attention(queries: i64, keys: i64, width: i64, context: i64) -> u64 {
    2 * lin(queries, width, width) + 2 * lin(keys, context, width) + att(queries, keys, width)
}

fn feed_forward(tokens: i64, width: i64, inner: i64) -> u64 {
    lin(tokens, width, inner) + lin(tokens, inner, width)
}

/// One co-attention layer (text side with its knowledge sublayers, and image side) for text of
/// `text` positions, `image` image tokens and `slots` entity slots.
fn fusion_layer(cfg: &FusionConfig, text: i64, image: i64, slots: i64) -> u64 {
    let (d, i) = (cfg.hidden, cfg.intermediate);
    let text_side = bert_attention(text, text, d, d)
        + bert_attention(text, image, d, d)
        + feed_forward(text, d, i);
    let knowledge = if cfg.knowledge {
        let (e, ie) = (cfg.entity_hidden, cfg.entity_intermediate);
        bert_attention(slots, slots, e, e)
            + lin(image, d, e)
            + bert_attention(slots, image, e, e)
            + lin(slots, e, d)
            + (2 * text * slots * d) as u64
            + lin(text, d, d)
            + feed_forward(slots, e, ie)
    } else {
        0
    };
    let image_side = bert_attention(image, image, d, d)
        + bert_attention(image, text, d, d)
        + feed_forward(image, d, i);
    text_side + knowledge + image_side
}

impl PretrainFlops {
    /// The FLOPs of every block of `cfg` on a micro-batch of `shape`.
    pub fn new(cfg: &ModelConfig, shape: PretrainShape) -> Self {
        let PretrainShape {
            batch: b,
            text_len: lt,
            slots,
            entities,
            ..
        } = shape;
        let (v, t, f, e, m) = (&cfg.vision, &cfg.text, &cfg.fusion, &cfg.entity, &cfg.mim);
        let (d, cells, pixels) = (
            f.hidden,
            v.grid() * v.grid(),
            3 * v.patch_size * v.patch_size,
        );
        let full = cells + 1;
        let kept = ((cells as f64) * (1.0 - m.mask_ratio)) as i64 + 1;
        let b = b as u64;
        let tower = |tokens| {
            b * (lin(cells, pixels, v.width)
                + v.built_layers() as u64 * clip_block(tokens, v.width))
        };
        let fusion =
            |image| b * (f.layers as u64 * fusion_layer(f, lt, image, slots) + 2 * lin(1, d, d));
        let gat = e.gat_heads * e.gat_head_width;
        Self {
            shape,
            vision: tower(full),
            vision_masked: tower(kept),
            text: b
                * t.layers as u64
                * (bert_attention(lt, lt, t.hidden, t.hidden)
                    + feed_forward(lt, t.hidden, t.intermediate)),
            language_proj: b * lin(lt, t.hidden, d),
            vision_proj: b * lin(full, v.width, d),
            vision_proj_masked: b * lin(kept, v.width, d),
            fusion: fusion(full),
            fusion_masked: fusion(kept),
            mlm_head: b * (lin(lt, d, d) + lin(lt, d, t.vocab_size)),
            mim_head: b
                * (lin(kept, d, m.width)
                    + m.layers as u64 * clip_block(full, m.width)
                    + lin(full, m.width, pixels)),
            itm_head: b * lin(1, 2 * d, 2),
            align_queries: b * 2 * (lin(1, d, d) + lin(1, d, e.width)),
            align_logits: b * 2 * lin(1, e.width, entities),
            graph: lin(entities, e.width, gat) + lin(entities, gat, e.width),
        }
    }

    /// Forward FLOPs of one micro-batch of our step (see the module docs for what runs).
    pub fn step_forward(&self) -> u64 {
        let alignment = if self.shape.align {
            self.align_queries + self.align_logits
        } else {
            0
        };
        self.graph
            + 2 * (self.text + self.language_proj)
            + self.vision
            + self.vision_proj
            + self.vision_masked
            + self.vision_proj_masked
            + 2 * self.fusion
            + self.fusion_masked
            + self.mlm_head
            + self.mim_head
            + self.itm_head
            + alignment
    }

    /// Training FLOPs per sample: [`TRAINING_PER_FORWARD`] × the step's forward over its
    /// samples (the GAT, once per micro-batch, shared among them).
    pub fn training_per_sample(&self) -> f64 {
        (TRAINING_PER_FORWARD * self.step_forward()) as f64 / self.shape.batch as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: i64) -> PretrainShape {
        PretrainShape {
            batch,
            text_len: 64,
            slots: 24,
            entities: 1000,
            align: true,
        }
    }

    #[test]
    fn every_block_but_the_graph_grows_with_the_batch() {
        let cfg = ModelConfig::base();
        let (one, four) = (
            PretrainFlops::new(&cfg, shape(1)),
            PretrainFlops::new(&cfg, shape(4)),
        );
        assert_eq!(one.graph, four.graph);
        assert_eq!(
            4 * (one.step_forward() - one.graph),
            four.step_forward() - four.graph
        );
        assert!(one.training_per_sample() > four.training_per_sample());
    }

    #[test]
    fn a_base_clip_block_is_24_l_w_squared_plus_4_l_squared_w() {
        let (l, w) = (325u64, 768u64);
        assert_eq!(clip_block(325, 768), 24 * l * w * w + 4 * l * l * w);
    }

    #[test]
    fn the_ablations_remove_their_work() {
        let cfg = ModelConfig::base();
        let full = PretrainFlops::new(&cfg, shape(16));
        let no_align = PretrainFlops::new(
            &cfg,
            PretrainShape {
                align: false,
                ..shape(16)
            },
        );
        assert_eq!(
            full.step_forward() - no_align.step_forward(),
            full.align_queries + full.align_logits
        );
        let mut meter = cfg.clone();
        meter.fusion.knowledge = false;
        let meter = PretrainFlops::new(&meter, shape(16));
        assert!(meter.fusion < full.fusion);
        assert_eq!(meter.text, full.text);
    }
}
