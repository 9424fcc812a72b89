//! The model every training job starts from, built identically on every rank: the knowledge
//! graph and its TransE table read from the knowledge folder, the ARL modules initialised from
//! the run's seed, and rank 0's weights broadcast to the others.

use std::path::Path;

use anyhow::{Context, ensure};
use arl_c10d::ProcessGroup;
use tch::{Device, Tensor, nn};

use arl_contract::config::train::Precision;

use crate::knowledge::store;
use crate::knowledge::vocab::KnowledgeGraph;
use crate::model::arl::ArlModel;
use arl_contract::config::model::ModelConfig;

/// The model and what it was built over.
pub struct Built {
    /// Its variables (on the run's device once [`broadcast`] has run).
    pub vs: nn::VarStore,
    /// The modules.
    pub model: ArlModel,
    /// The knowledge graph (entity vocabulary and triples).
    pub graph: KnowledgeGraph,
}

/// The (2, E) head → tail edges of the knowledge graph.
fn edge_index(triples: &[[i64; 3]]) -> Tensor {
    let heads: Vec<i64> = triples.iter().map(|t| t[0]).collect();
    let tails: Vec<i64> = triples.iter().map(|t| t[1]).collect();
    Tensor::stack(&[Tensor::from_slice(&heads), Tensor::from_slice(&tails)], 0)
}

/// Builds the model on the CPU over the knowledge in `knowledge_dir`, seeded with `seed`, and
/// copies the TransE table into `align_head.x`. Task heads can be added under `vs.root()`
/// before [`broadcast`].
///
/// # Errors
/// An unreadable knowledge folder (named), no entities, or a TransE table of the wrong shape.
pub fn build(knowledge_dir: &Path, cfg: &ModelConfig, seed: u64) -> anyhow::Result<Built> {
    let (graph, _) = store::read(knowledge_dir)
        .with_context(|| format!("knowledge folder {}", knowledge_dir.display()))?;
    let entities = graph.entities.len() as i64;
    ensure!(entities > 0, "{}: no entities", knowledge_dir.display());
    let embeddings = store::read_embeddings(knowledge_dir, graph.entities.len())?;
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ArlModel::new(&vs.root(), cfg, entities, &edge_index(&graph.triples));
    tch::no_grad(|| {
        let variables = vs.variables();
        let mut table = variables
            .get("align_head.x")
            .context("the model has no align_head.x")?
            .shallow_clone();
        ensure!(
            table.size() == embeddings.size(),
            "TransE table {:?}, model entity table {:?}",
            embeddings.size(),
            table.size()
        );
        table.copy_(&embeddings);
        Ok(())
    })?;
    Ok(Built { vs, model, graph })
}

/// Moves `vs` to `device` and makes every rank's weights rank 0's.
///
/// # Errors
/// The broadcast fails.
pub fn broadcast(
    vs: &mut nn::VarStore,
    device: Device,
    group: &ProcessGroup,
) -> anyhow::Result<()> {
    vs.set_device(device);
    let tensors: Vec<Tensor> = crate::train_state::sorted_variables(vs)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    group
        .broadcast(&tensors, 0)
        .context("broadcasting the initial weights")
}

/// Whether the forward passes autocast to bfloat16 under `precision`: on CUDA, and on the
/// CPU (where AMX or AVX-512 BF16 makes it pay; elsewhere it is slower than float32, but the
/// numbers are the same).
///
/// # Errors
/// bf16 asked of a device that is neither (named with the rank).
pub fn bf16(precision: Precision, device: Device, rank: usize) -> anyhow::Result<bool> {
    if precision != Precision::Bf16 {
        return Ok(false);
    }
    ensure!(
        matches!(device, Device::Cpu | Device::Cuda(_)),
        "train.precision = \"bf16\" autocasts on the CPU or CUDA; rank {rank} runs on {device:?}"
    );
    Ok(true)
}
