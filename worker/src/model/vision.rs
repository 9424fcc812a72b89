//! The CLIP ViT vision tower (ARL_SPEC.md §1.2), in OpenAI CLIP's names under `visual`:
//! conv patch embedding without bias, class token, learned positions, `ln_pre`, pre-LN residual
//! blocks with a fused QKV projection and QuickGELU, and `ln_post` on every token. LayerNorms run
//! in float32. By default the last pretrained block is not built (as in the reference).
//!
//! Built from scratch, the tower starts as OpenAI CLIP's `VisionTransformer` module does
//! ([`BlockInit::Torch`]): the reference never re-initialises it (it loads CLIP's weights), so
//! its `init_weights` N(0, 0.02), calibrated for 768-wide layers, does not apply.

use tch::Tensor;
use tch::nn;

use super::layers::{
    LayerNorm32, attention, glorot, linear, merge_heads, split_heads, torch_default,
};
use arl_contract::config::model::VisionConfig;

const CLIP_LN_EPS: f64 = 1e-5;

/// How a block's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockInit {
    /// PyTorch's module defaults, as CLIP builds its towers: Linear weights and biases
    /// U(±1/√fan_in), the fused in-projection Xavier-uniform, both attention biases 0.
    Torch,
    /// The reference's `init_weights` applied over the module (the MIM decoder): Linear weights
    /// N(0, 0.02) and biases 0; the fused in-projection is no Linear and stays Xavier-uniform.
    InitWeights,
}

impl BlockInit {
    /// A Linear layer; `zero_bias` where PyTorch zeroes it (the attention's `out_proj`).
    fn linear(self, vs: nn::Path, input: i64, output: i64, zero_bias: bool) -> nn::Linear {
        match self {
            Self::InitWeights => linear(vs, input, output),
            Self::Torch => nn::linear(
                vs,
                input,
                output,
                nn::LinearConfig {
                    ws_init: torch_default(input),
                    bs_init: Some(if zero_bias {
                        nn::Init::Const(0.0)
                    } else {
                        torch_default(input)
                    }),
                    bias: true,
                },
            ),
        }
    }
}

/// Multi-head self-attention with one fused input projection (`in_proj_weight` (3W, W),
/// `in_proj_bias`) and `out_proj`, as `torch.nn.MultiheadAttention` stores it.
#[derive(Debug)]
pub struct FusedSelfAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl FusedSelfAttention {
    fn new(vs: nn::Path, width: i64, heads: i64, init: BlockInit) -> Self {
        Self {
            // Xavier-uniform, as `nn.MultiheadAttention` initialises it.
            in_proj_weight: vs.var(
                "in_proj_weight",
                &[3 * width, width],
                glorot(width, 3 * width),
            ),
            in_proj_bias: vs.var("in_proj_bias", &[3 * width], nn::Init::Const(0.0)),
            out_proj: init.linear(&vs / "out_proj", width, width, true),
            heads,
        }
    }

    /// x: (B, L, W) → (B, L, W).
    fn forward(&self, xs: &Tensor) -> Tensor {
        let qkv = xs.linear(&self.in_proj_weight, Some(&self.in_proj_bias)); // (B, L, 3W)
        let parts = qkv.chunk(3, -1);
        let [q, k, v] = [&parts[0], &parts[1], &parts[2]].map(|t| split_heads(t, self.heads)); // (B, H, L, D)
        merge_heads(&attention(&q, &k, &v, None, 0.0, false)).apply(&self.out_proj)
    }
}

/// One pre-LN block: x + attn(ln_1(x)), then x + c_proj(QuickGELU(c_fc(ln_2(x)))).
#[derive(Debug)]
pub struct ResidualBlock {
    ln_1: LayerNorm32,
    attn: FusedSelfAttention,
    ln_2: LayerNorm32,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
}

impl ResidualBlock {
    /// A block of `width` with `heads` heads and a 4× MLP, initialised per `init`.
    pub fn new(vs: nn::Path, width: i64, heads: i64, init: BlockInit) -> Self {
        Self {
            ln_1: LayerNorm32::new(&vs / "ln_1", width, CLIP_LN_EPS),
            attn: FusedSelfAttention::new(&vs / "attn", width, heads, init),
            ln_2: LayerNorm32::new(&vs / "ln_2", width, CLIP_LN_EPS),
            c_fc: init.linear(&vs / "mlp" / "c_fc", width, 4 * width, false),
            c_proj: init.linear(&vs / "mlp" / "c_proj", 4 * width, width, false),
        }
    }

