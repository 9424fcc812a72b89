//! Prediction heads (ARL_SPEC.md §1.7 and §3.2): MLM, ITM, the MAE-style MIM decoder, the
//! VQA / classification head and the retrieval head initialised from ITM's "match" row.

use arl_contract::config::model::MimConfig;
use tch::{Kind, Tensor, nn};

use super::layers::{layer_norm, linear};
use super::vision::{BlockInit, ResidualBlock};

/// MLM: transform (dense, GELU, LayerNorm 1e-12), then a bias-free decoder to the vocabulary plus
/// a separate bias; not tied to the input embeddings.
#[derive(Debug)]
pub struct MlmHead {
    dense: nn::Linear,
    layer_norm: nn::LayerNorm,
    decoder: nn::Linear,
    bias: Tensor,
}

impl MlmHead {
    /// Keys `transform.dense`, `transform.LayerNorm`, `decoder.weight`, `bias`.
    pub fn new(vs: nn::Path, hidden: i64, vocab: i64) -> Self {
        let no_bias = nn::LinearConfig {
            ws_init: super::layers::NORMAL_002,
            bs_init: None,
            bias: false,
        };
        Self {
            dense: linear(&vs / "transform" / "dense", hidden, hidden),
            layer_norm: layer_norm(&vs / "transform" / "LayerNorm", hidden, 1e-12),
            decoder: nn::linear(&vs / "decoder", hidden, vocab, no_bias),
            bias: vs.var("bias", &[vocab], nn::Init::Const(0.0)),
        }
    }

    /// (B, L, D) → logits (B, L, V).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.dense)
            .gelu("none")
            .apply(&self.layer_norm)
            .apply(&self.decoder)
            + &self.bias
    }
}

/// ITM: one Linear 2D → 2 on the pooled pair features (`fc`).
#[derive(Debug)]
pub struct ItmHead {
    /// The classifier; row 1 scores "matched".
    pub fc: nn::Linear,
}

impl ItmHead {
    /// Key `fc`.
    pub fn new(vs: nn::Path, hidden: i64) -> Self {
        Self {
            fc: linear(&vs / "fc", 2 * hidden, 2),
        }
    }
}

/// Retrieval: Linear 2D → 1, whose weight and bias are row 1 of the ITM head.
#[derive(Debug)]
pub struct RetrievalHead {
    /// The scorer.
    pub fc: nn::Linear,
}

impl RetrievalHead {
    /// Key `fc`, copied from `itm`'s match row (call again after loading new ITM weights).
    pub fn from_itm(vs: nn::Path, hidden: i64, itm: &ItmHead) -> Self {
        let head = Self {
            fc: linear(&vs / "fc", 2 * hidden, 1),
        };
        head.copy_match_row(itm);
        head
    }

    /// weight := ITM weight row 1, bias := ITM bias[1].
    pub fn copy_match_row(&self, itm: &ItmHead) {
        tch::no_grad(|| {
            self.fc.ws.shallow_clone().copy_(&itm.fc.ws.narrow(0, 1, 1));
            if let (Some(bias), Some(itm_bias)) = (&self.fc.bs, &itm.fc.bs) {
                bias.shallow_clone().copy_(&itm_bias.narrow(0, 1, 1));
            }
        });
    }
}

/// VQA / classification: Linear 2D→2D, LayerNorm (1e-5), GELU, Linear 2D→n
/// (keys `0`, `1`, `3`, as the reference's `nn.Sequential`).
#[derive(Debug)]
pub struct ClassifierHead {
    first: nn::Linear,
    norm: nn::LayerNorm,
    last: nn::Linear,
}

impl ClassifierHead {
    /// A head with `classes` outputs.
    pub fn new(vs: nn::Path, hidden: i64, classes: i64) -> Self {
        Self {
            first: linear(&vs / "0", 2 * hidden, 2 * hidden),
            norm: layer_norm(&vs / "1", 2 * hidden, 1e-5),
            last: linear(&vs / "3", 2 * hidden, classes),
        }
    }

    /// (B, 2D) → (B, classes).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.first)
            .apply(&self.norm)
            .gelu("none")
            .apply(&self.last)
    }
}

/// The MAE-style decoder: `decoder_embed`, `mask_token`, fixed 2-D sin-cos positions,
/// `decoder.resblocks.N` (CLIP blocks), `decoder_norm`, `decoder_pred`.
#[derive(Debug)]
pub struct MimDecoder {
    decoder_embed: nn::Linear,
    mask_token: Tensor,
    positions: Tensor,
    blocks: Vec<ResidualBlock>,
    decoder_norm: nn::LayerNorm,
    decoder_pred: nn::Linear,
}

impl MimDecoder {
    /// For `hidden`-wide image tokens on a `grid`×`grid` patch grid of `patch` pixels.
    pub fn new(vs: nn::Path, cfg: &MimConfig, hidden: i64, grid: i64, patch: i64) -> Self {
        let blocks = &vs / "decoder" / "resblocks";
        Self {
            decoder_embed: linear(&vs / "decoder_embed", hidden, cfg.width),
            mask_token: vs.var("mask_token", &[1, 1, cfg.width], super::layers::NORMAL_002),
            positions: sincos_positions_2d(cfg.width, grid).to_device(vs.device()),
            blocks: (0..cfg.layers)
                .map(|i| {
                    ResidualBlock::new(&blocks / i, cfg.width, cfg.heads, BlockInit::InitWeights)
                })
                .collect(),
            decoder_norm: layer_norm(&vs / "decoder_norm", cfg.width, 1e-5),
            decoder_pred: linear(&vs / "decoder_pred", cfg.width, patch * patch * 3),
        }
    }

