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

use super::context;
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

    /// The dictionary of an OBO ontology: every live term with a concept
    /// ([`Ontology::concepts`]: its UMLS CUI, else a phenotypic abnormality's own id), keyed by
    /// it, by its name and its EXACT synonyms (abbreviations case-sensitive), plus the radiology
    /// lexicon's aliases and frames of those terms.
    ///
    /// # Errors
    /// As [`Linker::new`].
    pub fn from_ontology(ontology: &Ontology, cfg: LinkerConfig) -> anyhow::Result<Self> {
        let lexicon = Lexicon::radiology()?;
        let mut entries = Vec::new();
        let mut entry_of: HashMap<&str, usize> = HashMap::new();
        for (term, concept) in ontology.terms.iter().zip(ontology.concepts()) {
            let Some(cui) = concept else {
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
            entries.push((cui.to_owned(), term.name.clone(), names));
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
            negated: negated || context::negated(words, first, last, self.cfg.window),
            uncertain: context::uncertain(words, first, last, self.cfg.window),
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
}

#[cfg(test)]
mod tests;