    /// x: (B, L, W) → (B, L, W).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs + self.attn.forward(&xs.apply(&self.ln_1));
        let hidden = xs.apply(&self.ln_2).apply(&self.c_fc);
        let hidden = &hidden * (&hidden * 1.702).sigmoid(); // QuickGELU
        &xs + hidden.apply(&self.c_proj)
    }
}

/// Output of [`ClipVision::forward_masked`].
pub struct MaskedTokens {
    /// Tokens of CLS and the kept patches, (B, 1 + keep, W).
    pub tokens: Tensor,
    /// (B, g²): 1 where the patch was removed, in the original patch order.
    pub mask: Tensor,
    /// (B, g²): where each original patch sits in the shuffled order.
    pub ids_restore: Tensor,
}

/// The vision tower.
#[derive(Debug)]
pub struct ClipVision {
    conv1: nn::Conv2D,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm32,
    blocks: Vec<ResidualBlock>,
    ln_post: LayerNorm32,
}

impl ClipVision {
    /// Builds the tower under `vs` (OpenAI names: `conv1`, `class_embedding`, …,
    /// `transformer.resblocks.N`, `ln_post`), positions sized for `cfg.image_size`.
    pub fn new(vs: nn::Path, cfg: &VisionConfig) -> Self {
        let width = cfg.width;
        let scale = (width as f64).powf(-0.5);
        let conv = nn::ConvConfig {
            stride: cfg.patch_size,
            bias: false,
            ws_init: torch_default(3 * cfg.patch_size * cfg.patch_size),
            ..Default::default()
        };
        let resblocks = &vs / "transformer" / "resblocks";
        Self {
            conv1: nn::conv2d(&vs / "conv1", 3, width, cfg.patch_size, conv),
            class_embedding: vs.var(
                "class_embedding",
                &[width],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            ),
            positional_embedding: vs.var(
                "positional_embedding",
                &[cfg.grid() * cfg.grid() + 1, width],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            ),
            ln_pre: LayerNorm32::new(&vs / "ln_pre", width, CLIP_LN_EPS),
            blocks: (0..cfg.built_layers())
                .map(|i| ResidualBlock::new(&resblocks / i, width, cfg.heads, BlockInit::Torch))
                .collect(),
            ln_post: LayerNorm32::new(&vs / "ln_post", width, CLIP_LN_EPS),
        }
    }

    /// images: (B, 3, S, S) at the configured size → tokens (B, 1 + (S/P)², W), CLS first.
    pub fn forward(&self, images: &Tensor) -> Tensor {
        let (cls, patches) = self.embed(images);
        self.encode(&cls, &patches)
    }

    /// MIM input masking (ARL_SPEC.md §3.2): per sample, the patches with the `keep` smallest
    /// values of `noise` (B, g²) are kept, in that order; the others are removed before the
    /// blocks.
    pub fn forward_masked(&self, images: &Tensor, noise: &Tensor, keep: i64) -> MaskedTokens {
        let (cls, patches) = self.embed(images);
        let (b, cells, width) = patches.size3().expect("(batch, cells, width)");
        let ids_shuffle = noise.argsort(1, false);
        let ids_restore = ids_shuffle.argsort(1, false);
        let ids_keep = ids_shuffle
            .narrow(1, 0, keep)
            .unsqueeze(-1)
            .expand([b, keep, width], true);
        let kept = patches.gather(1, &ids_keep, false); // (B, keep, W)
        let shuffled_mask = Tensor::ones([b, cells], (patches.kind(), patches.device()));
        let _ = shuffled_mask.narrow(1, 0, keep).fill_(0.0);
        MaskedTokens {
            tokens: self.encode(&cls, &kept),
            mask: shuffled_mask.gather(1, &ids_restore, false),
            ids_restore,
        }
    }

