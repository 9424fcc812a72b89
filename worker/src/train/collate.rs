//! One rank's pretraining micro-batch from decoded samples (ARL_SPEC.md §4.7): tokenised text,
//! knowledge-induced MLM masking (§2.8), entity slots and their token matrix for the plain and
//! the MLM pass (§2.5), multi-hot entity labels of image and text (§2.7), ITM pairs (§3.3) and
//! the MIM noise (§3.2). All randomness comes from the generator passed in, so a step's batch
//! is a function of the samples and that generator's state.
//!
//! ITM negatives are drawn from the other samples of the same micro-batch (label-aware where
//! the table has CheXpert labels: a negative's label vector differs from the anchor's when such
//! a sample exists), where the reference draws a random sample of the whole dataset; samples
//! arrive in a shuffled global order, so the distribution is the same for image-text corpora.

use std::collections::HashMap;

use anyhow::{Context, ensure};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::masking::Masking;
use crate::data::labels::Labels;
use crate::data::stream::Sample;
use crate::data::text::{TextTokenizer, TokenizedText};
use crate::knowledge::inputs::{
    EntityInputs, TokenMention, continuations, multi_hot, token_mentions,
};
use crate::model::pretext::PretrainBatch;

/// A dataset's entity ids (indices into its manifest's CUI table) as ids of the knowledge
/// vocabulary the model uses; CUIs outside the vocabulary are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityMap {
    /// The dataset's ids are already knowledge ids (ARL's own Arrow files).
    Identity,
    /// Knowledge id of each dataset id.
    Table(Vec<Option<i64>>),
}

impl EntityMap {
    /// The map of a dataset whose manifest lists `dataset_cuis` (empty: identity) onto
    /// `vocabulary` (CUI → knowledge id).
    pub fn new(dataset_cuis: &[String], vocabulary: &HashMap<&str, i64>) -> Self {
        if dataset_cuis.is_empty() {
            return Self::Identity;
        }
        Self::Table(
            dataset_cuis
                .iter()
                .map(|cui| vocabulary.get(cui.as_str()).copied())
                .collect(),
        )
    }

    /// How many entity ids the dataset may use, with `knowledge` entities in the vocabulary:
    /// the vocabulary's, or its own CUI table's.
    pub fn dataset_ids(&self, knowledge: i64) -> i64 {
        match self {
            Self::Identity => knowledge,
            Self::Table(ids) => ids.len() as i64,
        }
    }

    /// The knowledge id of dataset id `id`, if the vocabulary has it.
    pub fn get(&self, id: i64) -> Option<i64> {
        match self {
            Self::Identity => Some(id),
            Self::Table(ids) => usize::try_from(id)
                .ok()
                .and_then(|i| ids.get(i).copied().flatten()),
        }
    }
}

/// The tokens of `sample`'s text and its mentions as token spans (entities outside the
/// knowledge vocabulary dropped).
///
/// # Errors
/// A sample without its text, or a text the tokenizer rejects (named).
pub fn tokenize_sample(
    tokenizer: &TextTokenizer,
    map: &EntityMap,
    sample: &Sample,
) -> anyhow::Result<(TokenizedText, Vec<TokenMention>)> {
    let row = &sample.row;
    let text = row
        .captions
        .get(sample.text)
        .with_context(|| format!("{:?} has no text {}", row.image_id, sample.text))?;
    let tokens = tokenizer.encode(text)?;
    let mentions: Vec<[i64; 3]> = row
        .txt_ents
        .get(sample.text)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|&[start, end, id]| Some([start, end, map.get(id)?]))
        .collect();
    let mentions = token_mentions(&mentions, &tokens.char_to_token());
    Ok((tokens, mentions))
}

/// Builds micro-batches.
pub struct Collator {
    /// The tokenizer (fixed length).
    pub tokenizer: TextTokenizer,
    /// MLM masking.
    pub masking: Masking,
    /// Entities in the knowledge vocabulary.
    pub entities: i64,
    /// Dataset → knowledge entity ids.
    pub map: EntityMap,
    /// Patches per image (for the MIM noise).
    pub patches: i64,
}

/// The per-sample tensors, before stacking.
struct Encoded {
    ids: Tensor,
    keep: Tensor,
    ids_mlm: Tensor,
    labels_mlm: Tensor,
    entities: EntityInputs,
    entities_mlm: EntityInputs,
    image_labels: Tensor,
    text_labels: Tensor,
}

