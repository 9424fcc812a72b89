//! arl's own form of a knowledge folder: `knowledge.json` (entities, relations, how they were
//! made) beside `graph.safetensors` (the triples) and `ent_embeddings.safetensors` (TransE, under
//! OpenKE's state-dict names). A folder with only ARL's OpenKE text files also loads.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use tch::{Kind, Tensor};

use super::build::BuildReport;
use super::openke;
use super::transe::TransEConfig;
use super::vocab::{Entity, KnowledgeGraph};

/// Metadata file.
pub const META_FILE: &str = "knowledge.json";
/// Triples file: `triples`, int64 (N, 3) in OpenKE order (head, tail, relation).
pub const GRAPH_FILE: &str = "graph.safetensors";
/// TransE tables: `ent_embeddings.weight` (Ne, dim), `rel_embeddings.weight` (Nr, dim).
pub const EMBEDDING_FILE: &str = "ent_embeddings.safetensors";
/// Version of this layout.
pub const FORMAT_VERSION: u32 = 1;

/// How a knowledge folder was made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Ontology release (OBO `data-version`) or UMLS folder.
    pub ontology: String,
    /// Corpus paths.
    pub corpus: Vec<PathBuf>,
    /// Count threshold.
    pub min_count: u64,
    /// Corpus mentions of each entity, by id.
    pub mentions: Vec<u64>,
    /// TransE settings.
    pub transe: TransEConfig,
    /// Triples TransE did not see.
    pub held_out: Vec<[i64; 3]>,
    /// Sizes and link-prediction metrics.
    pub report: BuildReport,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    format_version: u32,
    entities: Vec<Entity>,
    relations: Vec<String>,
    provenance: Provenance,
}

/// Writes `knowledge.json` and `graph.safetensors` into `dir`.
///
/// # Errors
/// A file cannot be written (named).
pub fn write(dir: &Path, graph: &KnowledgeGraph, provenance: &Provenance) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta = Meta {
        format_version: FORMAT_VERSION,
        entities: graph.entities.clone(),
        relations: graph.relations.clone(),
        provenance: provenance.clone(),
    };
    let path = dir.join(META_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let flat: Vec<i64> = graph.triples.iter().flatten().copied().collect();
    let triples = Tensor::from_slice(&flat).reshape([-1, 3]);
    let path = dir.join(GRAPH_FILE);
    Tensor::write_safetensors(&[("triples", &triples)], &path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a knowledge folder: ours when `knowledge.json` is present, else OpenKE's text files.
///
/// # Errors
/// Missing or malformed files, or triples that disagree with the entity and relation counts,
/// named with the file.
pub fn read(dir: &Path) -> anyhow::Result<(KnowledgeGraph, Option<Provenance>)> {
    let meta_path = dir.join(META_FILE);
    if !meta_path.exists() {
        return Ok((openke::read(dir)?, None));
    }
    let meta: Meta = serde_json::from_str(&super::read_text(&meta_path)?)
        .with_context(|| format!("parsing {}", meta_path.display()))?;
    ensure!(
        meta.format_version == FORMAT_VERSION,
        "{}: format_version {} (this build reads {FORMAT_VERSION})",
        meta_path.display(),
        meta.format_version
    );
    let path = dir.join(GRAPH_FILE);
    let tensors =
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    let triples = tensors
        .into_iter()
        .find(|(name, _)| name == "triples")
        .map(|(_, t)| t)
        .with_context(|| format!("{}: no `triples` tensor", path.display()))?;
    ensure!(
        triples.kind() == Kind::Int64 && triples.dim() == 2 && triples.size()[1] == 3,
        "{}: `triples` must be int64 (N, 3), got {:?} {:?}",
        path.display(),
        triples.kind(),
        triples.size()
    );
    let flat = Vec::<i64>::try_from(triples.reshape([-1]))?;
    let (ne, nr) = (meta.entities.len() as i64, meta.relations.len() as i64);
    let triples: Vec<[i64; 3]> = flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
    if let Some((row, bad)) = triples
        .iter()
        .enumerate()
        .find(|(_, [h, t, r])| !(0..ne).contains(h) || !(0..ne).contains(t) || !(0..nr).contains(r))
    {
        anyhow::bail!(
            "{}: triple {row} {bad:?} is outside {ne} entities and {nr} relations",
            path.display()
        );
    }
    let graph = KnowledgeGraph {
        entities: meta.entities,
        relations: meta.relations,
        triples,
    };
    Ok((graph, Some(meta.provenance)))
}

/// The TransE entity table of a knowledge folder, checked against the entity count.
///
/// # Errors
/// A missing file or tensor, or a table whose rows are not `entities` (named).
pub fn read_embeddings(dir: &Path, entities: usize) -> anyhow::Result<Tensor> {
    let path = dir.join(EMBEDDING_FILE);
    let table = Tensor::read_safetensors(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .find(|(name, _)| name == "ent_embeddings.weight")
        .map(|(_, t)| t)
        .with_context(|| format!("{}: no `ent_embeddings.weight`", path.display()))?;
    ensure!(
        table.dim() == 2 && table.size()[0] == entities as i64,
        "{}: ent_embeddings.weight is {:?}, expected {entities} rows (one per entity)",
        path.display(),
        table.size()
    );
    Ok(table)
}
