//! Per-text entity inputs of the model (ARL_SPEC.md §2.5): which mentions survive tokenisation,
//! the mention-to-token matrix P, entity ids padded to 24, multi-hot labels, the entity
//! continuation flags of whole-entity masking, and the MLM variant that hides mentions that
//! overlap a masked token.

use tch::{Kind, Tensor};

/// Entity slots per text.
pub const MAX_ENTITIES: usize = 24;
/// Id of an empty slot (and label of an unmasked token).
pub const IGNORE: i64 = -100;

/// Character → token lookup of one tokenised text, as `char_to_token` of a fast tokenizer:
/// the first non-special token whose character span holds the character.
#[derive(Debug, Clone)]
pub struct CharToToken(Vec<Option<usize>>);

impl CharToToken {
    /// From each token's character span (`start..end`) and whether it is a special token
    /// (`[CLS]`, `<s>`, padding, …; those never map).
    pub fn new(offsets: &[(usize, usize)], special: &[bool]) -> Self {
        let len = offsets.iter().map(|(_, end)| *end).max().unwrap_or(0);
        let mut map = vec![None; len];
        for (token, ((start, end), is_special)) in offsets.iter().zip(special).enumerate() {
            if !is_special {
                for slot in &mut map[*start..*end] {
                    slot.get_or_insert(token);
                }
            }
        }
        Self(map)
    }

    /// The token holding character `c`, if it was kept.
    pub fn get(&self, c: usize) -> Option<usize> {
        self.0.get(c).copied().flatten()
    }
}

/// A mention whose first and last characters both map to tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMention {
    /// Token of the first character.
    pub first: usize,
    /// Token of the last character (inclusive).
    pub last: usize,
    /// Entity id.
    pub entity: i64,
}

/// The usable mentions of stored `[start_char, end_char, entity_id]` triples, in their order;
/// a mention cut off by truncation (either end unmapped) is dropped.
pub fn token_mentions(mentions: &[[i64; 3]], map: &CharToToken) -> Vec<TokenMention> {
    mentions
        .iter()
        .filter_map(|&[start, end, entity]| {
            let char_at = |c: i64| usize::try_from(c).ok().and_then(|c| map.get(c));
            Some(TokenMention {
                first: char_at(start)?,
                last: char_at(end - 1)?,
                entity,
            })
        })
        .collect()
}

/// The three entity tensors of one text.
#[derive(Debug)]
pub struct EntityInputs {
    /// P: float (24, Lt), row k is 1 on the tokens of the k-th mention.
    pub pos_matrix: Tensor,
    /// Long (24): entity id per slot, −100 when empty.
    pub ent_ids: Tensor,
    /// Bool (24): slot in use.
    pub ent_masks: Tensor,
}

impl EntityInputs {
    /// Fills the slots with the first 24 mentions.
    pub fn new(mentions: &[TokenMention], seq_len: usize) -> Self {
        Self::filtered(mentions, seq_len, |_| true)
    }

    /// The MLM variant: a mention with any token that is an MLM target (label ≠ −100) is
    /// skipped, so the knowledge stream cannot reveal a masked word.
    pub fn for_mlm(mentions: &[TokenMention], seq_len: usize, labels: &[i64]) -> Self {
        Self::filtered(mentions, seq_len, |m| {
            labels[m.first..=m.last].iter().all(|&l| l == IGNORE)
        })
    }

    fn filtered(
        mentions: &[TokenMention],
        seq_len: usize,
        keep: impl Fn(&TokenMention) -> bool,
    ) -> Self {
        let mut pos = vec![0f32; MAX_ENTITIES * seq_len];
        let mut ids = [IGNORE; MAX_ENTITIES];
        for (slot, m) in mentions
            .iter()
            .filter(|m| keep(m))
            .take(MAX_ENTITIES)
            .enumerate()
        {
            pos[slot * seq_len + m.first..=slot * seq_len + m.last].fill(1.0);
            ids[slot] = m.entity;
        }
        let ent_ids = Tensor::from_slice(&ids);
        Self {
            pos_matrix: Tensor::from_slice(&pos).view([MAX_ENTITIES as i64, seq_len as i64]),
            ent_masks: ent_ids.ne(IGNORE),
            ent_ids,
        }
    }
}

