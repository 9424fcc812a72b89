//! Dictionary entity linking: every name and synonym of a concept (keyed by UMLS CUI) becomes a
//! pattern of an Aho-Corasick automaton over the morphological keys of normalised text (case,
//! hyphens, punctuation, inflection and medical derivation: see [`super::morphology`]); a text
//! word whose key no dictionary word has is first stripped of a fused side prefix
//! ("dextroscoliosis") and then corrected to the most similar dictionary word by character 3-gram
//! TF-IDF ([`super::fuzzy`]). Matches are leftmost-longest on word boundaries, reported with exact
//! character offsets into the original text, and flagged negated or uncertain by NegEx-style
//! triggers in the same sentence. HPO dictionaries also get the radiology lexicon's aliases and
//! frames ([`super::lexicon`], [`super::frames`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, MatchKind};

use super::frames::Frames;
use super::fuzzy::TrigramIndex;
use super::graph::mrconso_names;
use super::lexicon::Lexicon;
use super::morphology::Morphology;
use super::normalize::{normalize, normalize_phrase};
use super::obo::{Ontology, SynonymScope};
use super::rrf::{ConceptName, SemanticType};
use super::tokens::{KeyText, Word, sentence_ids, words};

/// Cosine similarity a word needs to be corrected to a dictionary word (SciSpaCy's linker
/// proposes candidates from 0.7; a single word needs more to stay precise).
const FUZZY_THRESHOLD: f32 = 0.8;
/// Shortest word (in characters) that is prefix-stripped or corrected.
const MIN_FUZZY_LEN: usize = 6;
/// Most remembered word keys.
const KEY_CACHE: usize = 1 << 20;

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
/// Words that join a list: a negation before a list ("no consolidation, pleural effusion or
/// pneumothorax") reaches twice the window across it.
const LIST_JOINERS: [&str; 3] = ["or", "nor", "and"];
/// Words that start a new clause and so stop that extension.
const CLAUSE_VERBS: [&str; 7] = ["is", "are", "was", "were", "there", "has", "have"];
/// Qualifiers between a negation and "change" ("no significant change in the granuloma").
const CHANGE_QUALIFIERS: [&str; 5] = [
    "significant",
    "interval",
    "appreciable",
    "definite",
    "substantial",
];

/// Settings of the linker.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkerConfig {
    /// Shortest phrase (in characters) kept in the dictionary.
    pub min_len: usize,
    /// Phrases never linked (modifiers that ontologies also list as terms).
    pub stop_terms: Vec<String>,
    /// Words a trigger reaches (a negation reaches twice as far across a list).
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
    /// Other concepts whose phrase has the same key, by their normalised phrase: a text that
    /// spells one of them exactly links to it.
    others: Vec<(String, usize)>,
}

/// A dictionary entry: CUI, preferred name, and phrases (`true`: an abbreviation).
type Entry = (String, String, Vec<(String, bool)>);
/// A frame of the dictionary: the index of its entry, subject phrases and state phrases.
type FrameEntry = (usize, Vec<String>, Vec<String>);

/// The linker: a dictionary compiled into an automaton.
pub struct Linker {
    automaton: AhoCorasick,
    patterns: Vec<Pattern>,
    concepts: Vec<Concept>,
    frames: Frames,
    morphology: Morphology,
    /// Keys of the dictionary's words.
    vocabulary: HashSet<String>,
    /// The dictionary's words, for correcting text words outside it.
    fuzzy: TrigramIndex,
    /// Text words seen and the key each matches by ([`Linker::word_key`]).
    keys: Mutex<HashMap<String, String>>,
    cfg: LinkerConfig,
}

impl Linker {
    /// A dictionary of (CUI, preferred name, phrases); a phrase marked as an abbreviation (`true`)
    /// must match with its exact case.
    ///
    /// # Errors
    /// The automaton cannot be built (for example, an empty dictionary).
    pub fn new(
        entries: impl IntoIterator<Item = Entry>,
        cfg: LinkerConfig,
    ) -> anyhow::Result<Self> {
        Self::with_frames(entries.into_iter().collect(), Vec::new(), cfg)
    }

