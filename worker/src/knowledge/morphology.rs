//! Morphological keys for dictionary matching: a word and its inflectional and derivational
//! variants share one key, so that "calcified", "calcific" and "calcifications" meet
//! "calcification", "atherosclerotic" meets "atherosclerosis" and "effusions" meets "effusion".
//!
//! A key is the word with its medical derivational suffix rewritten to the noun form (table
//! below), then stemmed by the Snowball English (Porter 2) stemmer. The same function keys the
//! dictionary and the text, so a rewrite that merges two unrelated words only matters when both
//! are dictionary words. Inflammations (`-itis`) are kept whole: the stemmer would make
//! "cervicitis" and "cervical" one word.

use rust_stemmers::{Algorithm, Stemmer};

/// Derivational suffixes and their noun forms, tried in order on words of at least
/// [`MIN_DERIVED_LEN`] characters (the first that ends the word applies).
const DERIVATIONS: [(&str, &str); 14] = [
    ("ifications", "if"), // calcifications → calcif
    ("ification", "if"),  // calcification
    ("ified", "if"),      // calcified
    ("ific", "if"),       // calcific
    ("otic", "osis"),     // atherosclerotic, kyphotic, scoliotic, fibrotic
    ("oses", "osis"),     // stenoses
    ("atic", "asis"),     // atelectatic, bronchiectatic, metastatic
    ("ases", "asis"),     // atelectases
    ("omatous", "oma"),   // granulomatous
    ("omata", "oma"),     // granulomata
    ("ematous", "ema"),   // emphysematous, edematous
    ("enic", "enia"),     // osteopenic
    ("emic", "emia"),     // anemic, ischemic
    ("osity", "ous"),     // tortuosity → tortuous
];

/// Shortest word whose suffix is rewritten.
const MIN_DERIVED_LEN: usize = 6;

/// Side prefixes that radiologists fuse onto a finding ("dextroscoliosis", "levoscoliosis").
const SIDE_PREFIXES: [&str; 2] = ["dextro", "levo"];

/// Keys words (see the module doc).
pub struct Morphology {
    stemmer: Stemmer,
}

impl Default for Morphology {
    fn default() -> Self {
        Self {
            stemmer: Stemmer::create(Algorithm::English),
        }
    }
}

impl Morphology {
    /// The key of one lower-case word.
    pub fn key(&self, word: &str) -> String {
        if word.ends_with("itis") {
            return word.to_owned();
        }
        let rewritten = (word.len() >= MIN_DERIVED_LEN)
            .then(|| {
                DERIVATIONS.iter().find_map(|(suffix, noun)| {
                    word.strip_suffix(suffix)
                        .map(|stem| format!("{stem}{noun}"))
                })
            })
            .flatten();
        self.stemmer
            .stem(rewritten.as_deref().unwrap_or(word))
            .into_owned()
    }

    /// The word without a fused side prefix, when one is there and something is left.
    pub fn strip_side_prefix(word: &str) -> Option<&str> {
        SIDE_PREFIXES
            .iter()
            .find_map(|p| word.strip_prefix(p))
            .filter(|rest| rest.len() >= MIN_DERIVED_LEN)
    }

    /// The keys of a normalised phrase's words, joined by spaces.
    pub fn phrase_key(&self, phrase: &str) -> String {
        phrase
            .split(' ')
            .map(|w| self.key(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflected_and_derived_forms_share_a_key() {
        let m = Morphology::default();
        let same = |a: &str, b: &str| assert_eq!(m.key(a), m.key(b), "{a} / {b}");
        same("calcified", "calcification");
        same("calcifications", "calcification");
        same("calcific", "calcification");
        same("atherosclerotic", "atherosclerosis");
        same("atelectatic", "atelectasis");
        same("granulomatous", "granuloma");
        same("emphysematous", "emphysema");
        same("osteopenic", "osteopenia");
        same("tortuosity", "tortuous");
        same("effusions", "effusion");
        same("opacities", "opacity");
        same("enlargement", "enlarged");
        assert_ne!(m.key("pneumonia"), m.key("pneumothorax"));
        assert_ne!(m.key("cervicitis"), m.key("cervical"));
        assert_eq!(m.key("no"), "no");
    }

    #[test]
    fn side_prefixes_come_off_long_words_only() {
        assert_eq!(
            Morphology::strip_side_prefix("dextroscoliosis"),
            Some("scoliosis")
        );
        assert_eq!(
            Morphology::strip_side_prefix("levoscoliosis"),
            Some("scoliosis")
        );
        assert_eq!(Morphology::strip_side_prefix("levator"), None);
        assert_eq!(Morphology::strip_side_prefix("scoliosis"), None);
    }
}