    /// Patch embedding plus positions → (CLS with its position (B, 1, W), patches (B, g², W)).
    fn embed(&self, images: &Tensor) -> (Tensor, Tensor) {
        let patches = images.to_kind(self.conv1.ws.kind()).apply(&self.conv1); // (B, W, g, g)
        let (b, width, _, _) = patches.size4().expect("(batch, width, grid, grid)");
        let positions = self.positional_embedding.to_kind(patches.kind()); // (1+g², W)
        let cells = positions.size()[0] - 1;
        let patches = patches.flatten(2, 3).transpose(1, 2) + positions.narrow(0, 1, cells); // (B, g², W)
        let cls = self.class_embedding.to_kind(patches.kind()) + positions.get(0);
        (cls.view([1, 1, width]).expand([b, 1, width], true), patches)
    }

    /// CLS + patches → ln_pre → blocks → ln_post.
    fn encode(&self, cls: &Tensor, patches: &Tensor) -> Tensor {
        let tokens = Tensor::cat(&[cls, patches], 1).apply(&self.ln_pre);
        self.blocks
            .iter()
            .fold(tokens, |xs, block| block.forward(&xs))
            .apply(&self.ln_post)
    }
}

/// Resizes a (1 + g², W) position table to (1 + G², W): the CLS row is kept, the grid is
/// resized with bicubic interpolation (align_corners = false), row-major as CLIP stores it.
pub fn interpolate_positions(table: &Tensor, grid: i64) -> Tensor {
    let (rows, width) = table.size2().expect("(positions, width) table");
    let old = ((rows - 1) as f64).sqrt() as i64;
    if old == grid {
        return table.shallow_clone();
    }
    let cls = table.narrow(0, 0, 1);
    let cells = table
        .narrow(0, 1, rows - 1)
        .view([1, old, old, width])
        .permute([0, 3, 1, 2]); // (1, W, g, g)
    let resized = cells.upsample_bicubic2d([grid, grid], false, None, None); // (1, W, G, G)
    let resized = resized.permute([0, 2, 3, 1]).reshape([grid * grid, width]);
    Tensor::cat(&[cls, resized], 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (max |x|, std) of a variable.
    fn spread(vs: &nn::VarStore, name: &str) -> (f64, f64) {
        let variables = vs.variables();
        let t = &variables[name];
        (
            t.abs().max().double_value(&[]),
            t.std(true).double_value(&[]),
        )
    }

    #[test]
    fn a_tower_from_scratch_starts_as_clip_builds_it_and_the_decoder_as_init_weights() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = VisionConfig {
            image_size: 32,
            patch_size: 8,
            width: 64,
            layers: 2,
            heads: 4,
            keep_last_layer: true,
        };
        let _tower = ClipVision::new(vs.root() / "visual", &cfg);
        let _decoder = ResidualBlock::new(vs.root() / "decoder", 64, 4, BlockInit::InitWeights);
        let block = "visual.transformer.resblocks.0";
        // U(±b) has std b/√3.
        let uniform = |name: &str, bound: f64| {
            let (max, std) = spread(&vs, name);
            assert!(
                max <= bound && max > 0.9 * bound,
                "{name}: max {max}, bound {bound}"
            );
            let expected = bound / 3f64.sqrt();
            assert!(
                (std / expected - 1.0).abs() < 0.1,
                "{name}: std {std}, {expected}"
            );
        };
        uniform(&format!("{block}.mlp.c_fc.weight"), 1.0 / 8.0);
        uniform(&format!("{block}.mlp.c_fc.bias"), 1.0 / 8.0);
        uniform(&format!("{block}.mlp.c_proj.weight"), 1.0 / 16.0);
        uniform(&format!("{block}.attn.out_proj.weight"), 1.0 / 8.0);
        uniform(
            &format!("{block}.attn.in_proj_weight"),
            (6.0f64 / 256.0).sqrt(),
        );
        uniform("visual.conv1.weight", 1.0 / 192f64.sqrt());
        uniform("decoder.attn.in_proj_weight", (6.0f64 / 256.0).sqrt());
        for zero in [
            format!("{block}.attn.out_proj.bias"),
            format!("{block}.attn.in_proj_bias"),
            "decoder.mlp.c_fc.bias".to_owned(),
            "decoder.attn.out_proj.bias".to_owned(),
        ] {
            assert_eq!(spread(&vs, &zero).0, 0.0, "{zero}");
        }
        for normal in ["decoder.mlp.c_fc.weight", "decoder.attn.out_proj.weight"] {
            let std = spread(&vs, normal).1;
            assert!((std / 0.02 - 1.0).abs() < 0.1, "{normal}: std {std}");
        }
    }
}
