//! Approximate word matching in the manner of SciSpaCy's candidate generator: words become
//! TF-IDF vectors of their character 3-grams (padded with a space on each side, as
//! scikit-learn's `char_wb` analyser does; smooth IDF), and a query word is matched to the most
//! cosine-similar word of the vocabulary when the similarity reaches a threshold. 3-grams that the
//! vocabulary lacks count in the query's norm with the largest IDF, so a word made mostly of
//! unknown 3-grams scores low instead of being judged on its few known ones.

use std::collections::HashMap;

/// A 3-gram of characters packed into one integer.
type Gram = u64;

/// An index of vocabulary words by their character 3-grams.
pub struct TrigramIndex {
    words: Vec<String>,
    /// 3-gram → its column.
    columns: HashMap<Gram, usize>,
    /// Per column: IDF and the (word, weight) postings of the normalised word vectors.
    idf: Vec<f32>,
    postings: Vec<Vec<(u32, f32)>>,
    /// IDF of a 3-gram no vocabulary word has.
    unseen_idf: f32,
    threshold: f32,
}

impl TrigramIndex {
    /// Indexes `words` (duplicates are kept once); matches need cosine similarity ≥ `threshold`.
    pub fn new(words: impl IntoIterator<Item = String>, threshold: f32) -> Self {
        let mut words: Vec<String> = words.into_iter().collect();
        words.sort();
        words.dedup();
        let grams: Vec<HashMap<Gram, f32>> = words.iter().map(|w| counts(w)).collect();
        let mut columns = HashMap::new();
        let mut df: Vec<f32> = Vec::new();
        for word in &grams {
            for gram in word.keys() {
                let column = *columns.entry(*gram).or_insert_with(|| {
                    df.push(0.0);
                    df.len() - 1
                });
                df[column] += 1.0;
            }
        }
        let n = words.len() as f32;
        let idf: Vec<f32> = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + d)).ln() + 1.0)
            .collect();
        let mut postings = vec![Vec::new(); idf.len()];
        for (id, word) in grams.iter().enumerate() {
            let weights: Vec<(usize, f32)> = word
                .iter()
                .map(|(gram, tf)| (columns[gram], tf * idf[columns[gram]]))
                .collect();
            let norm = weights.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
            for (column, weight) in weights {
                postings[column].push((id as u32, weight / norm));
            }
        }
        Self {
            words,
            columns,
            idf,
            postings,
            unseen_idf: (1.0 + n).ln() + 1.0,
            threshold,
        }
    }

    /// The most similar vocabulary word and its cosine similarity, if it reaches the threshold.
    pub fn nearest(&self, word: &str) -> Option<(&str, f32)> {
        let query = counts(word);
        let mut weights = Vec::with_capacity(query.len());
        let mut norm = 0.0;
        for (gram, tf) in &query {
            let column = self.columns.get(gram).copied();
            let weight = tf * column.map_or(self.unseen_idf, |c| self.idf[c]);
            norm += weight * weight;
            if let Some(c) = column {
                weights.push((c, weight));
            }
        }
        let norm: f32 = norm.sqrt();
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for (column, weight) in weights {
            for &(id, w) in &self.postings[column] {
                *scores.entry(id).or_default() += weight / norm * w;
            }
        }
        scores
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .filter(|&(_, score)| score >= self.threshold)
            .map(|(id, score)| (self.words[id as usize].as_str(), score))
    }
}

/// Counts of the space-padded word's character 3-grams.
fn counts(word: &str) -> HashMap<Gram, f32> {
    let chars: Vec<char> = std::iter::once(' ')
        .chain(word.chars())
        .chain(std::iter::once(' '))
        .collect();
    let mut out = HashMap::new();
    for w in chars.windows(3) {
        let gram = (u64::from(w[0]) << 42) | (u64::from(w[1]) << 21) | u64::from(w[2]);
        *out.entry(gram).or_default() += 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> TrigramIndex {
        let words = ["pneumothorax", "atelectasis", "cardiomegaly", "effusion"];
        TrigramIndex::new(words.map(str::to_owned), 0.7)
    }

    #[test]
    fn misspellings_find_their_word() {
        let index = index();
        let (word, score) = index.nearest("cardiomegally").unwrap();
        assert_eq!(word, "cardiomegaly");
        assert!(score > 0.8 && score < 1.0, "{score}");
        assert_eq!(index.nearest("pneumothorx").unwrap().0, "pneumothorax");
        let (_, exact) = index.nearest("cardiomegaly").unwrap();
        assert!((exact - 1.0).abs() < 1e-5, "{exact}");
    }

    #[test]
    fn the_threshold_refuses_dissimilar_words() {
        assert_eq!(index().nearest("pneumonia"), None);
        assert_eq!(index().nearest("silhouette"), None);
        let loose = TrigramIndex::new(["pneumothorax".to_owned()], 0.0);
        assert_eq!(loose.nearest("pneumonia").unwrap().0, "pneumothorax");
    }
}