    /// Image tokens (B, 1 + keep, D) and `ids_restore` (B, g²) → pixel predictions (B, g², p²·3).
    pub fn forward(&self, tokens: &Tensor, ids_restore: &Tensor) -> Tensor {
        let xs = tokens.apply(&self.decoder_embed); // (B, 1+K, Dd)
        let (b, kept, width) = xs.size3().expect("(batch, tokens, width)");
        let cells = ids_restore.size()[1];
        let masks = self
            .mask_token
            .to_kind(xs.kind())
            .expand([b, cells + 1 - kept, width], true);
        let shuffled = Tensor::cat(&[xs.narrow(1, 1, kept - 1), masks], 1); // (B, g², Dd)
        let restored = shuffled.gather(
            1,
            &ids_restore.unsqueeze(-1).expand([b, cells, width], true),
            false,
        );
        let xs = Tensor::cat(&[xs.narrow(1, 0, 1), restored], 1)
            + self.positions.to_device(xs.device()).to_kind(xs.kind());
        let xs = self.blocks.iter().fold(xs, |h, block| block.forward(&h));
        let pred = xs.apply(&self.decoder_norm).apply(&self.decoder_pred);
        pred.narrow(1, 1, cells)
    }
}

/// MAE's fixed 2-D sin-cos table (1 + g², width): zero row for CLS; for patch r·g + c, the first
/// half of the channels encodes c and the second half r, each as [sin | cos] of pos·ω_i with
/// ω_i = 10000^(−i / (width/4)).
pub fn sincos_positions_2d(width: i64, grid: i64) -> Tensor {
    let quarter = width / 4;
    let omega = (Tensor::arange(quarter, (Kind::Double, tch::Device::Cpu)) / quarter as f64
        * -(10000f64.ln()))
    .exp();
    let axis = |pos: &Tensor| {
        let angles = pos.to_kind(Kind::Double).unsqueeze(-1) * omega.unsqueeze(0); // (g², width/4)
        Tensor::cat(&[angles.sin(), angles.cos()], 1)
    };
    let cells = Tensor::arange(grid * grid, (Kind::Int64, tch::Device::Cpu));
    let (rows, cols) = (
        cells.divide_scalar_mode(grid, "floor"),
        cells.remainder(grid),
    );
    let table = Tensor::cat(&[axis(&cols), axis(&rows)], 1); // (g², width)
    Tensor::cat(
        &[
            Tensor::zeros([1, width], (Kind::Double, tch::Device::Cpu)),
            table,
        ],
        0,
    )
    .to_kind(Kind::Float)
}

/// MIM target: the normalised image patchified in MAE order ((py·P + px)·3 + c), each patch
/// normalised by its mean and unbiased variance (+1e-6). images (B, 3, S, S) → (B, g², P²·3).
pub fn patchify_normalised(images: &Tensor, patch: i64) -> Tensor {
    let patches = patchify(images, patch);
    let mean = patches.mean_dim(-1, true, None::<Kind>);
    let var = patches.var_dim(-1, true, true);
    (patches - mean) / (var + 1e-6).sqrt()
}

/// Images (B, 3, S, S) as rows of patches (B, g², P²·3), pixels in (py, px, channel) order.
pub fn patchify(images: &Tensor, patch: i64) -> Tensor {
    let (b, c, s, _) = images.size4().expect("(batch, channels, size, size)");
    let g = s / patch;
    images
        .view([b, c, g, patch, g, patch])
        .permute([0, 2, 4, 3, 5, 1]) // (B, gy, gx, py, px, c)
        .reshape([b, g * g, patch * patch * c])
}

/// The inverse of [`patchify`] for one image: patches (g², P²·3) → (3, S, S).
pub fn unpatchify(patches: &Tensor, patch: i64) -> Tensor {
    let cells = patches.size()[0];
    let g = (cells as f64).sqrt() as i64;
    patches
        .view([g, g, patch, patch, 3])
        .permute([4, 0, 2, 1, 3]) // (c, gy, py, gx, px)
        .reshape([3, g * patch, g * patch])
}

/// Squared error per patch, averaged over the removed patches only. pred, target (B, g², P²·3);
/// mask (B, g²) with 1 = removed.
pub fn mim_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let per_patch = (pred - target).square().mean_dim(-1, false, None::<Kind>);
    (per_patch * mask).sum(None::<Kind>) / mask.sum(None::<Kind>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retrieval_head_is_the_itm_match_row_and_follows_reloads() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let itm = ItmHead::new(vs.root() / "itm_head", 4);
        tch::no_grad(|| {
            itm.fc
                .bs
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(&Tensor::from_slice(&[0.5f32, -2.0]))
        });
        let head = RetrievalHead::from_itm(vs.root() / "irtr_head", 4, &itm);
        let pair = Tensor::randn([3, 8], tch::kind::FLOAT_CPU);
        let matched = pair.apply(&itm.fc).narrow(1, 1, 1);
        assert!(pair.apply(&head.fc).allclose(&matched, 1e-6, 1e-6, false));
        // New ITM weights (a loaded checkpoint) reach the head only through copy_match_row.
        tch::no_grad(|| {
            let _ = itm.fc.ws.shallow_clone().fill_(0.25);
        });
        head.copy_match_row(&itm);
        assert!(pair.apply(&head.fc).allclose(
            &pair.apply(&itm.fc).narrow(1, 1, 1),
            1e-6,
            1e-6,
            false
        ));
    }
}