    fn with_frames(
        entries: Vec<Entry>,
        frames: Vec<FrameEntry>,
        cfg: LinkerConfig,
    ) -> anyhow::Result<Self> {
        let morphology = Morphology::default();
        let stop: HashSet<String> = cfg
            .stop_terms
            .iter()
            .map(|s| morphology.phrase_key(&normalize_phrase(s)))
            .collect();
        let mut concepts = Vec::new();
        let mut phrases: Vec<String> = Vec::new();
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut surface_words: HashSet<String> = HashSet::new();
        for (cui, name, names) in entries {
            let concept = concepts.len();
            concepts.push(Concept { cui, name });
            for (phrase, abbreviation) in names {
                let normal = normalize_phrase(&phrase);
                let key = morphology.phrase_key(&normal);
                if normal.chars().count() < cfg.min_len || stop.contains(&key) {
                    continue;
                }
                surface_words.extend(normal.split(' ').map(str::to_owned));
                match seen.get(&key) {
                    // The first concept that claims a key keeps it; the others keep their
                    // exact spelling.
                    Some(&at) => {
                        let first = &mut patterns[at];
                        if first.concept != concept && !abbreviation {
                            first.others.push((normal, concept));
                        }
                    }
                    None => {
                        seen.insert(key.clone(), patterns.len());
                        phrases.push(key);
                        patterns.push(Pattern {
                            concept,
                            exact_case: abbreviation.then(|| phrase.clone()),
                            others: Vec::new(),
                        });
                    }
                }
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&phrases)?;
        let key_all = |phrases: Vec<String>| -> Vec<String> {
            phrases
                .iter()
                .map(|p| morphology.phrase_key(&normalize_phrase(p)))
                .collect()
        };
        let frames = Frames::new(
            frames
                .into_iter()
                .map(|(concept, subjects, states)| (concept, key_all(subjects), key_all(states)))
                .collect(),
        )?;
        let vocabulary = surface_words.iter().map(|w| morphology.key(w)).collect();
        let fuzzy = TrigramIndex::new(
            surface_words.into_iter().filter(|w| {
                w.chars().count() >= MIN_FUZZY_LEN && w.chars().all(char::is_alphabetic)
            }),
            FUZZY_THRESHOLD,
        );
        Ok(Self {
            automaton,
            patterns,
            concepts,
            frames,
            morphology,
            vocabulary,
            fuzzy,
            keys: Mutex::default(),
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
    /// name and its EXACT synonyms (abbreviations case-sensitive), plus the radiology lexicon's
    /// aliases and frames of those terms.
    ///
    /// # Errors
    /// As [`Linker::new`].
    pub fn from_ontology(ontology: &Ontology, cfg: LinkerConfig) -> anyhow::Result<Self> {
        let lexicon = Lexicon::radiology()?;
        let mut entries = Vec::new();
        let mut entry_of: HashMap<&str, usize> = HashMap::new();
        for term in &ontology.terms {
            let Some(cui) = term.umls.first() else {
                continue;
            };
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
            names.extend(
                lexicon
                    .aliases
                    .iter()
                    .filter(|(id, _)| *id == term.id)
                    .map(|(_, phrase)| (phrase.clone(), false)),
            );
            entry_of.insert(&term.id, entries.len());
            entries.push((cui.clone(), term.name.clone(), names));
        }
        let frames = lexicon
            .frames
            .into_iter()
            .filter_map(|f| Some((*entry_of.get(f.id.as_str())?, f.subjects, f.states)))
            .collect();
        Self::with_frames(entries, frames, cfg)
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
        let keys = self.key_text(&words);
        let chars: Vec<char> = text.chars().collect();
        let mut mentions = Vec::new();
        for found in self.automaton.find_iter(&keys.text) {
            let Some((first, last)) = keys.words_of(found.start(), found.end()) else {
                continue;
            };
            let pattern = &self.patterns[found.pattern().as_usize()];
            let (start_char, end_char) = (words[first].start_char, words[last].end_char);
            if let Some(exact) = &pattern.exact_case
                && chars[start_char..end_char].iter().collect::<String>() != *exact
            {
                continue;
            }
            let concept = if pattern.others.is_empty() {
                pattern.concept
            } else {
                let spelled: Vec<&str> = words[first..=last].iter().map(|w| w.text).collect();
                let spelled = spelled.join(" ");
                pattern
                    .others
                    .iter()
                    .find(|(phrase, _)| *phrase == spelled)
                    .map_or(pattern.concept, |&(_, concept)| concept)
            };
            mentions.push(self.mention(&words, first, last, concept, false));
        }
        for found in self.frames.find(&keys, &words) {
            let (start, end) = (words[found.first].start_char, words[found.last].end_char);
            let cui = &self.concepts[found.concept].cui;
            let covered = mentions
                .iter()
                .any(|m| m.cui == *cui && m.start_char < end && start < m.end_char);
            if !covered {
                let negated = found.negated_inside;
                mentions.push(self.mention(
                    &words,
                    found.first,
                    found.last,
                    found.concept,
                    negated,
                ));
            }
        }
        mentions.sort_by_key(|m| (m.start_char, m.end_char));
        mentions
    }

    /// The mention of `concept` over words `first..=last`, negated when `negated` or a trigger
    /// says so.
    fn mention(
        &self,
        words: &[Word],
        first: usize,
        last: usize,
        concept: usize,
        negated: bool,
    ) -> Mention {
        let concept = &self.concepts[concept];
        Mention {
            start_char: words[first].start_char,
            end_char: words[last].end_char,
            cui: concept.cui.clone(),
            name: concept.name.clone(),
            negated: negated
                || self.triggered(words, first, last, &NEGATION_BEFORE, &NEGATION_AFTER),
            uncertain: self.triggered(words, first, last, &UNCERTAIN_BEFORE, &[]),
        }
    }

    /// The key text of `words`, each word's key remembered for the next texts.
    fn key_text(&self, words: &[Word]) -> KeyText {
        let mut cache = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut keys = KeyText::default();
        for word in words {
            if let Some(key) = cache.get(word.text) {
                keys.push(key);
                continue;
            }
            let key = self.word_key(word.text);
            keys.push(&key);
            if cache.len() < KEY_CACHE {
                cache.insert(word.text.to_owned(), key);
            }
        }
        keys
    }

    /// The key a text word matches by: its own key when a dictionary word has it, else the key
    /// of its remainder after a side prefix, else that of the dictionary word it is most similar
    /// to, else its own.
    fn word_key(&self, word: &str) -> String {
        let key = self.morphology.key(word);
        if self.vocabulary.contains(&key)
            || word.chars().count() < MIN_FUZZY_LEN
            || !word.chars().all(char::is_alphabetic)
        {
            return key;
        }
        Morphology::strip_side_prefix(word)
            .map(|rest| self.morphology.key(rest))
            .filter(|k| self.vocabulary.contains(k))
            .or_else(|| {
                let (nearest, _) = self.fuzzy.nearest(word)?;
                Some(self.morphology.key(nearest))
            })
            .unwrap_or(key)
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
        let (mut list, mut clause) = (false, false);
        for k in (first.saturating_sub(2 * window)..first).rev() {
            let reach = if list && !clause { 2 * window } else { window };
            if !in_scope(k) || first - k > reach {
                break;
            }
            if !about_change(words, k + 1)
                && (k.saturating_sub(3)..=k)
                    .any(|from| phrase_at(before, from, k) && (from..=k).all(in_scope))
            {
                return true;
            }
            list |= LIST_JOINERS.contains(&words[k].text);
            clause |= CLAUSE_VERBS.contains(&words[k].text);
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

/// Whether the words from `k` say "change" or "significant change" (after "no" or "without"
/// that is no negation: NegEx's pseudo-negation).
fn about_change(words: &[Word], k: usize) -> bool {
    let at = |i: usize| words.get(i).map(|w| w.text);
    at(k) == Some("change")
        || (at(k).is_some_and(|w| CHANGE_QUALIFIERS.contains(&w)) && at(k + 1) == Some("change"))
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

    /// The HPO dictionary of data/hpo/hp.obo (installed by scripts/setup).
    fn hpo() -> &'static Linker {
        static HPO: std::sync::OnceLock<Linker> = std::sync::OnceLock::new();
        HPO.get_or_init(|| {
            let obo = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/hpo/hp.obo");
            Linker::from_obo_file(std::path::Path::new(obo)).unwrap()
        })
    }

    /// (surface, CUI, negated) of every mention.
    fn hpo_spans(text: &str) -> Vec<(String, String, bool)> {
        hpo()
            .link(text)
            .into_iter()
            .map(|m| {
                let surface = text
                    .chars()
                    .skip(m.start_char)
                    .take(m.end_char - m.start_char)
                    .collect();
                (surface, m.cui, m.negated)
            })
            .collect()
    }

    fn span(surface: &str, cui: &str, negated: bool) -> (String, String, bool) {
        (surface.to_owned(), cui.to_owned(), negated)
    }

    const CALCINOSIS: &str = "C0006663";
    const EFFUSION: &str = "C0032227";
    const CARDIOMEGALY: &str = "C0018800";

    #[test]
    fn derived_forms_link_to_their_hpo_concept() {
        assert_eq!(
            hpo_spans("Calcified granuloma. Scattered calcifications."),
            [
                span("Calcified", CALCINOSIS, false),
                span("calcifications", CALCINOSIS, false)
            ]
        );
        assert_eq!(
            hpo_spans("Atherosclerotic aorta."),
            [span("Atherosclerotic", "C0004153", false)]
        );
        assert_eq!(
            hpo_spans("Mild dextroscoliosis of the thoracic spine."),
            [span("dextroscoliosis", "C0037932", false)]
        );
    }

    #[test]
    fn paraphrases_link_and_negate() {
        assert_eq!(
            hpo_spans("The cardiac silhouette is enlarged."),
            [span("cardiac silhouette is enlarged", CARDIOMEGALY, false)]
        );
        assert_eq!(
            hpo_spans("The cardiac silhouette is not enlarged."),
            [span(
                "cardiac silhouette is not enlarged",
                CARDIOMEGALY,
                true
            )]
        );
        assert_eq!(
            hpo_spans("Blunting of the costophrenic angle."),
            [span("Blunting of the costophrenic angle", EFFUSION, false)]
        );
        assert_eq!(
            hpo_spans("No blunting of the costophrenic angle."),
            [span("blunting of the costophrenic angle", EFFUSION, true)]
        );
    }

    #[test]
    fn negation_reaches_across_lists_but_not_past_change() {
        let spans = hpo_spans("No focal airspace consolidation, pleural effusion or pneumothorax.");
        assert!(spans.iter().all(|s| s.2), "{spans:?}");
        let cuis: Vec<&str> = spans.iter().map(|s| s.1.as_str()).collect();
        assert!(cuis.ends_with(&[EFFUSION, "C0032326"]), "{spans:?}");
        let spans = hpo_spans("No pneumothorax, and there is a small pleural effusion.");
        assert_eq!(
            spans.last().unwrap(),
            &span("pleural effusion", EFFUSION, false)
        );
        assert_eq!(
            hpo_spans("No change in the calcified granuloma."),
            [span("calcified", CALCINOSIS, false)]
        );
        assert_eq!(
            hpo_spans(
                "No pneumothorax. Severe cardiomegaly with small bilateral pleural effusions."
            ),
            [
                span("pneumothorax", "C0032326", true),
                span("cardiomegaly", CARDIOMEGALY, false),
                span("pleural effusions", EFFUSION, false)
            ]
        );
    }

    #[test]
    fn misspellings_are_corrected_and_other_words_left_alone() {
        assert_eq!(
            hpo_spans("Small left pneumothoraxes."),
            [span("pneumothoraxes", "C0032326", false)]
        );
        assert_eq!(
            hpo_spans("Western blot, showing cardiomegaly."),
            [span("cardiomegaly", CARDIOMEGALY, false)]
        );
        assert!(hpo_spans("The silhouette is unremarkable.").is_empty());
    }
}
