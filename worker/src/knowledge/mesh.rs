//! The development gold set of entity linking: the Indiana University reports' own MeSH
//! annotations mapped to HPO concepts by `mesh_to_hpo.tsv` (compiled in; every heading of the
//! odd-numbered reports, each row with its source and reason). Only odd-numbered reports are
//! read ([`super::reports::read_dir`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::ParseError;
use super::reports::Report;

/// The compiled-in table.
const INDIANA: &str = include_str!("mesh_to_hpo.tsv");

/// What a MeSH term stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping<'a> {
    /// HPO concepts.
    Concepts(&'a [String]),
    /// A heading with no HPO concept (anatomy, devices, procedures, …).
    NoConcept,
    /// A heading the table does not list.
    Unknown,
    /// The annotation of a normal report.
    Normal,
}

/// A row's value.
#[derive(Debug, Clone)]
enum Row {
    Concepts(Vec<String>),
    NoConcept,
    Normal,
}

/// MeSH headings (and heading/qualifier pairs) → HPO concepts.
#[derive(Debug, Clone, Default)]
pub struct MeshTable {
    headings: HashMap<String, Row>,
    qualified: HashMap<(String, String), Vec<String>>,
}

impl MeshTable {
    /// The compiled-in table for the Indiana University reports.
    ///
    /// # Errors
    /// A malformed row (a bug caught by the unit tests).
    pub fn indiana() -> Result<Self, ParseError> {
        Self::parse(INDIANA, Path::new("worker/src/knowledge/mesh_to_hpo.tsv"))
    }

    /// Parses rows of `term`, `ids` (comma-separated, `-` for none), `source`, `note`; `#` lines
    /// are comments.
    ///
    /// # Errors
    /// A row without four fields, an unknown source, or ids that disagree with the source.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ParseError> {
        let mut table = Self::default();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| ParseError::new(path, index + 1, why);
            let [term, ids, source, _note] = line.split('\t').collect::<Vec<_>>()[..] else {
                return Err(bad("expected 4 tab-separated fields"));
            };
            let ids: Vec<String> = ids.split(',').map(str::to_owned).collect();
            let row = match (source, ids.as_slice()) {
                ("none", [none]) if none == "-" => Row::NoConcept,
                ("marker", [none]) if none == "-" => Row::Normal,
                ("name" | "synonym" | "manual", ids)
                    if ids.iter().all(|i| i.starts_with("HP:")) =>
                {
                    Row::Concepts(ids.to_vec())
                }
                _ => {
                    return Err(bad(
                        "expected ids HP:… for name/synonym/manual, - for none/marker",
                    ));
                }
            };
            match (term.split_once('/'), row) {
                (Some((heading, qualifier)), Row::Concepts(ids)) => {
                    table.qualified.insert((key(heading), key(qualifier)), ids);
                }
                (Some(_), _) => return Err(bad("a heading/qualifier row needs HPO ids")),
                (None, row) => {
                    table.headings.insert(key(term), row);
                }
            }
        }
        Ok(table)
    }

    /// The concepts of one MeSH term (`Heading/qualifier/…`).
    pub fn map(&self, term: &str) -> Mapping<'_> {
        let mut parts = term.split('/');
        let heading = key(parts.next().unwrap_or_default());
        match self.headings.get(&heading) {
            Some(Row::Concepts(ids)) => Mapping::Concepts(ids),
            Some(Row::Normal) => Mapping::Normal,
            Some(Row::NoConcept) => parts
                .find_map(|q| self.qualified.get(&(heading.clone(), key(q))))
                .map_or(Mapping::NoConcept, |ids| Mapping::Concepts(ids)),
            None => Mapping::Unknown,
        }
    }
}

/// Lower case with runs of whitespace as one space.
fn key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// One report of the gold set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldReport {
    /// The XML file.
    pub file: PathBuf,
    /// FINDINGS and IMPRESSION.
    pub text: String,
    /// HPO concepts of its MeSH terms.
    pub concepts: BTreeSet<String>,
    /// Annotated `normal` and nothing else.
    pub normal: bool,
}

/// The gold set of a report folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldSet {
    /// Reports with concepts or annotated normal.
    pub reports: Vec<GoldReport>,
    /// (report, MeSH term) pairs without an HPO concept, unknown headings included.
    pub unmapped_terms: usize,
    /// Headings the table does not list.
    pub unknown_headings: BTreeSet<String>,
}

/// The gold set of `reports` under `table`.
pub fn gold_set(reports: &[Report], table: &MeshTable) -> GoldSet {
    let mut gold = GoldSet::default();
    for report in reports {
        let mut concepts = BTreeSet::new();
        let mut terms: Vec<&String> = report.mesh.iter().collect();
        terms.sort();
        terms.dedup();
        let mut normal = !terms.is_empty();
        for term in terms {
            match table.map(term) {
                Mapping::Concepts(ids) => concepts.extend(ids.iter().cloned()),
                Mapping::Normal => continue,
                Mapping::NoConcept => gold.unmapped_terms += 1,
                Mapping::Unknown => {
                    gold.unmapped_terms += 1;
                    gold.unknown_headings
                        .insert(term.split('/').next().unwrap_or_default().trim().to_owned());
                }
            }
            normal = false;
        }
        if normal || !concepts.is_empty() {
            gold.reports.push(GoldReport {
                file: report.file.clone(),
                text: report.text(),
                concepts,
                normal,
            });
        }
    }
    gold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_qualifiers_and_markers_map() {
        let table = MeshTable::indiana().unwrap();
        let ids = |term: &str| match table.map(term) {
            Mapping::Concepts(ids) => ids.to_vec(),
            other => panic!("{term}: {other:?}"),
        };
        assert_eq!(ids("Cardiomegaly/mild"), ["HP:0001640"]);
        assert_eq!(
            ids("Calcified Granuloma/lung"),
            ["HP:0032252", "HP:0003761"]
        );
        assert_eq!(ids("Cardiac Shadow/enlarged/mild"), ["HP:0001640"]);
        assert_eq!(ids("subcutaneous  EMPHYSEMA/right"), ["HP:6001021"]);
        assert_eq!(table.map("Cardiac Shadow/normal"), Mapping::NoConcept);
        assert_eq!(table.map("Lung/hypoinflation"), Mapping::NoConcept);
        assert_eq!(table.map("normal"), Mapping::Normal);
        assert_eq!(table.map("Unheard Of/lung"), Mapping::Unknown);
    }

    #[test]
    fn malformed_rows_are_named() {
        let error = MeshTable::parse("Lung\t-\tmanual\tx\n", Path::new("t.tsv")).unwrap_err();
        assert_eq!(error.line, 1);
        let error = MeshTable::parse("# c\nA/b\t-\tnone\tx\n", Path::new("t.tsv")).unwrap_err();
        assert_eq!(error.line, 2);
    }
}
