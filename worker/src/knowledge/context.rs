//! The context of a mention in the style of NegEx: the trigger phrases before or after a finding
//! that negate it or make it uncertain, within a window of words in the same sentence, stopped
//! by terminators, reaching further across a list, and not fooled by "no change".

use super::tokens::Word;

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

/// Whether words `first..=last` are negated (within `window` words).
pub(super) fn negated(words: &[Word], first: usize, last: usize, window: usize) -> bool {
    triggered(
        words,
        first,
        last,
        &NEGATION_BEFORE,
        &NEGATION_AFTER,
        window,
    )
}

/// Whether words `first..=last` are uncertain (within `window` words).
pub(super) fn uncertain(words: &[Word], first: usize, last: usize, window: usize) -> bool {
    triggered(words, first, last, &UNCERTAIN_BEFORE, &[], window)
}

/// Whether a trigger of `before` ends, or one of `after` starts, within `window` words around
/// words `first..=last`, in the same sentence and with no terminator in between.
fn triggered(
    words: &[Word],
    first: usize,
    last: usize,
    before: &[&str],
    after: &[&str],
    window: usize,
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
        if (k..(k + 3).min(words.len())).any(|to| phrase_at(after, k, to) && (k..=to).all(in_scope))
        {
            return true;
        }
    }
    false
}

/// Whether the words from `k` say "change" or "significant change" (after "no" or "without"
/// that is no negation: NegEx's pseudo-negation).
fn about_change(words: &[Word], k: usize) -> bool {
    let at = |i: usize| words.get(i).map(|w| w.text);
    at(k) == Some("change")
        || (at(k).is_some_and(|w| CHANGE_QUALIFIERS.contains(&w)) && at(k + 1) == Some("change"))
}
