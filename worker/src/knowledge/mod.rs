//! Knowledge (ARL_SPEC.md §2): ontology readers for OBO (the Human Phenotype Ontology, real UMLS
//! CUIs, installable offline) and UMLS Rich Release Format files (for users with a licence),
//! dictionary entity linking with negation, and its quality against the Indiana University
//! reports' MeSH annotations.

pub mod build;
mod context;
mod frames;
pub mod fuzzy;
pub mod graph;
pub mod hpoa;
pub mod inputs;
pub mod lexicon;
pub mod linker;
pub mod mesh;
pub mod morphology;
pub mod normalize;
pub mod obo;
pub mod openke;
pub mod quality;
pub mod reports;
pub mod rrf;
pub mod store;
mod tokens;
pub mod transe;
pub mod vocab;

use std::path::{Path, PathBuf};

/// An error in an input file, naming the file and the 1-based line.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a whole text file, naming it on failure.
pub(crate) fn read_text(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
