//! Knowledge-induced MLM masking (ARL_SPEC.md §2.8, the reference's
//! `DataCollatorForWholeEntityMask`): tokens form masking units, an entity mention's tokens one
//! unit together and every other token a unit of its own; units are shuffled and taken while
//! they fit a budget of 15 % of the *padded* length; each chosen position becomes `<mask>` with
//! probability 0.8, a uniformly random id with 0.1, and stays with 0.1.
//!
//! Switches: `whole_entities` off is the paper's ablation without "learning from knowledge"
//! (LK: every token its own unit); `padded_budget` off counts only the text's tokens (BERT's
//! and the paper's 15 %).

use rand::Rng;
use rand::seq::SliceRandom;

pub use crate::knowledge::inputs::IGNORE;

/// Masking settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Masking {
    /// Fraction of the padded length to mask (0.15).
    pub probability: f64,
    /// The `<mask>` token id.
    pub mask_id: i64,
    /// Random replacements are drawn from `0..vocab` (special tokens not excluded, as in the
    /// reference).
    pub vocab: i64,
    /// An entity mention is one unit (LK); off: every token is.
    pub whole_entities: bool,
    /// The budget counts padding and special tokens (the reference code); off: text tokens.
    pub padded_budget: bool,
}

/// The masked ids and the labels of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    /// Ids with the chosen positions replaced.
    pub ids: Vec<i64>,
    /// The original id at chosen positions, [`IGNORE`] elsewhere.
    pub labels: Vec<i64>,
}

/// Python's `round` (half to even) of `length · probability`, at least 1.
pub fn budget(length: usize, probability: f64) -> usize {
    ((length as f64 * probability).round_ties_even() as usize).max(1)
}

impl Masking {
    /// The reference's masking: 15 %, whole entities, budget on the padded length.
    pub fn reference(mask_id: i64, vocab: i64) -> Self {
        Self {
            probability: 0.15,
            mask_id,
            vocab,
            whole_entities: true,
            padded_budget: true,
        }
    }

    /// Masks one padded text: `special` marks `<s>`, `</s>` and padding (never masked),
    /// `continuation` marks tokens after the first of an entity mention.
    pub fn apply(
        &self,
        ids: &[i64],
        special: &[bool],
        continuation: &[bool],
        rng: &mut impl Rng,
    ) -> Masked {
        let mut units: Vec<Vec<usize>> = Vec::new();
        for position in (0..ids.len()).filter(|&p| !special[p]) {
            match units.last_mut() {
                Some(unit) if self.whole_entities && continuation[position] => unit.push(position),
                _ => units.push(vec![position]),
            }
        }
        units.shuffle(rng);
        let length = if self.padded_budget {
            ids.len()
        } else {
            special.iter().filter(|&&s| !s).count()
        };
        let budget = budget(length, self.probability);
        let mut chosen = Vec::new();
        for unit in units {
            if chosen.len() + unit.len() <= budget {
                chosen.extend(unit);
            }
        }
        chosen.sort_unstable();
        let mut masked = Masked {
            ids: ids.to_vec(),
            labels: vec![IGNORE; ids.len()],
        };
        for position in chosen {
            masked.labels[position] = ids[position];
            if rng.gen_bool(0.8) {
                masked.ids[position] = self.mask_id;
            } else if rng.gen_bool(0.5) {
                masked.ids[position] = rng.gen_range(0..self.vocab);
            }
        }
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_budget_counts_padding_and_rounds_half_to_even() {
        assert_eq!(budget(64, 0.15), 10);
        assert_eq!(budget(32, 0.15), 5);
        assert_eq!(budget(40, 0.15), 6);
        assert_eq!(budget(128, 0.15), 19);
        assert_eq!(budget(30, 0.15), 4);
        assert_eq!(budget(2, 0.15), 1);
    }

    /// <s> a [b c d] e </s> <pad>… (20 positions): the targets of 400 seeds, with the mention
    /// b c d marked as one.
    fn targets_of_400_draws(masking: &Masking) -> Vec<Vec<usize>> {
        let mut ids = vec![0, 10, 11, 12, 13, 14, 2];
        ids.resize(20, 1);
        let special: Vec<bool> = ids.iter().map(|&id| id < 3).collect();
        let mut continuation = vec![false; 20];
        continuation[3] = true;
        continuation[4] = true;
        (0..400)
            .map(|seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let masked = masking.apply(&ids, &special, &continuation, &mut rng);
                let targets: Vec<usize> = (0..20).filter(|&p| masked.labels[p] != IGNORE).collect();
                assert!(
                    targets
                        .iter()
                        .all(|&p| !special[p] && masked.labels[p] == ids[p])
                );
                targets
            })
            .collect()
    }

    #[test]
    fn entity_mentions_are_masked_whole_and_specials_never() {
        let (mut whole, mut others) = (0, 0);
        for targets in targets_of_400_draws(&Masking::reference(4, 1000)) {
            // Budget 3 of 20 padded positions.
            assert!(targets.len() <= 3 && !targets.is_empty(), "{targets:?}");
            let mention: Vec<bool> = (2..5).map(|p| targets.contains(&p)).collect();
            assert!(mention.iter().all(|&m| m) || mention.iter().all(|&m| !m));
            whole += usize::from(mention[0]);
            others += usize::from(targets.contains(&1) || targets.contains(&5));
        }
        // The mention fills the whole budget when drawn: about a third of the time.
        assert!((80..200).contains(&whole), "{whole}");
        assert!(others > 0);
    }

    #[test]
    fn without_lk_mentions_split_and_the_text_budget_ignores_padding() {
        let tokens = Masking {
            whole_entities: false,
            ..Masking::reference(4, 1000)
        };
        let split = targets_of_400_draws(&tokens)
            .iter()
            .filter(|t| (2..5).filter(|p| t.contains(p)).count() % 3 != 0)
            .count();
        assert!(split > 100, "{split}");
        // 5 text tokens: round(0.75) = 1 target; the mention (3 tokens) never fits.
        let text_budget = Masking {
            padded_budget: false,
            ..Masking::reference(4, 1000)
        };
        for targets in targets_of_400_draws(&text_budget) {
            assert_eq!(targets.len(), 1, "{targets:?}");
            assert!(!(2..5).any(|p| targets.contains(&p)));
        }
    }

    #[test]
    fn chosen_positions_are_masked_randomised_or_kept_80_10_10() {
        let masking = Masking {
            probability: 1.0,
            ..Masking::reference(4, 1000)
        };
        let ids = vec![500i64; 10_000];
        let none = vec![false; ids.len()];
        let masked = masking.apply(&ids, &none, &none, &mut ChaCha8Rng::seed_from_u64(1));
        let masks = masked.ids.iter().filter(|&&i| i == 4).count();
        let kept = masked.ids.iter().filter(|&&i| i == 500).count();
        assert!((7_800..8_200).contains(&masks), "{masks}");
        assert!((900..1_150).contains(&kept), "{kept}");
        assert!(masked.labels.iter().all(|&l| l == 500));
    }
}
