//! Building blocks shared by the towers: initialisation, float32 LayerNorm, multi-head
//! attention through PyTorch's fused `scaled_dot_product_attention`, and additive masks.

use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

/// `init_weights` of the reference: N(0, 0.02) for Linear and Embedding weights.
pub const NORMAL_002: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// U(±bound).
fn symmetric_uniform(bound: f64) -> Init {
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Glorot (Xavier) uniform: U(±√(6 / (fan_in + fan_out))).
pub fn glorot(fan_in: i64, fan_out: i64) -> Init {
    symmetric_uniform((6.0 / (fan_in + fan_out) as f64).sqrt())
}

/// U(±1/√fan_in): `torch.nn.Linear`'s and `Conv2d`'s default (Kaiming-uniform with a = √5).
pub fn torch_default(fan_in: i64) -> Init {
    symmetric_uniform(1.0 / (fan_in as f64).sqrt())
}

/// A Linear layer initialised like the reference (weight N(0, 0.02), bias 0).
pub fn linear(vs: nn::Path, input: i64, output: i64) -> nn::Linear {
    nn::linear(
        vs,
        input,
        output,
        nn::LinearConfig {
            ws_init: NORMAL_002,
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        },
    )
}

/// A LayerNorm that computes in float32 whatever its input's dtype (CLIP's `LayerNorm`).
#[derive(Debug)]
pub struct LayerNorm32(nn::LayerNorm);

impl LayerNorm32 {
    /// `LayerNorm(width, eps)` under `vs` (keys `weight`, `bias`).
    pub fn new(vs: nn::Path, width: i64, eps: f64) -> Self {
        Self(nn::layer_norm(
            vs,
            vec![width],
            nn::LayerNormConfig {
                eps,
                ..Default::default()
            },
        ))
    }
}

impl Module for LayerNorm32 {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        self.0.forward(&xs.to_kind(Kind::Float)).to_kind(kind)
    }
}

/// A LayerNorm with the given epsilon (keys `weight`, `bias`).
pub fn layer_norm(vs: nn::Path, width: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        vs,
        vec![width],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// (B, L, H·D) → (B, H, L, D).
pub fn split_heads(xs: &Tensor, heads: i64) -> Tensor {
    let (b, l, width) = xs.size3().expect("(batch, length, width)");
    xs.view([b, l, heads, width / heads]).transpose(1, 2)
}

/// (B, H, L, D) → (B, L, H·D).
pub fn merge_heads(xs: &Tensor) -> Tensor {
    let (b, h, l, d) = xs.size4().expect("(batch, heads, length, head width)");
    xs.transpose(1, 2).contiguous().view([b, l, h * d])
}

/// softmax(q·kᵀ/√d + mask)·v per head. q: (B, H, Lq, D); k, v: (B, H, Lk, D);
/// `mask`: additive, broadcastable to (B, H, Lq, Lk). Dropout on the probabilities in training.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    dropout: f64,
    train: bool,
) -> Tensor {
    let p = if train { dropout } else { 0.0 };
    Tensor::scaled_dot_product_attention(q, k, v, mask, p, false, None, false)
}

/// The reference's additive mask from a (B, L) keep-mask: 0 where kept, −10000 where masked,
/// shaped (B, 1, 1, L) to broadcast over heads and queries.
pub fn additive_mask(keep: &Tensor, kind: Kind) -> Tensor {
    let (b, l) = keep.size2().expect("(batch, length) mask");
    let keep = keep.to_kind(kind);
    ((keep - 1.0) * 10000.0).view([b, 1, 1, l])
}
