//! Dictionary entity linking: every name and synonym of a concept (keyed by UMLS CUI) becomes a
//! pattern of an Aho-Corasick automaton over normalised text (case, hyphens, punctuation,
//! grammatical number); matches are leftmost-longest on word boundaries, reported with exact
//! character offsets into the original text, and flagged negated or uncertain by NegEx-style
//! triggers in the same sentence.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

use super::graph::mrconso_names;
use super::normalize::{normalize, normalize_phrase, number_variants};
use super::obo::{Ontology, SynonymScope};
use super::rrf::{ConceptName, SemanticType};

/// Words before a finding that negate it.
const NEGATION_BEFORE: [&str; 16] = [
    "no",
    "not",
    "without",
    "negative for",
    "no evidence of",
    "no signs of",
    "no sign of",
    "free of",
    "absence of",
    "absent",
    "denies",
    "rule out",
    "ruled out",
    "resolution of",
    "resolved",
    "clear of",
];
/// Words after a finding that negate it.
const NEGATION_AFTER: [&str; 7] = [
    "is absent",
    "are absent",
    "not seen",
    "not present",
    "has resolved",
    "have resolved",
    "resolved",
];
/// Words before a finding that make it uncertain.
const UNCERTAIN_BEFORE: [&str; 14] = [
    "possible",
    "possibly",
    "probable",
    "probably",
    "may",
    "might",
    "could",
    "questionable",
    "suspicious for",
    "suggestive of",
    "concern for",
    "cannot exclude",
    "cannot be excluded",
    "likely",
];
/// Words that end the scope of a trigger.
const TERMINATORS: [&str; 6] = ["but", "however", "although", "except", "which", "though"];

/// Settings of the linker.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkerConfig {
    /// Shortest phrase (in characters) kept in the dictionary.
    pub min_len: usize,
    /// Phrases never linked (modifiers that ontologies also list as terms).
    pub stop_terms: Vec<String>,
    /// Words a trigger reaches.
    pub window: usize,
    /// UMLS semantic types (TUI such as `T047`, or name such as `Disease or Syndrome`) whose
    /// concepts are kept; empty keeps all. Applies to UMLS dictionaries ([`Linker::from_umls`]).
    pub semantic_types: Vec<String>,
}

impl Default for LinkerConfig {
    fn default() -> Self {
        let stop = [
            "right",
            "left",
            "acute",
            "chronic",
            "severe",
            "mild",
            "moderate",
            "small",
            "large",
            "bilateral",
            "unilateral",
            "normal",
            "abnormal",
            "progressive",
            "all",
            "onset",
            "frequent",
            "recurrent",
            "episodic",
        ];
        Self {
            min_len: 3,
            stop_terms: stop.map(str::to_owned).to_vec(),
            window: 6,
            semantic_types: Vec::new(),
        }
    }
}

/// One linked mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// First character (Unicode scalar index, as Python counts).
    pub start_char: usize,
    /// One past the last character.
    pub end_char: usize,
    /// The concept's CUI.
    pub cui: String,
    /// The concept's preferred name.
    pub name: String,
    /// Negated by a trigger in the same sentence.
    pub negated: bool,
    /// Hedged by an uncertainty trigger.
    pub uncertain: bool,
}

/// A concept of the dictionary.
#[derive(Debug, Clone)]
struct Concept {
    cui: String,
    name: String,
}

/// What a pattern of the automaton stands for.
#[derive(Debug, Clone)]
struct Pattern {
    concept: usize,
    /// Abbreviations match only with this exact case in the original text.
    exact_case: Option<String>,
}

/// The linker: a dictionary compiled into an automaton.
pub struct Linker {
    automaton: AhoCorasick,
    patterns: Vec<Pattern>,
    concepts: Vec<Concept>,
    cfg: LinkerConfig,
}

/// A word of the normalised text: its text, character span and sentence.
struct Word<'a> {
    text: &'a str,
    start_char: usize,
    end_char: usize,
    sentence: usize,
}

