//! OBO 1.2 reader for ontologies such as HPO's `hp.obo`: `[Term]` stanzas with `id`, `name`,
//! `synonym` (text, scope and type), `is_a`, `alt_id` and `xref: UMLS:C…`; obsolete terms are
//! skipped, other stanza kinds (`[Typedef]`) ignored.

use std::collections::HashMap;
use std::path::Path;

use super::{ParseError, read_text};

/// How a synonym relates to the term (OBO scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynonymScope {
    /// The same concept.
    Exact,
    /// A broader phrase.
    Broad,
    /// A narrower phrase.
    Narrow,
    /// Related, not equivalent.
    Related,
}

/// One synonym of a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    /// The phrase.
    pub text: String,
    /// Its scope.
    pub scope: SynonymScope,
    /// Its type, if given (`layperson`, `abbreviation`, `plural_form`, …).
    pub kind: Option<String>,
}

/// One live term.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Term {
    /// `HP:0001640`.
    pub id: String,
    /// Primary name.
    pub name: String,
    /// Synonyms in file order.
    pub synonyms: Vec<Synonym>,
    /// `is_a` parents.
    pub parents: Vec<String>,
    /// Alternative ids.
    pub alt_ids: Vec<String>,
    /// UMLS CUIs from `xref: UMLS:…`.
    pub umls: Vec<String>,
}

/// An ontology: its live terms and its release (`data-version`).
#[derive(Debug, Clone, Default)]
pub struct Ontology {
    /// `data-version` of the header, if present.
    pub version: Option<String>,
    /// Live terms in file order.
    pub terms: Vec<Term>,
}

/// The root of HPO's phenotypic abnormalities.
pub const PHENOTYPIC_ABNORMALITY: &str = "HP:0000118";

impl Ontology {
    /// Each term's index in [`Ontology::terms`], by id.
    pub fn index_by_id(&self) -> HashMap<&str, usize> {
        self.terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect()
    }

    /// Each term's concept, in term order: its first UMLS CUI; else, for a term below HPO's
    /// Phenotypic abnormality ([`PHENOTYPIC_ABNORMALITY`]), its own id, so that findings HPO
    /// gives no CUI ("Pulmonary opacity", "Granuloma") can still be linked; else none (HPO's
    /// modifiers, frequencies, modes of inheritance and health states such as "Affected" are
    /// not findings).
    pub fn concepts(&self) -> Vec<Option<&str>> {
        let by_id = self.index_by_id();
        let mut phenotype: Vec<Option<bool>> = vec![None; self.terms.len()];
        (0..self.terms.len())
            .map(|i| {
                let term = &self.terms[i];
                match term.umls.first() {
                    Some(cui) => Some(cui.as_str()),
                    None => is_phenotype(self, &by_id, i, &mut phenotype).then_some(&*term.id),
                }
            })
            .collect()
    }
}

/// Whether term `i` is HPO's phenotypic abnormality or below it (memoised in `memo`; a cycle
/// counts as not below).
fn is_phenotype(
    ontology: &Ontology,
    by_id: &HashMap<&str, usize>,
    i: usize,
    memo: &mut [Option<bool>],
) -> bool {
    if let Some(known) = memo[i] {
        return known;
    }
    memo[i] = Some(false);
    let term = &ontology.terms[i];
    let below = term.id == PHENOTYPIC_ABNORMALITY
        || term.parents.iter().any(|parent| {
            by_id
                .get(parent.as_str())
                .is_some_and(|&p| is_phenotype(ontology, by_id, p, memo))
        });
    memo[i] = Some(below);
    below
}

/// Reads an OBO file.
///
/// # Errors
/// An unreadable file, or a malformed line (file and line named).
pub fn read(path: &Path) -> anyhow::Result<Ontology> {
    Ok(parse(&read_text(path)?, path)?)
}

