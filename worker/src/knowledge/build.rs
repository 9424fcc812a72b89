//! `arl knowledge build`: ontology + corpus → entity vocabulary, knowledge subgraph and TransE
//! embeddings (ARL_SPEC.md §2.2–2.3), written to one folder in OpenKE's layout and in ours.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};

use super::graph::{self, Triple};
use super::linker::{Linker, LinkerConfig};
use super::transe::{LinkMetrics, TransE, TransEConfig, split_holdout};
use super::vocab::{KnowledgeGraph, count_mentions, frequent};
use super::{obo, openke, reports, rrf, store};

/// The `[knowledge]` section of a config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// An OBO file (such as HPO's `hp.obo`), or a UMLS `META` folder holding `MRCONSO.RRF`,
    /// `MRREL.RRF` and `MRSTY.RRF`.
    pub ontology: PathBuf,
    /// Triples in ARL's `train_umls.txt` layout to use instead of the ontology's relations.
    pub triples: Option<PathBuf>,
    /// Texts whose mentions define the vocabulary: folders of IU report XML, or text files with
    /// one text per line. Empty: every concept with a relation is kept.
    pub corpus: Vec<PathBuf>,
    /// Keep CUIs mentioned more than this many times (ARL: 20).
    pub min_count: u64,
    /// Also keep the concepts up to this many relation steps from a frequent one, following
    /// triples from head to tail (`is_a`: ancestors). ARL: 0. Small corpora over a sparse
    /// ontology such as HPO need it for a connected graph.
    pub expand_hops: usize,
    /// MRCONSO language of the names (UMLS only).
    pub language: String,
    /// Fraction of the triples held out to measure link prediction (0: train on all, as ARL).
    pub holdout: f64,
    /// Output folder.
    pub output: PathBuf,
    /// Entity linking.
    pub linker: LinkerConfig,
    /// TransE.
    pub transe: TransEConfig,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            ontology: PathBuf::from("data/hpo/hp.obo"),
            triples: None,
            corpus: Vec::new(),
            min_count: 20,
            expand_hops: 0,
            language: "ENG".into(),
            holdout: 0.0,
            output: PathBuf::from("data/knowledge"),
            linker: LinkerConfig::default(),
            transe: TransEConfig::default(),
        }
    }
}

/// A config file with a `[knowledge]` section.
#[derive(serde::Deserialize)]
struct ConfigFile {
    knowledge: BuildConfig,
}

impl BuildConfig {
    /// Reads the `[knowledge]` section of a TOML file (other sections are ignored).
    ///
    /// # Errors
    /// An unreadable file, a missing section, an unknown key or a bad value, named with the file.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = super::read_text(path)?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            table.contains_key("knowledge"),
            "{}: no [knowledge] section",
            path.display()
        );
        let section =
            toml::Table::from_iter([("knowledge".to_owned(), table["knowledge"].clone())]);
        let config: ConfigFile = section
            .try_into()
            .with_context(|| format!("{}: in [knowledge]", path.display()))?;
        let config = config.knowledge;
        config
            .transe
            .validate()
            .with_context(|| format!("{}: in [knowledge.transe]", path.display()))?;
        ensure!(
            (0.0..0.5).contains(&config.holdout),
            "{}: knowledge.holdout must be in [0, 0.5), got {}",
            path.display(),
            config.holdout
        );
        Ok(config)
    }
}

/// What a build produced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuildReport {
    /// Texts linked.
    pub texts: usize,
    /// Mentions found in them.
    pub mentions: usize,
    /// CUIs above the count threshold.
    pub frequent: usize,
    /// Entities in the graph.
    pub entities: usize,
    /// Relations in the graph.
    pub relations: usize,
    /// Triples in the graph.
    pub triples: usize,
    /// Triples held out from TransE.
    pub held_out: usize,
    /// Link prediction on the held-out triples before training.
    pub untrained: Option<LinkMetrics>,
    /// The same after training.
    pub trained: Option<LinkMetrics>,
}

/// The dictionary and relations of an ontology source.
struct Source {
    linker: Linker,
    triples: Vec<Triple>,
    names: HashMap<String, String>,
    version: String,
}

fn load_source(cfg: &BuildConfig) -> anyhow::Result<Source> {
    let path = &cfg.ontology;
    let source = if path.is_dir() {
        let names = rrf::read_names(&path.join("MRCONSO.RRF"), &cfg.language)?;
        let types = rrf::read_semantic_types(&path.join("MRSTY.RRF"))?;
        let relations = rrf::read_relations(&path.join("MRREL.RRF"))?;
        Source {
            linker: Linker::from_umls(&names, &types, cfg.linker.clone())?,
            triples: graph::mrrel_triples(&relations),
            names: graph::mrconso_names(&names),
            version: format!("UMLS {}", path.display()),
        }
    } else {
        let ontology = obo::read(path)?;
        Source {
            linker: Linker::from_ontology(&ontology, cfg.linker.clone())?,
            triples: graph::ontology_triples(&ontology),
            names: graph::ontology_names(&ontology),
            version: ontology
                .version
                .unwrap_or_else(|| path.display().to_string()),
        }
    };
    Ok(match &cfg.triples {
        Some(file) => Source {
            triples: graph::read_arl_triples(file)?,
            ..source
        },
        None => source,
    })
}