impl Linker {
    /// A dictionary of (CUI, preferred name, phrases); a phrase marked as an abbreviation (`true`)
    /// must match with its exact case.
    ///
    /// # Errors
    /// The automaton cannot be built (for example, an empty dictionary).
    pub fn new(
        entries: impl IntoIterator<Item = (String, String, Vec<(String, bool)>)>,
        cfg: LinkerConfig,
    ) -> anyhow::Result<Self> {
        let stop: Vec<String> = cfg.stop_terms.iter().map(|s| normalize_phrase(s)).collect();
        let mut concepts = Vec::new();
        let mut phrases: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (cui, name, names) in entries {
            let concept = concepts.len();
            concepts.push(Concept { cui, name });
            for (phrase, abbreviation) in names {
                let normal = normalize_phrase(&phrase);
                if normal.chars().count() < cfg.min_len || stop.contains(&normal) {
                    continue;
                }
                let forms = if abbreviation {
                    vec![normal]
                } else {
                    number_variants(&normal)
                };
                for form in forms {
                    if seen.contains_key(&form) {
                        continue; // the first concept that claims a phrase keeps it
                    }
                    seen.insert(form.clone(), patterns.len());
                    phrases.push(form);
                    patterns.push(Pattern {
                        concept,
                        exact_case: abbreviation.then(|| phrase.clone()),
                    });
                }
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&phrases)?;
        Ok(Self {
            automaton,
            patterns,
            concepts,
            cfg,
        })
    }

    /// [`Linker::from_ontology`] on the OBO file at `path`, with the default settings.
    ///
    /// # Errors
    /// The file cannot be read or parsed (named).
    pub fn from_obo_file(path: &std::path::Path) -> anyhow::Result<Self> {
        Self::from_ontology(&super::obo::read(path)?, LinkerConfig::default())
    }

    /// The CUI-keyed dictionary of an OBO ontology: every live term with a UMLS xref, by its
    /// name and its EXACT synonyms (abbreviations case-sensitive).
    ///
    /// # Errors
    /// As [`Linker::new`].
    pub fn from_ontology(ontology: &Ontology, cfg: LinkerConfig) -> anyhow::Result<Self> {
        let entries = ontology.terms.iter().filter_map(|term| {
            let cui = term.umls.first()?.clone();
            let mut names = vec![(term.name.clone(), false)];
            names.extend(
                term.synonyms
                    .iter()
                    .filter(|s| s.scope == SynonymScope::Exact)
                    .map(|s| {
                        let abbreviation = s.kind.as_deref() == Some("abbreviation");
                        (s.text.clone(), abbreviation)
                    }),
            );
            Some((cui, term.name.clone(), names))
        });
        Self::new(entries, cfg)
    }

    /// The dictionary of UMLS `MRCONSO` names, limited to the concepts of the configured semantic
    /// types (`MRSTY`); acronyms and abbreviations (term types `AB`, `ACR`) are case-sensitive.
    ///
    /// # Errors
    /// As [`Linker::new`].
    pub fn from_umls(
        names: &[ConceptName],
        types: &[SemanticType],
        cfg: LinkerConfig,
    ) -> anyhow::Result<Self> {
        let wanted = &cfg.semantic_types;
        let allowed: Option<std::collections::HashSet<&str>> = (!wanted.is_empty()).then(|| {
            types
                .iter()
                .filter(|t| wanted.contains(&t.tui) || wanted.contains(&t.name))
                .map(|t| t.cui.as_str())
                .collect()
        });
        let preferred = mrconso_names(names);
        let mut phrases: std::collections::BTreeMap<&str, Vec<(String, bool)>> = Default::default();
        for name in names {
            if allowed
                .as_ref()
                .is_none_or(|a| a.contains(name.cui.as_str()))
            {
                let abbreviation = matches!(name.term_type.as_str(), "AB" | "ACR");
                phrases
                    .entry(&name.cui)
                    .or_default()
                    .push((name.name.clone(), abbreviation));
            }
        }
        let entries = phrases.into_iter().map(|(cui, names)| {
            let name = preferred.get(cui).cloned().unwrap_or_default();
            (cui.to_owned(), name, names)
        });
        Self::new(entries, cfg)
    }

    /// Number of distinct phrases in the automaton.
    pub fn phrase_count(&self) -> usize {
        self.patterns.len()
    }

    /// All mentions in `text`, in order.
    pub fn link(&self, text: &str) -> Vec<Mention> {
        let normal = normalize(text);
        let sentences = sentence_ids(text);
        let words = words(&normal.text, &normal.origin, &sentences);
        let bytes = normal.text.as_bytes();
        let chars: Vec<char> = text.chars().collect();
        let mut mentions = Vec::new();
        for found in self.automaton.find_iter(&normal.text) {
            let (start, end) = (found.start(), found.end());
            let on_boundary = (start == 0 || bytes[start - 1] == b' ')
                && (end == bytes.len() || bytes[end] == b' ');
            if !on_boundary {
                continue;
            }
            let pattern = &self.patterns[found.pattern().as_usize()];
            let (start_char, end_char) = (normal.origin[start], normal.origin[end - 1] + 1);
            if let Some(exact) = &pattern.exact_case
                && chars[start_char..end_char].iter().collect::<String>() != *exact
            {
                continue;
            }
            let first = words
                .iter()
                .position(|w| w.end_char > start_char)
                .unwrap_or(0);
            let last = words
                .iter()
                .rposition(|w| w.start_char < end_char)
                .unwrap_or(first);
            let concept = &self.concepts[pattern.concept];
            mentions.push(Mention {
                start_char,
                end_char,
                cui: concept.cui.clone(),
                name: concept.name.clone(),
                negated: self.triggered(&words, first, last, &NEGATION_BEFORE, &NEGATION_AFTER),
                uncertain: self.triggered(&words, first, last, &UNCERTAIN_BEFORE, &[]),
            });
        }
        mentions
    }

    /// Whether a trigger of `before` ends, or one of `after` starts, within the window around
    /// words `first..=last`, in the same sentence and with no terminator in between.
    fn triggered(
        &self,
        words: &[Word],
        first: usize,
        last: usize,
        before: &[&str],
        after: &[&str],
    ) -> bool {
        let sentence = words[first].sentence;
        let in_scope =
            |k: usize| words[k].sentence == sentence && !TERMINATORS.contains(&words[k].text);
        let phrase_at = |triggers: &[&str], from: usize, to: usize| {
            let joined = words[from..=to]
                .iter()
                .map(|w| w.text)
                .collect::<Vec<_>>()
                .join(" ");
            triggers.contains(&joined.as_str())
        };
        let window = self.cfg.window;
        for k in (first.saturating_sub(window)..first).rev() {
            if !in_scope(k) {
                break;
            }
            if (k.saturating_sub(3)..=k)
                .any(|from| phrase_at(before, from, k) && (from..=k).all(in_scope))
            {
                return true;
            }
        }
        for k in last + 1..(last + 1 + window).min(words.len()) {
            if !in_scope(k) {
                break;
            }
            if (k..(k + 3).min(words.len()))
                .any(|to| phrase_at(after, k, to) && (k..=to).all(in_scope))
            {
                return true;
            }
        }
        false
    }
}

/// Sentence number of every character: a new sentence after `.`, `!`, `?`, `;` or a newline.
fn sentence_ids(text: &str) -> Vec<usize> {
    let mut sentence = 0;
    text.chars()
        .map(|c| {
            let id = sentence;
            if matches!(c, '.' | '!' | '?' | ';' | '\n') {
                sentence += 1;
            }
            id
        })
        .collect()
}

/// The words of the normalised text with their original spans and sentences.
fn words<'a>(normal: &'a str, origin: &[usize], sentences: &[usize]) -> Vec<Word<'a>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for text in normal.split(' ') {
        let (start, end) = (offset, offset + text.len());
        offset = end + 1;
        if text.is_empty() {
            continue;
        }
        let start_char = origin[start];
        out.push(Word {
            text,
            start_char,
            end_char: origin[end - 1] + 1,
            sentence: sentences[start_char],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linker() -> Linker {
        let entry = |cui: &str, name: &str, phrases: &[(&str, bool)]| {
            (
                cui.to_owned(),
                name.to_owned(),
                phrases.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect(),
            )
        };
        Linker::new(
            [
                entry("C0032326", "Pneumothorax", &[("Pneumothorax", false)]),
                entry(
                    "C0018800",
                    "Cardiomegaly",
                    &[("Cardiomegaly", false), ("Enlarged heart", false)],
                ),
                entry(
                    "C0032227",
                    "Pleural effusion",
                    &[("Pleural effusion", false)],
                ),
                entry(
                    "C0018802",
                    "Congestive heart failure",
                    &[("Congestive heart failure", false), ("CHF", true)],
                ),
                entry("C0205082", "Severe", &[("Severe", false)]),
            ],
            LinkerConfig::default(),
        )
        .unwrap()
    }

    fn spans(text: &str) -> Vec<(String, &'static str, bool, bool)> {
        let cuis = ["C0032326", "C0018800", "C0032227", "C0018802", "C0205082"];
        linker()
            .link(text)
            .into_iter()
            .map(|m| {
                let cui = cuis.into_iter().find(|c| *c == m.cui).unwrap();
                (
                    text.chars()
                        .skip(m.start_char)
                        .take(m.end_char - m.start_char)
                        .collect(),
                    cui,
                    m.negated,
                    m.uncertain,
                )
            })
            .collect()
    }

    #[test]
    fn negation_plurals_offsets_and_stop_terms() {
        let text = "No pneumothorax. Severe cardiomegaly with small bilateral pleural effusions.";
        assert_eq!(
            spans(text),
            [
                ("pneumothorax".to_owned(), "C0032326", true, false),
                ("cardiomegaly".to_owned(), "C0018800", false, false),
                ("pleural effusions".to_owned(), "C0032227", false, false),
            ]
        );
        let mentions = linker().link(text);
        assert_eq!((mentions[0].start_char, mentions[0].end_char), (3, 15));
        assert_eq!((mentions[2].start_char, mentions[2].end_char), (58, 75));
    }

    #[test]
    fn synonyms_hyphens_uncertainty_and_terminators() {
        assert_eq!(
            spans("The heart is enlarged-heart like."),
            [("enlarged-heart".to_owned(), "C0018800", false, false)]
        );
        assert_eq!(
            spans("Possible small pleural effusion."),
            [("pleural effusion".to_owned(), "C0032227", false, true)]
        );
        assert_eq!(
            spans("No pneumothorax but new cardiomegaly."),
            [
                ("pneumothorax".to_owned(), "C0032326", true, false),
                ("cardiomegaly".to_owned(), "C0018800", false, false)
            ]
        );
        assert_eq!(
            spans("Pleural effusion has resolved."),
            [("Pleural effusion".to_owned(), "C0032227", true, false)]
        );
    }

    #[test]
    fn umls_dictionaries_keep_the_configured_semantic_types() {
        let row = |cui: &str, tty: &str, name: &str, pref: bool| ConceptName {
            cui: cui.into(),
            source: "MSH".into(),
            term_type: tty.into(),
            name: name.into(),
            preferred: pref,
        };
        let names = [
            row("C0018800", "SY", "Enlarged heart", false),
            row("C0018800", "MH", "Cardiomegaly", true),
            row("C0018787", "MH", "Heart", true),
            row("C0024115", "ACR", "LUNG", false),
        ];
        let sty = |cui: &str, tui: &str, name: &str| SemanticType {
            cui: cui.into(),
            tui: tui.into(),
            name: name.into(),
        };
        let types = [
            sty("C0018800", "T047", "Disease or Syndrome"),
            sty("C0018787", "T023", "Body Part, Organ, or Organ Component"),
            sty("C0024115", "T023", "Body Part, Organ, or Organ Component"),
        ];
        let cfg = LinkerConfig {
            semantic_types: vec!["Disease or Syndrome".into()],
            ..LinkerConfig::default()
        };
        let text = "Enlarged heart; heart normal. LUNG clear, lung clear.";
        let diseases = Linker::from_umls(&names, &types, cfg).unwrap();
        let found: Vec<(usize, String, String)> = diseases
            .link(text)
            .into_iter()
            .map(|m| (m.start_char, m.cui, m.name))
            .collect();
        assert_eq!(found, [(0, "C0018800".into(), "Cardiomegaly".into())]);
        let all = Linker::from_umls(&names, &types, LinkerConfig::default()).unwrap();
        let starts: Vec<usize> = all.link(text).iter().map(|m| m.start_char).collect();
        assert_eq!(starts, [0, 16, 30], "the acronym matches only in capitals");
    }

    #[test]
    fn abbreviations_match_only_with_their_case() {
        assert_eq!(
            spans("History of CHF."),
            [("CHF".to_owned(), "C0018802", false, false)]
        );
        assert!(spans("chf").is_empty());
    }
}