/// Parses OBO text; `path` names the source in errors.
///
/// # Errors
/// A malformed `synonym`, a term without `id` or `name`, or a tag outside any stanza that this
/// reader needs.
pub fn parse(text: &str, path: &Path) -> Result<Ontology, ParseError> {
    let mut ontology = Ontology::default();
    let mut current: Option<(Term, bool, usize)> = None; // (term, obsolete, first line)
    let mut in_term = false;
    let finish =
        |current: Option<(Term, bool, usize)>, ontology: &mut Ontology| -> Result<(), ParseError> {
            if let Some((term, obsolete, line)) = current {
                if term.id.is_empty() || term.name.is_empty() {
                    return Err(ParseError::new(path, line, "[Term] without id or name"));
                }
                if !obsolete {
                    ontology.terms.push(term);
                }
            }
            Ok(())
        };
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('!') {
            continue;
        }
        if line.starts_with('[') {
            finish(current.take(), &mut ontology)?;
            in_term = line == "[Term]";
            if in_term {
                current = Some((Term::default(), false, line_no));
            }
            continue;
        }
        let Some((tag, value)) = line.split_once(':') else {
            return Err(ParseError::new(
                path,
                line_no,
                format!("expected `tag: value`, got {line:?}"),
            ));
        };
        let value = strip_comment(value.trim());
        match (&mut current, in_term) {
            (None, _) if tag == "data-version" => ontology.version = Some(value.to_owned()),
            (Some((term, obsolete, _)), true) => match tag {
                "id" => term.id = value.to_owned(),
                "name" => term.name = value.to_owned(),
                "synonym" => term.synonyms.push(parse_synonym(value).ok_or_else(|| {
                    ParseError::new(path, line_no, format!("malformed synonym {value:?}"))
                })?),
                "is_a" => term
                    .parents
                    .push(value.split_whitespace().next().unwrap_or("").to_owned()),
                "alt_id" => term.alt_ids.push(value.to_owned()),
                "xref" => {
                    if let Some(cui) = value
                        .split_whitespace()
                        .next()
                        .and_then(|x| x.strip_prefix("UMLS:"))
                    {
                        term.umls.push(cui.to_owned());
                    }
                }
                "is_obsolete" => *obsolete = value == "true",
                _ => {}
            },
            _ => {}
        }
    }
    finish(current.take(), &mut ontology)?;
    Ok(ontology)
}

/// Removes a trailing ` ! comment` (outside quotes).
fn strip_comment(value: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '!' if !quoted => return value[..i].trim_end(),
            _ => {}
        }
    }
    value
}

/// `"text" SCOPE [TYPE] [refs]` → a synonym; `None` when malformed.
fn parse_synonym(value: &str) -> Option<Synonym> {
    let rest = value.strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = rest.char_indices();
    let end = loop {
        let (i, c) = chars.next()?;
        match c {
            '\\' => text.push(chars.next()?.1),
            '"' => break i,
            c => text.push(c),
        }
    };
    let mut words = rest[end + 1..].split_whitespace();
    let scope = match words.next()? {
        "EXACT" => SynonymScope::Exact,
        "BROAD" => SynonymScope::Broad,
        "NARROW" => SynonymScope::Narrow,
        "RELATED" => SynonymScope::Related,
        _ => return None,
    };
    let kind = words
        .next()
        .filter(|w| !w.starts_with('['))
        .map(str::to_owned);
    Some(Synonym { text, scope, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"format-version: 1.2
data-version: hp/releases/2025-01-16

[Term]
id: HP:0001640
name: Cardiomegaly
synonym: "Enlarged heart" EXACT layperson []
synonym: "Heart \"big\"" RELATED [PMID:1]
xref: SNOMEDCT_US:8186001
xref: UMLS:C0018800
is_a: HP:0001627 ! Abnormal heart morphology
alt_id: HP:0000001

[Term]
id: HP:0000005
name: Old term
is_obsolete: true

[Typedef]
id: part_of
name: part of
"#;

    #[test]
    fn terms_synonyms_xrefs_and_parents_are_read_and_obsolete_terms_skipped() {
        let ontology = parse(SAMPLE, Path::new("sample.obo")).unwrap();
        assert_eq!(ontology.version.as_deref(), Some("hp/releases/2025-01-16"));
        assert_eq!(ontology.terms.len(), 1);
        let term = &ontology.terms[0];
        assert_eq!(
            (term.id.as_str(), term.name.as_str()),
            ("HP:0001640", "Cardiomegaly")
        );
        assert_eq!(term.umls, ["C0018800"]);
        assert_eq!(term.parents, ["HP:0001627"]);
        assert_eq!(term.alt_ids, ["HP:0000001"]);
        assert_eq!(
            term.synonyms,
            [
                Synonym {
                    text: "Enlarged heart".into(),
                    scope: SynonymScope::Exact,
                    kind: Some("layperson".into())
                },
                Synonym {
                    text: "Heart \"big\"".into(),
                    scope: SynonymScope::Related,
                    kind: None
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let bad = "[Term]\nid: HP:1\nname: X\nsynonym: Enlarged heart EXACT []\n";
        let error = parse(bad, Path::new("hp.obo")).unwrap_err().to_string();
        assert!(error.starts_with("hp.obo:4: malformed synonym"), "{error}");
        let error = parse("[Term]\nname: X\n", Path::new("hp.obo"))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "hp.obo:1: [Term] without id or name");
        let error = parse("[Term]\nid HP0001\n", Path::new("hp.obo"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("hp.obo:2: expected `tag: value`"),
            "{error}"
        );
    }
}
