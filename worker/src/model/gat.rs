//! Graph attention over the entity graph with torch-geometric `GATConv` semantics
//! (ARL_SPEC.md §2.4): one shared bias-free linear map, per-head attention vectors, existing
//! self-loops replaced by one per node, an edge softmax over each node's incoming edges
//! (duplicate edges count separately), dropout on the coefficients in training, heads
//! concatenated or averaged, then a bias. Names follow an ARL checkpoint (PyG 2.0):
//! `lin_src.weight`, `att_src`, `att_dst`, `bias`.

use tch::{Kind, Tensor, nn};

use super::layers::glorot;

/// Added to the softmax denominators, as torch-geometric does.
const SOFTMAX_EPS: f64 = 1e-16;

/// Edges of a graph with one self-loop per node and no others: (source, target), each (E,).
#[derive(Debug)]
pub struct LoopedEdges {
    source: Tensor,
    target: Tensor,
    nodes: i64,
}

impl LoopedEdges {
    /// From a (2, E) `edge_index` (row 0 = source/head, row 1 = target/tail) over `nodes` nodes.
    pub fn new(edge_index: &Tensor, nodes: i64) -> Self {
        let (source, target) = (edge_index.get(0), edge_index.get(1));
        let keep = source.ne_tensor(&target);
        let loops = Tensor::arange(nodes, (Kind::Int64, edge_index.device()));
        Self {
            source: Tensor::cat(&[source.masked_select(&keep), loops.shallow_clone()], 0),
            target: Tensor::cat(&[target.masked_select(&keep), loops], 0),
            nodes,
        }
    }

    /// The same edges on `device` (no copy when they are there already).
    pub fn to_device(&self, device: tch::Device) -> Self {
        Self {
            source: self.source.to_device(device),
            target: self.target.to_device(device),
            nodes: self.nodes,
        }
    }
}

/// One `GATConv` layer.
#[derive(Debug)]
pub struct GatConv {
    lin_src: Tensor,
    att_src: Tensor,
    att_dst: Tensor,
    bias: Tensor,
    heads: i64,
    out: i64,
    concat: bool,
    dropout: f64,
}

impl GatConv {
    /// `GATConv(input, out, heads, concat, dropout)` under `vs`, glorot-initialised like PyG.
    pub fn new(vs: nn::Path, input: i64, out: i64, heads: i64, concat: bool, dropout: f64) -> Self {
        Self {
            lin_src: (&vs / "lin_src").var(
                "weight",
                &[heads * out, input],
                glorot(input, heads * out),
            ),
            att_src: vs.var("att_src", &[1, heads, out], glorot(heads, out)),
            att_dst: vs.var("att_dst", &[1, heads, out], glorot(heads, out)),
            bias: vs.var(
                "bias",
                &[if concat { heads * out } else { out }],
                nn::Init::Const(0.0),
            ),
            heads,
            out,
            concat,
            dropout,
        }
    }

    /// x: (N, in) → (N, heads·out) if concatenating, else (N, out).
    pub fn forward(&self, xs: &Tensor, edges: &LoopedEdges, train: bool) -> Tensor {
        let n = edges.nodes;
        let projected = xs
            .matmul(&self.lin_src.tr())
            .view([n, self.heads, self.out]); // (N, H, C)
        let score_src = (&projected * &self.att_src).sum_dim_intlist(-1, false, None::<Kind>); // (N, H)
        let score_dst = (&projected * &self.att_dst).sum_dim_intlist(-1, false, None::<Kind>);
        let scores =
            score_src.index_select(0, &edges.source) + score_dst.index_select(0, &edges.target);
        let scores = scores.maximum(&(&scores * 0.2)); // LeakyReLU(0.2), (E, H)
        let alpha = edge_softmax(&scores, &edges.target, n).dropout(self.dropout, train);
        let messages = projected.index_select(0, &edges.source) * alpha.unsqueeze(-1); // (E, H, C)
        // In the messages' type: under autocast the projection is bfloat16, the attention float.
        let gathered = Tensor::zeros(projected.size(), (messages.kind(), messages.device()))
            .index_add(0, &edges.target, &messages); // (N, H, C)
        let combined = if self.concat {
            gathered.view([n, self.heads * self.out])
        } else {
            gathered.mean_dim(1, false, None::<Kind>)
        };
        combined + &self.bias
    }
}

/// Softmax of per-edge scores (E, H) over the edges that share a target.
fn edge_softmax(scores: &Tensor, target: &Tensor, nodes: i64) -> Tensor {
    let (_, heads) = scores.size2().expect("(edges, heads) scores");
    let zeros = Tensor::zeros([nodes, heads], (scores.kind(), scores.device()));
    let index = target.unsqueeze(-1).expand_as(scores);
    let max = zeros.internal_scatter_reduce(0, &index, &scores.detach(), "amax", false); // (N, H)
    let exp = (scores - max.index_select(0, target)).exp();
    let sums = zeros.index_add(0, target, &exp) + SOFTMAX_EPS;
    exp / sums.index_select(0, target)
}
