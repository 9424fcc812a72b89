//! The BERT-family language encoder (ARL_SPEC.md §1.3) in Hugging Face's names: embeddings
//! (word + position + token type, LayerNorm, dropout) and post-LN layers. RoBERTa and BERT share
//! the code; they differ in position ids. Its attention, self-output and feed-forward blocks are
//! the ones the fusion layers reuse.

use tch::Tensor;
use tch::nn;

use super::layers::{
    NORMAL_002, additive_mask, attention, layer_norm, linear, merge_heads, split_heads,
};
use arl_contract::config::model::{TextConfig, TextFamily};

/// `dense → dropout → LayerNorm(x + residual)` (`BertSelfOutput` / `BertOutput`).
#[derive(Debug)]
pub struct SelfOutput {
    dense: nn::Linear,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl SelfOutput {
    /// Keys `dense`, `LayerNorm` under `vs`; `dense` maps `input` → `width`.
    pub fn new(vs: nn::Path, input: i64, width: i64, eps: f64, dropout: f64) -> Self {
        Self {
            dense: linear(&vs / "dense", input, width),
            layer_norm: layer_norm(&vs / "LayerNorm", width, eps),
            dropout,
        }
    }

    /// LN(residual + Drop(dense(x))).
    pub fn forward(&self, xs: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        (xs.apply(&self.dense).dropout(self.dropout, train) + residual).apply(&self.layer_norm)
    }
}

/// BERT multi-head attention (`query`, `key`, `value` under `self`, then `output`), usable as
/// self-attention (`context` = the input) or cross-attention.
#[derive(Debug)]
pub struct BertAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    output: SelfOutput,
    heads: i64,
    dropout: f64,
}

impl BertAttention {
    /// Queries of width `width`; keys and values from a context of width `context_width`.
    pub fn new(
        vs: nn::Path,
        width: i64,
        context_width: i64,
        heads: i64,
        eps: f64,
        dropout: f64,
    ) -> Self {
        let attn = &vs / "self";
        Self {
            query: linear(&attn / "query", width, width),
            key: linear(&attn / "key", context_width, width),
            value: linear(&attn / "value", context_width, width),
            output: SelfOutput::new(&vs / "output", width, width, eps, dropout),
            heads,
            dropout,
        }
    }

    /// xs: (B, Lq, W); context: (B, Lk, Wc); mask: additive (B, 1, 1, Lk) → (B, Lq, W).
    pub fn forward(
        &self,
        xs: &Tensor,
        context: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let q = split_heads(&xs.apply(&self.query), self.heads);
        let k = split_heads(&context.apply(&self.key), self.heads);
        let v = split_heads(&context.apply(&self.value), self.heads);
        let attended = merge_heads(&attention(&q, &k, &v, mask, self.dropout, train));
        self.output.forward(&attended, xs, train)
    }
}

/// `intermediate.dense → GELU → output` (with its residual LayerNorm).
#[derive(Debug)]
pub struct FeedForward {
    intermediate: nn::Linear,
    output: SelfOutput,
}

impl FeedForward {
    /// Keys `intermediate.dense` and `output.{dense,LayerNorm}` under `vs`.
    pub fn new(vs: nn::Path, width: i64, inner: i64, eps: f64, dropout: f64) -> Self {
        Self::with_names(&vs, "intermediate", "output", width, inner, eps, dropout)
    }

    /// As [`FeedForward::new`] with other names for the two sublayers.
    pub fn with_names(
        vs: &nn::Path,
        intermediate: &str,
        output: &str,
        width: i64,
        inner: i64,
        eps: f64,
        dropout: f64,
    ) -> Self {
        Self {
            intermediate: linear(vs / intermediate / "dense", width, inner),
            output: SelfOutput::new(vs / output, inner, width, eps, dropout),
        }
    }

    /// (B, L, W) → (B, L, W).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.output
            .forward(&xs.apply(&self.intermediate).gelu("none"), xs, train)
    }
}

/// One post-LN encoder layer: self-attention, then feed-forward.
#[derive(Debug)]
pub struct BertLayer {
    attention: BertAttention,
    ffn: FeedForward,
}

impl BertLayer {
    fn new(vs: nn::Path, cfg: &TextConfig) -> Self {
        Self {
            attention: BertAttention::new(
                &vs / "attention",
                cfg.hidden,
                cfg.hidden,
                cfg.heads,
                cfg.layer_norm_eps,
                cfg.dropout,
            ),
            ffn: FeedForward::new(
                vs,
                cfg.hidden,
                cfg.intermediate,
                cfg.layer_norm_eps,
                cfg.dropout,
            ),
        }
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.ffn
            .forward(&self.attention.forward(xs, xs, Some(mask), train), train)
    }
}

/// The language encoder: `embeddings.*` and `encoder.layer.N.*`.
#[derive(Debug)]
pub struct TextEncoder {
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: nn::Embedding,
    layer_norm: nn::LayerNorm,
    layers: Vec<BertLayer>,
    cfg: TextConfig,
}

impl TextEncoder {
    /// Builds the encoder under `vs`.
    pub fn new(vs: nn::Path, cfg: &TextConfig) -> Self {
        let emb = &vs / "embeddings";
        let table = |name: &str, rows: i64| {
            nn::embedding(
                &emb / name,
                rows,
                cfg.hidden,
                nn::EmbeddingConfig {
                    ws_init: NORMAL_002,
                    ..Default::default()
                },
            )
        };
        let layers = &vs / "encoder" / "layer";
        Self {
            word_embeddings: table("word_embeddings", cfg.vocab_size),
            position_embeddings: table("position_embeddings", cfg.max_positions),
            token_type_embeddings: table("token_type_embeddings", cfg.type_vocab_size),
            layer_norm: layer_norm(&emb / "LayerNorm", cfg.hidden, cfg.layer_norm_eps),
            layers: (0..cfg.layers)
                .map(|i| BertLayer::new(&layers / i, cfg))
                .collect(),
            cfg: cfg.clone(),
        }
    }

    /// Position ids: RoBERTa counts real tokens from `pad + 1` (pads get `pad`); BERT counts
    /// from 0. ids: (B, L) → (B, L).
    pub fn position_ids(&self, ids: &Tensor) -> Tensor {
        match self.cfg.family {
            TextFamily::Roberta => {
                let real = ids.ne(self.cfg.pad_token_id).to_kind(tch::Kind::Int64);
                real.cumsum(1, tch::Kind::Int64) * &real + self.cfg.pad_token_id
            }
            TextFamily::Bert => {
                let (_, l) = ids.size2().expect("(batch, length) ids");
                Tensor::arange(l, (tch::Kind::Int64, ids.device()))
                    .unsqueeze(0)
                    .expand_as(ids)
            }
        }
    }

    /// ids, keep-mask: (B, L) → hidden states (B, L, H).
    pub fn forward(&self, ids: &Tensor, keep: &Tensor, train: bool) -> Tensor {
        let embedded = ids.apply(&self.word_embeddings)
            + self.position_ids(ids).apply(&self.position_embeddings)
            + ids.zeros_like().apply(&self.token_type_embeddings);
        let hidden = embedded
            .apply(&self.layer_norm)
            .dropout(self.cfg.dropout, train);
        let mask = additive_mask(keep, hidden.kind());
        self.layers
            .iter()
            .fold(hidden, |xs, layer| layer.forward(&xs, &mask, train))
    }
}