impl Collator {
    fn encode(&self, sample: &Sample, rng: &mut ChaCha8Rng) -> anyhow::Result<Encoded> {
        let row = &sample.row;
        let (tokens, mentions) = tokenize_sample(&self.tokenizer, &self.map, sample)?;
        let length = tokens.ids.len();
        let continuation = continuations(&mentions, length);
        let masked = self
            .masking
            .apply(&tokens.ids, &tokens.special, &continuation, rng);
        Ok(Encoded {
            ids: Tensor::from_slice(&tokens.ids),
            keep: Tensor::from_slice(&tokens.attention),
            ids_mlm: Tensor::from_slice(&masked.ids),
            entities: EntityInputs::new(&mentions, length),
            entities_mlm: EntityInputs::for_mlm(&mentions, length, &masked.labels),
            labels_mlm: Tensor::from_slice(&masked.labels),
            image_labels: multi_hot(
                row.img_ents.iter().filter_map(|&id| self.map.get(id)),
                self.entities,
            ),
            text_labels: multi_hot(mentions.iter().map(|m| m.entity), self.entities),
        })
    }

    /// The micro-batch of `samples` with their decoded `images` (B, 3, S, S).
    ///
    /// # Errors
    /// A sample without its text, or a text the tokenizer rejects (named).
    pub fn collate(
        &self,
        images: &Tensor,
        samples: &[Sample],
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<PretrainBatch> {
        let b = samples.len();
        ensure!(
            b > 0 && images.size()[0] == b as i64,
            "{b} samples, images {:?}",
            images.size()
        );
        let encoded = samples
            .iter()
            .map(|s| self.encode(s, rng))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stack = |f: &dyn Fn(&Encoded) -> &Tensor| {
            Tensor::stack(&encoded.iter().map(f).collect::<Vec<_>>(), 0)
        };
        let (itm_labels, partners) = itm_pairs(samples, rng);
        let noise: Vec<f32> = (0..b as i64 * self.patches).map(|_| rng.r#gen()).collect();
        Ok(PretrainBatch {
            text_ids: stack(&|e| &e.ids),
            text_keep: stack(&|e| &e.keep),
            text_ids_mlm: stack(&|e| &e.ids_mlm),
            mlm_labels: stack(&|e| &e.labels_mlm),
            itm_partners: Tensor::from_slice(&partners),
            images: images.shallow_clone(),
            itm_labels: Tensor::from_slice(&itm_labels),
            entity_ids: stack(&|e| &e.entities.ent_ids),
            positions: stack(&|e| &e.entities.pos_matrix),
            entity_ids_mlm: stack(&|e| &e.entities_mlm.ent_ids),
            positions_mlm: stack(&|e| &e.entities_mlm.pos_matrix),
            image_labels: stack(&|e| &e.image_labels),
            text_labels: stack(&|e| &e.text_labels),
            mim_noise: Tensor::from_slice(&noise)
                .view([b as i64, self.patches])
                .to_kind(Kind::Float),
        })
    }
}

/// ITM labels (⌊B/2⌋ ones and ⌈B/2⌉ zeros, shuffled) and the image each sample is paired
/// with: its own where the label is 1, another sample's where 0.
fn itm_pairs(samples: &[Sample], rng: &mut ChaCha8Rng) -> (Vec<i64>, Vec<i64>) {
    let b = samples.len();
    // A lone sample has no negative: it is its own positive.
    let mut labels: Vec<i64> = (0..b).map(|i| i64::from(i < b / 2 || b == 1)).collect();
    labels.shuffle(rng);
    let partners = (0..b)
        .map(|i| {
            if labels[i] == 1 {
                return i as i64;
            }
            let others: Vec<usize> = (0..b).filter(|&j| j != i).collect();
            let differing: Vec<usize> = match &samples[i].row.labels {
                Labels::Chexpert(anchor) => others
                    .iter()
                    .copied()
                    .filter(
                        |&j| !matches!(&samples[j].row.labels, Labels::Chexpert(l) if l == anchor),
                    )
                    .collect(),
                _ => Vec::new(),
            };
            let pool = if differing.is_empty() {
                &others
            } else {
                &differing
            };
            pool[rng.gen_range(0..pool.len())] as i64
        })
        .collect();
    (labels, partners)
}