/// The texts of the corpus paths: report folders or one-text-per-line files.
fn read_corpus(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = reports::read_dir(path)?;
            ensure!(!found.is_empty(), "{}: no report XML files", path.display());
            texts.extend(found.iter().map(reports::Report::text));
        } else {
            let text = super::read_text(path)?;
            texts.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
    }
    Ok(texts)
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>8} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs the whole build and writes the output folder.
///
/// # Errors
/// Unreadable inputs (named), an empty graph (with the numbers that led to it), or an output
/// that cannot be written.
pub fn build(cfg: &BuildConfig) -> anyhow::Result<BuildReport> {
    let source = load_source(cfg)?;
    let texts = read_corpus(&cfg.corpus)?;
    let progress = bar(texts.len(), "link");
    let mut cuis: Vec<String> = Vec::new();
    for text in &texts {
        cuis.extend(source.linker.link(text).into_iter().map(|m| m.cui));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let counts: BTreeMap<String, u64> = count_mentions(cuis.iter().map(String::as_str));
    let keep: HashSet<String> = if cfg.corpus.is_empty() {
        source
            .triples
            .iter()
            .flat_map(|t| [t.head.clone(), t.tail.clone()])
            .collect()
    } else {
        let mut keep = frequent(&counts, cfg.min_count);
        expand(&mut keep, &source.triples, cfg.expand_hops);
        keep
    };
    let graph = KnowledgeGraph::extract(&source.triples, &keep, &source.names);
    if graph.triples.is_empty() {
        bail!(
            "empty knowledge graph: {} texts gave {} mentions of {} CUIs, {} above min_count = {}, \
             and no relation of {} joins two of them (lower min_count or add texts)",
            texts.len(),
            cuis.len(),
            counts.len(),
            keep.len(),
            cfg.min_count,
            cfg.ontology.display()
        );
    }
    let (train, test) = split_holdout(&graph.triples, cfg.holdout, cfg.transe.seed);
    let mut model = TransE::new(
        graph.entities.len() as i64,
        graph.relations.len() as i64,
        cfg.transe.clone(),
    );
    let known: HashSet<[i64; 3]> = graph.triples.iter().copied().collect();
    let untrained = (!test.is_empty()).then(|| model.evaluate(&test, &known));
    let progress = bar(cfg.transe.epochs, "transe");
    model.train(&train, |_, loss| {
        progress.set_message(format!("loss {loss:.4}"));
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    let trained = (!test.is_empty()).then(|| model.evaluate(&test, &known));
    let report = BuildReport {
        texts: texts.len(),
        mentions: cuis.len(),
        frequent: keep.len(),
        entities: graph.entities.len(),
        relations: graph.relations.len(),
        triples: graph.triples.len(),
        held_out: test.len(),
        untrained,
        trained,
    };
    let mentions: HashMap<&str, u64> = counts.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    // Everything is written to a staging folder first, so a failure leaves the old output whole.
    let staging = cfg.output.join(format!(".staging-{}", std::process::id()));
    store::write(
        &staging,
        &graph,
        &store::Provenance {
            ontology: source.version,
            corpus: cfg.corpus.clone(),
            min_count: cfg.min_count,
            mentions: graph
                .entities
                .iter()
                .map(|e| mentions.get(e.cui.as_str()).copied().unwrap_or(0))
                .collect(),
            transe: cfg.transe.clone(),
            held_out: test,
            report: report.clone(),
        },
    )?;
    openke::write(&graph, &staging)?;
    model.save(&staging.join(store::EMBEDDING_FILE))?;
    publish(&staging, &cfg.output)?;
    Ok(report)
}

/// Adds to `keep` the tails of triples whose head is kept, `hops` times over.
fn expand(keep: &mut HashSet<String>, triples: &[Triple], hops: usize) {
    for _ in 0..hops {
        let reached: Vec<String> = triples
            .iter()
            .filter(|t| keep.contains(&t.head) && !keep.contains(&t.tail))
            .map(|t| t.tail.clone())
            .collect();
        if reached.is_empty() {
            break;
        }
        keep.extend(reached);
    }
}

/// Moves every file of `staging` into `output` (same file system: each move is atomic) and
/// removes `staging`.
fn publish(staging: &Path, output: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(staging).with_context(|| format!("reading {}", staging.display()))?;
    for entry in entries {
        let from = entry?.path();
        let to = output.join(from.file_name().unwrap_or_default());
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    std::fs::remove_dir(staging).with_context(|| format!("removing {}", staging.display()))
}