/// Multi-hot float (Ne) of entity ids (`img_label` from the image's entities, `txt_label` from
/// a text's usable mentions).
pub fn multi_hot(ids: impl IntoIterator<Item = i64>, entities: i64) -> Tensor {
    let mut label = Tensor::zeros([entities], (Kind::Float, tch::Device::Cpu));
    let ids: Vec<i64> = ids.into_iter().collect();
    if !ids.is_empty() {
        let _ = label.index_fill_(0, &Tensor::from_slice(&ids), 1.0);
    }
    label
}

/// Whole-entity masking's `ent_ref`: the tokens after the first of each mention are flagged as
/// continuing it (they join the previous masking unit).
pub fn continuations(mentions: &[TokenMention], seq_len: usize) -> Vec<bool> {
    let mut flags = vec![false; seq_len];
    for m in mentions {
        flags[m.first + 1..=m.last].fill(true);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "[CLS] no pneumo ##thorax [SEP] [PAD]" over "No pneumothorax".
    fn sample() -> CharToToken {
        CharToToken::new(
            &[(0, 0), (0, 2), (3, 9), (9, 15), (0, 0), (0, 0)],
            &[true, false, false, false, true, true],
        )
    }

    #[test]
    fn mentions_map_to_token_spans_and_fill_slots_in_order() {
        let map = sample();
        assert_eq!(
            (map.get(0), map.get(2), map.get(14), map.get(15)),
            (Some(1), None, Some(3), None)
        );
        let mentions = token_mentions(&[[3, 15, 7], [0, 2, 4], [3, 16, 9]], &map);
        assert_eq!(
            mentions,
            [
                TokenMention {
                    first: 2,
                    last: 3,
                    entity: 7
                },
                TokenMention {
                    first: 1,
                    last: 1,
                    entity: 4
                }
            ],
            "the mention past the text end is dropped"
        );
        let inputs = EntityInputs::new(&mentions, 6);
        assert_eq!(inputs.pos_matrix.size(), [24, 6]);
        let rows = Vec::<Vec<f32>>::try_from(inputs.pos_matrix.narrow(0, 0, 3)).unwrap();
        assert_eq!(
            rows,
            [[0., 0., 1., 1., 0., 0.], [0., 1., 0., 0., 0., 0.], [0.; 6]]
        );
        let ids = Vec::<i64>::try_from(inputs.ent_ids.narrow(0, 0, 3)).unwrap();
        assert_eq!(ids, [7, 4, IGNORE]);
        assert_eq!(i64::try_from(inputs.ent_masks.sum(Kind::Int64)).unwrap(), 2);
        assert_eq!(
            continuations(&mentions, 6),
            [false, false, false, true, false, false]
        );
        let label = Vec::<f32>::try_from(multi_hot(mentions.iter().map(|m| m.entity), 8)).unwrap();
        assert_eq!(label, [0., 0., 0., 0., 1., 0., 0., 1.]);
    }

    #[test]
    fn the_mlm_variant_skips_mentions_over_masked_tokens_and_caps_at_24() {
        let mentions: Vec<TokenMention> = (0..30)
            .map(|i| TokenMention {
                first: i,
                last: i + 1,
                entity: i as i64,
            })
            .collect();
        let mut labels = vec![IGNORE; 32];
        labels[3] = 1234; // masks mentions 2 and 3
        let inputs = EntityInputs::for_mlm(&mentions, 32, &labels);
        let ids = Vec::<i64>::try_from(inputs.ent_ids).unwrap();
        let expected: Vec<i64> = (0..30).filter(|i| *i != 2 && *i != 3).take(24).collect();
        assert_eq!(ids, expected);
        let plain = Vec::<i64>::try_from(EntityInputs::new(&mentions, 32).ent_ids).unwrap();
        assert_eq!(plain, (0..24).collect::<Vec<i64>>());
    }
}
