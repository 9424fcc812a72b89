//! Frame matching: a concept written as a subject and a state a few words apart in one clause
//! ("the cardiac silhouette is mildly enlarged", "blunting of the left costophrenic angle"),
//! in either order. Subjects and states are matched by their morphological keys.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

use super::tokens::{KeyText, Word};

/// Most words between a subject and its state.
const MAX_GAP: usize = 4;
/// Words that end a clause between a subject and its state.
const CLAUSE_BREAKS: [&str; 8] = [
    "and", "but", "however", "although", "except", "which", "though", "with",
];
/// Words between a subject and its state that negate the frame ("the heart is not enlarged").
const INNER_NEGATIONS: [&str; 3] = ["not", "no", "without"];

/// Whether a phrase is a frame's subject or its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Subject,
    State,
}

/// Frames compiled into one automaton over subject and state keys.
pub(super) struct Frames {
    automaton: Option<AhoCorasick>,
    /// Per distinct key phrase: the (frame, role) pairs it plays.
    roles: Vec<Vec<(usize, Role)>>,
    /// Per frame: its concept.
    concepts: Vec<usize>,
}

/// One frame found: words `first..=last`, its concept, and whether a negation sits inside.
pub(super) struct FrameMatch {
    pub(super) first: usize,
    pub(super) last: usize,
    pub(super) concept: usize,
    pub(super) negated_inside: bool,
}

impl Frames {
    /// Frames of (concept, subject keys, state keys).
    pub(super) fn new(frames: Vec<(usize, Vec<String>, Vec<String>)>) -> anyhow::Result<Self> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut roles: Vec<Vec<(usize, Role)>> = Vec::new();
        let mut concepts = Vec::new();
        for (frame, (concept, subjects, states)) in frames.into_iter().enumerate() {
            concepts.push(concept);
            let parts = subjects.into_iter().map(|s| (s, Role::Subject));
            for (key, role) in parts.chain(states.into_iter().map(|s| (s, Role::State))) {
                let slot = *index.entry(key).or_insert_with(|| {
                    roles.push(Vec::new());
                    roles.len() - 1
                });
                roles[slot].push((frame, role));
            }
        }
        let mut phrases = vec![String::new(); roles.len()];
        for (key, slot) in index {
            phrases[slot] = key;
        }
        let automaton = (!phrases.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&phrases)
            })
            .transpose()?;
        Ok(Self {
            automaton,
            roles,
            concepts,
        })
    }

    /// Every subject paired with the nearest state of its frame in the same clause.
    pub(super) fn find(&self, keys: &KeyText, words: &[Word]) -> Vec<FrameMatch> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let mut parts: Vec<(usize, usize, usize, Role)> = Vec::new(); // (first, last, frame, role)
        for found in automaton.find_iter(&keys.text) {
            if let Some((first, last)) = keys.words_of(found.start(), found.end()) {
                for &(frame, role) in &self.roles[found.pattern().as_usize()] {
                    parts.push((first, last, frame, role));
                }
            }
        }
        let mut out = Vec::new();
        for &(s_first, s_last, frame, _) in parts.iter().filter(|p| p.3 == Role::Subject) {
            let nearest = parts
                .iter()
                .filter(|p| p.2 == frame && p.3 == Role::State)
                .filter_map(|&(t_first, t_last, ..)| {
                    let (gap_from, gap_to) = if t_first > s_last {
                        (s_last + 1, t_first)
                    } else if t_last < s_first {
                        (t_last + 1, s_first)
                    } else {
                        return None;
                    };
                    let between = &words[gap_from..gap_to];
                    let same_clause = gap_to - gap_from <= MAX_GAP
                        && words[s_first].sentence == words[t_first].sentence
                        && !between.iter().any(|w| CLAUSE_BREAKS.contains(&w.text));
                    same_clause.then(|| {
                        let negated = between.iter().any(|w| INNER_NEGATIONS.contains(&w.text));
                        (
                            gap_to - gap_from,
                            s_first.min(t_first),
                            s_last.max(t_last),
                            negated,
                        )
                    })
                })
                .min_by_key(|m| m.0);
            if let Some((_, first, last, negated_inside)) = nearest {
                out.push(FrameMatch {
                    first,
                    last,
                    concept: self.concepts[frame],
                    negated_inside,
                });
            }
        }
        out
    }
}
