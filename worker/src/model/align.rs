//! The align head (ARL_SPEC.md §2.4 and §2.7): the entity table (TransE-initialised), a
//! LayerNorm and a two-layer GAT over the whole graph give every entity a vector; two-layer
//! ReLU MLPs turn the image CLS and text `<s>` vectors into queries scored against all entities.

use arl_contract::config::model::EntityConfig;
use tch::{Kind, Tensor, nn};

use super::gat::{GatConv, LoopedEdges};
use super::layers::{layer_norm, linear};

/// The align head: `x`, `embedding_ln`, `conv1`, `conv2`, `img_linear1/2`, `txt_linear1/2`.
#[derive(Debug)]
pub struct AlignHead {
    x: Tensor,
    edges: LoopedEdges,
    embedding_ln: nn::LayerNorm,
    conv1: GatConv,
    conv2: GatConv,
    img_linear1: nn::Linear,
    img_linear2: nn::Linear,
    txt_linear1: nn::Linear,
    txt_linear2: nn::Linear,
    dropout: f64,
    final_relu: bool,
}

impl AlignHead {
    /// Over `entities` nodes and the (2, E) `edge_index` (head → tail), for `hidden`-wide
    /// uni-modal vectors.
    pub fn new(
        vs: nn::Path,
        cfg: &EntityConfig,
        entities: i64,
        edge_index: &Tensor,
        hidden: i64,
    ) -> Self {
        let w = cfg.width;
        Self {
            x: vs.var(
                "x",
                &[entities, w],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            ),
            edges: LoopedEdges::new(&edge_index.to_device(vs.device()), entities),
            embedding_ln: layer_norm(&vs / "embedding_ln", w, 1e-5),
            conv1: GatConv::new(
                &vs / "conv1",
                w,
                cfg.gat_head_width,
                cfg.gat_heads,
                true,
                cfg.dropout,
            ),
            conv2: GatConv::new(
                &vs / "conv2",
                cfg.gat_head_width * cfg.gat_heads,
                w,
                1,
                false,
                cfg.dropout,
            ),
            img_linear1: linear(&vs / "img_linear1", hidden, hidden),
            img_linear2: linear(&vs / "img_linear2", hidden, w),
            txt_linear1: linear(&vs / "txt_linear1", hidden, hidden),
            txt_linear2: linear(&vs / "txt_linear2", hidden, w),
            dropout: cfg.dropout,
            final_relu: cfg.final_relu,
        }
    }

    /// Every entity's vector: LN → dropout → ELU(GAT1) → dropout → GAT2. → (Ne, width).
    pub fn entity_vectors(&self, train: bool) -> Tensor {
        // The model is built on the CPU and its variables moved; the edges follow them here.
        let edges = self.edges.to_device(self.x.device());
        let xs = self
            .x
            .apply(&self.embedding_ln)
            .dropout(self.dropout, train);
        let xs = self
            .conv1
            .forward(&xs, &edges, train)
            .elu()
            .dropout(self.dropout, train);
        self.conv2.forward(&xs, &edges, train)
    }

    /// Entity features for the fusion layers: rows of `vectors` for ids ≠ −100, zeros elsewhere.
    /// ids: (B, S) → (B, S, width).
    pub fn gather(vectors: &Tensor, ids: &Tensor) -> Tensor {
        let present = ids.ne(-100);
        let rows = vectors
            .index_select(0, &ids.clamp_min(0).flatten(0, -1))
            .view([ids.size()[0], ids.size()[1], -1]);
        rows * present.unsqueeze(-1).to_kind(vectors.kind())
    }

    /// Alignment logits against all entities: image CLS (B, D) and text `<s>` (B, D) →
    /// ((B, Ne), (B, Ne)).
    pub fn logits(
        &self,
        image_cls: &Tensor,
        text_cls: &Tensor,
        vectors: &Tensor,
    ) -> (Tensor, Tensor) {
        let query = |xs: &Tensor, first: &nn::Linear, second: &nn::Linear| {
            let projected = xs.apply(first).relu().apply(second);
            if self.final_relu {
                projected.relu()
            } else {
                projected
            }
        };
        let image = query(image_cls, &self.img_linear1, &self.img_linear2);
        let text = query(text_cls, &self.txt_linear1, &self.txt_linear2);
        (image.matmul(&vectors.tr()), text.matmul(&vectors.tr()))
    }
}

/// Multi-label alignment loss: mean BCE-with-logits over B × Ne for image and text, summed.
pub fn align_loss(
    image_logits: &Tensor,
    text_logits: &Tensor,
    image_labels: &Tensor,
    text_labels: &Tensor,
) -> Tensor {
    let bce = |logits: &Tensor, labels: &Tensor| {
        logits.binary_cross_entropy_with_logits::<Tensor>(
            &labels.to_kind(Kind::Float),
            None,
            None,
            tch::Reduction::Mean,
        )
    };
    bce(image_logits, image_labels) + bce(text_logits, text_labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image logits of `inputs` against all-ones entity vectors, i.e. the sum of each
    /// image query, with and without the final ReLU, from the same weights (copied, so that
    /// tests drawing from the global generator on other threads cannot make them differ).
    fn query_sums(inputs: &Tensor) -> (Tensor, Tensor) {
        let edges = Tensor::zeros([2, 0], (tch::Kind::Int64, tch::Device::Cpu));
        let vectors = Tensor::ones([3, 8], tch::kind::FLOAT_CPU);
        let head = |vs: &nn::VarStore, final_relu: bool| {
            let cfg = EntityConfig {
                width: 8,
                gat_heads: 2,
                gat_head_width: 4,
                dropout: 0.0,
                final_relu,
            };
            AlignHead::new(vs.root(), &cfg, 3, &edges, 16)
        };
        let with_relu = nn::VarStore::new(tch::Device::Cpu);
        let mut without_relu = nn::VarStore::new(tch::Device::Cpu);
        let (with, without) = (head(&with_relu, true), head(&without_relu, false));
        without_relu
            .copy(&with_relu)
            .expect("both heads have the same variables");
        (
            with.logits(inputs, inputs, &vectors).0,
            without.logits(inputs, inputs, &vectors).0,
        )
    }

    #[test]
    fn the_final_relu_switch_decides_whether_queries_can_be_negative() {
        let inputs = Tensor::randn([64, 16], tch::kind::FLOAT_CPU);
        let (with, without) = query_sums(&inputs);
        assert!(with.min().double_value(&[]) >= 0.0);
        assert!(without.min().double_value(&[]) < 0.0);
        // Same weights: where the plain projection is all positive, both agree.
        assert!(with.ge_tensor(&without).all().int64_value(&[]) == 1);
    }
}
