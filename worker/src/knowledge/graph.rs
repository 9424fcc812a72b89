//! Knowledge-graph triples over UMLS CUIs, from the sources arl can read: an OBO ontology's `is_a`
//! hierarchy (HPO), UMLS `MRREL` rows, or ARL's own `train_umls.txt`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::obo::Ontology;
use super::rrf::{ConceptName, Relation};
use super::{ParseError, read_text};

/// One triple: `head` has `relation` to `tail`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Triple {
    /// Head CUI.
    pub head: String,
    /// Tail CUI.
    pub tail: String,
    /// Relation name.
    pub relation: String,
}

impl Triple {
    fn new(head: &str, tail: &str, relation: &str) -> Self {
        Self {
            head: head.to_owned(),
            tail: tail.to_owned(),
            relation: relation.to_owned(),
        }
    }
}

/// Relation name of an ontology's hierarchy.
pub const IS_A: &str = "is_a";

/// The `is_a` hierarchy of an OBO ontology between its concepts ([`Ontology::concepts`]: a
/// term's first UMLS CUI, else a phenotypic abnormality's own id), as `child is_a parent`
/// triples. A parent without a concept is skipped over: the edge goes to its nearest ancestors
/// that have one, so the hierarchy stays connected.
pub fn ontology_triples(ontology: &Ontology) -> Vec<Triple> {
    let by_id = ontology.index_by_id();
    let concepts = ontology.concepts();
    let cui = |i: usize| concepts[i];
    let mut triples = Vec::new();
    for (index, term) in ontology.terms.iter().enumerate() {
        let Some(child) = cui(index) else { continue };
        let mut targets: Vec<&str> = Vec::new();
        let mut stack: Vec<usize> = term
            .parents
            .iter()
            .filter_map(|p| by_id.get(p.as_str()).copied())
            .collect();
        let mut visited = vec![index];
        while let Some(parent) = stack.pop() {
            if visited.contains(&parent) {
                continue;
            }
            visited.push(parent);
            match cui(parent) {
                Some(found) => targets.push(found),
                None => stack.extend(
                    ontology.terms[parent]
                        .parents
                        .iter()
                        .filter_map(|p| by_id.get(p.as_str()).copied()),
                ),
            }
        }
        targets.sort_unstable();
        targets.dedup();
        triples.extend(
            targets
                .into_iter()
                .filter(|t| *t != child)
                .map(|parent| Triple::new(child, parent, IS_A)),
        );
    }
    triples
}

/// Preferred names of an ontology's concepts (the first term that carries each).
pub fn ontology_names(ontology: &Ontology) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for (term, concept) in ontology.terms.iter().zip(ontology.concepts()) {
        if let Some(concept) = concept {
            names
                .entry(concept.to_owned())
                .or_insert_with(|| term.name.clone());
        }
    }
    names
}

/// UMLS `MRREL` rows as triples `CUI1 —RELA (or REL)→ CUI2`; rows relating a concept to itself
/// are skipped.
pub fn mrrel_triples(relations: &[Relation]) -> Vec<Triple> {
    relations
        .iter()
        .filter(|r| r.cui1 != r.cui2)
        .map(|r| Triple::new(&r.cui1, &r.cui2, r.rela.as_deref().unwrap_or(&r.rel)))
        .collect()
}

/// Preferred names from `MRCONSO` rows: the first preferred atom of each CUI, else its first
/// atom.
pub fn mrconso_names(names: &[ConceptName]) -> HashMap<String, String> {
    let mut out: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    for name in names {
        let entry = out.entry(&name.cui).or_insert((&name.name, name.preferred));
        if name.preferred && !entry.1 {
            *entry = (&name.name, true);
        }
    }
    out.into_iter()
        .map(|(cui, (name, _))| (cui.to_owned(), name.to_owned()))
        .collect()
}

/// Reads ARL's `train_umls.txt`: tab-separated, column 0 the head CUI, column 1 the tail CUI,
/// column 3 the relation (column 2 unused).
///
/// # Errors
/// An unreadable file or a row with fewer than 4 columns (file and line named).
pub fn read_arl_triples(path: &Path) -> anyhow::Result<Vec<Triple>> {
    Ok(parse_arl_triples(&read_text(path)?, path)?)
}

/// See [`read_arl_triples`].
///
/// # Errors
/// As [`read_arl_triples`].
pub fn parse_arl_triples(text: &str, path: &Path) -> Result<Vec<Triple>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(index, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 {
                return Err(ParseError::new(
                    path,
                    index + 1,
                    format!("{} columns, expected at least 4", f.len()),
                ));
            }
            Ok(Triple::new(f[0], f[1], f[3]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::obo;

    #[test]
    fn phenotypes_without_a_cui_are_keyed_by_their_id_and_other_terms_skipped() {
        let text = "[Term]\nid: HP:0000118\nname: Phenotypic abnormality\nxref: UMLS:C1\n\n\
                    [Term]\nid: HP:2\nname: No cui\nis_a: HP:0000118\n\n\
                    [Term]\nid: HP:3\nname: Leaf\nxref: UMLS:C3\nis_a: HP:2\nis_a: HP:0000118\n\n\
                    [Term]\nid: HP:4\nname: Other\nxref: UMLS:C4\nis_a: HP:3\n\n\
                    [Term]\nid: HP:5\nname: Health status\n\n\
                    [Term]\nid: HP:6\nname: Affected\nis_a: HP:5\n\n\
                    [Term]\nid: HP:7\nname: Coded modifier\nxref: UMLS:C7\nis_a: HP:6\n";
        let ontology = obo::parse(text, Path::new("t.obo")).unwrap();
        let triples = ontology_triples(&ontology);
        assert_eq!(
            triples,
            [
                Triple::new("HP:2", "C1", IS_A),
                Triple::new("C3", "C1", IS_A),
                Triple::new("C3", "HP:2", IS_A),
                Triple::new("C4", "C3", IS_A)
            ],
            "C7's parents have no concept and no ancestor with one"
        );
        let names = ontology_names(&ontology);
        assert_eq!(
            (names["C3"].as_str(), names["HP:2"].as_str()),
            ("Leaf", "No cui")
        );
        assert!(!names.contains_key("HP:6"), "{names:?}");
    }

    #[test]
    fn arl_triples_use_columns_0_1_and_3() {
        let triples =
            parse_arl_triples("C1\tC2\tx\tisa\n\nC2\tC3\ty\tpart_of\n", Path::new("u")).unwrap();
        assert_eq!(triples[1], Triple::new("C2", "C3", "part_of"));
        let error = parse_arl_triples("C1\tC2\n", Path::new("train_umls.txt")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "train_umls.txt:1: 2 columns, expected at least 4"
        );
    }
}
