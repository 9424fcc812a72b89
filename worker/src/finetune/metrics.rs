//! The benchmark metrics (ARL_SPEC.md §5.6), on plain numbers so they can be checked by hand:
//! VQA accuracy split by answer type, classification accuracy, and retrieval Recall@K in both
//! directions.
//!
//! Ties: a prediction is the *first* highest class (as `torch.argmax`). In retrieval a
//! candidate that scores exactly as high as the gold one is ranked above it, so a model that
//! scores everything alike gets recall 0, not 1 (`torch.topk` would break such ties by position).

use arl_contract::metrics::{RECALL_KS, Recall, VqaScore};

/// The first index of the largest value (`None` for an empty row; NaN is never the largest).
pub fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &value) in row.iter().enumerate() {
        if best.is_none_or(|(_, b)| value > b) && !value.is_nan() {
            best = Some((i, value));
        }
    }
    best.map(|(i, _)| i)
}

/// `VQARADScore`: each question scores its target value at the predicted class (1.0 or 0 for
/// ARL's one-answer datasets); `scores[i]` is that value for question `i`, `types[i]` its
/// answer type (0 closed, 1 open).
///
/// # Panics
/// Lengths that differ.
pub fn vqa_accuracy(scores: &[f64], types: &[i64]) -> VqaScore {
    assert_eq!(scores.len(), types.len(), "one type per question");
    let mean = |want: Option<i64>| {
        let picked: Vec<f64> = scores
            .iter()
            .zip(types)
            .filter(|&(_, &t)| want.is_none_or(|w| w == t))
            .map(|(&s, _)| s)
            .collect();
        (!picked.is_empty()).then(|| 100.0 * picked.iter().sum::<f64>() / picked.len() as f64)
    };
    VqaScore {
        open: mean(Some(1)),
        closed: mean(Some(0)),
        overall: mean(None).unwrap_or(0.0),
        questions: scores.len(),
    }
}

/// The target score of the predicted class of each question: `logits` row-major (questions ×
/// classes), `targets[i]` the (class, score) pairs of question `i`.
///
/// # Panics
/// `logits` that is not questions × classes.
pub fn vqa_scores(logits: &[f32], classes: usize, targets: &[Vec<(i64, f64)>]) -> Vec<f64> {
    assert_eq!(logits.len(), classes * targets.len(), "questions × classes");
    logits
        .chunks(classes)
        .zip(targets)
        .map(|(row, target)| {
            let predicted = argmax(row).map(|c| c as i64);
            target
                .iter()
                .filter(|(class, _)| Some(*class) == predicted)
                .fold(0.0, |sum, (_, score)| sum + score) // not `sum()`, which starts at −0
        })
        .collect()
}

/// Accuracy (%) of the arg-max of `logits` (row-major, `classes` wide) against `labels`.
///
/// # Panics
/// `logits` that is not labels × classes.
pub fn accuracy(logits: &[f32], classes: usize, labels: &[i64]) -> f64 {
    assert_eq!(logits.len(), classes * labels.len(), "labels × classes");
    if labels.is_empty() {
        return 0.0;
    }
    let correct = logits
        .chunks(classes)
        .zip(labels)
        .filter(|&(row, &label)| argmax(row).map(|c| c as i64) == Some(label))
        .count();
    100.0 * correct as f64 / labels.len() as f64
}

/// Whether a candidate scoring `score` ranks above a gold one scoring `gold`: when it scores at
/// least as high, or either is NaN (a tie or a NaN never favours the gold one).
fn outranks(score: f32, gold: f32) -> bool {
    score.partial_cmp(&gold) != Some(std::cmp::Ordering::Less)
}

/// Recall over an images × texts score matrix (row-major); `gold[t]` is the image of text `t`.
///
/// # Panics
/// A matrix that is not images × texts, or a gold image out of range.
pub fn recall(scores: &[f32], images: usize, gold: &[usize]) -> Recall {
    let texts = gold.len();
    assert_eq!(scores.len(), images * texts, "images × texts");
    assert!(gold.iter().all(|&g| g < images), "gold image out of range");
    let at = |i: usize, t: usize| scores[i * texts + t];
    // Text → image: images other than the gold one scoring at least as high.
    let t2i_ranks: Vec<usize> = (0..texts)
        .map(|t| {
            let own = at(gold[t], t);
            (0..images)
                .filter(|&i| i != gold[t] && outranks(at(i, t), own))
                .count()
        })
        .collect();
    // Image → text: texts of other images scoring at least as high as its best gold text.
    let i2t_ranks: Vec<Option<usize>> = (0..images)
        .map(|i| {
            let best = (0..texts)
                .filter(|&t| gold[t] == i)
                .map(|t| at(i, t))
                .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))))?;
            Some(
                (0..texts)
                    .filter(|&t| gold[t] != i && outranks(at(i, t), best))
                    .count(),
            )
        })
        .collect();
    let percent = |hits: usize, of: usize| 100.0 * hits as f64 / of.max(1) as f64;
    Recall {
        i2t: RECALL_KS.map(|k| {
            let hits = i2t_ranks
                .iter()
                .filter(|r| r.is_some_and(|r| r < k))
                .count();
            percent(hits, images)
        }),
        t2i: RECALL_KS.map(|k| percent(t2i_ranks.iter().filter(|&&r| r < k).count(), texts)),
        images,
        texts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima_and_skips_nan() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[f32::NAN]), None);
    }

    #[test]
    fn vqa_accuracy_splits_open_and_closed() {
        // Four questions × three answers; the predicted answers are 1, 0 (a tie of 0 and 2,
        // the first wins), 2 and 1.
        let logits = [
            0.0, 3.0, 1.0, //
            2.0, 1.0, 2.0, //
            0.0, 0.0, 5.0, //
            1.0, 1.5, 0.0,
        ];
        let targets = vec![
            vec![(1, 1.0)], // closed, right
            vec![(2, 1.0)], // closed, wrong (the tie went to answer 0)
            vec![(2, 1.0)], // open, right
            vec![(0, 1.0)], // open, wrong
        ];
        let scores = vqa_scores(&logits, 3, &targets);
        assert_eq!(scores, vec![1.0, 0.0, 1.0, 0.0]);
        assert!(scores[1].is_sign_positive(), "a miss scores +0, not -0");
        let score = vqa_accuracy(&[1.0, 0.0, 1.0, 1.0, 0.0], &[0, 0, 1, 1, 1]);
        assert_eq!(score.closed, Some(50.0));
        assert!((score.open.unwrap() - 200.0 / 3.0).abs() < 1e-12);
        assert_eq!(score.overall, 60.0);
        assert_eq!(score.questions, 5);
    }

    #[test]
    fn vqa_accuracy_without_closed_questions_reports_none() {
        let score = vqa_accuracy(&[1.0, 0.0], &[1, 1]);
        assert_eq!(score.closed, None);
        assert_eq!(score.open, Some(50.0));
        assert_eq!(score.overall, 50.0);
    }

    #[test]
    fn classification_accuracy_counts_first_maxima() {
        let logits = [1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0];
        assert!((accuracy(&logits, 3, &[0, 2, 1]) - 200.0 / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(&logits, 3, &[1, 2, 0]), 200.0 / 3.0);
        assert_eq!(accuracy(&[], 3, &[]), 0.0);
    }

    #[test]
    fn recall_ranks_by_score_in_both_directions() {
        // 3 images × 3 texts, text t belongs to image t.
        #[rustfmt::skip]
        let scores = [
            0.9, 0.1, 0.8, // image 0: its text first
            0.5, 0.4, 0.3, // image 1: its text second
            0.95, 0.2, 0.7, // image 2: its text second
        ];
        let r = recall(&scores, 3, &[0, 1, 2]);
        // i2t R@1: only image 0. t2i: text 0 → images 2 (0.95) > 0 (0.9): rank 1;
        // text 1 → image 1 (0.4) > 0.2, 0.1: rank 0; text 2 → image 0 (0.8) > 2 (0.7): rank 1.
        assert!((r.i2t[0] - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.i2t[1], 100.0);
        assert!((r.t2i[0] - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.t2i[1], 100.0);
        assert_eq!((r.images, r.texts), (3, 3));
    }

    #[test]
    fn recall_counts_ties_against_the_gold_candidate() {
        let constant = [0.5f32; 16];
        let r = recall(&constant, 4, &[0, 1, 2, 3]);
        assert_eq!(r.i2t[0], 0.0);
        assert_eq!(r.t2i[0], 0.0);
        // At k = 5 every candidate fits, ties or not.
        assert_eq!(r.i2t[1], 100.0);
        assert_eq!(r.t2i[1], 100.0);
    }

    #[test]
    fn recall_uses_the_best_of_several_gold_captions() {
        // 2 images, 3 texts: texts 0 and 1 belong to image 0, text 2 to image 1.
        #[rustfmt::skip]
        let scores = [
            0.1, 0.9, 0.5, // image 0: gold text 1 is top
            0.3, 0.2, 0.1, // image 1: its text is last
        ];
        let r = recall(&scores, 2, &[0, 0, 1]);
        assert_eq!(r.i2t[0], 50.0);
        // t2i: text 0 → 0.1 vs 0.3: wrong; text 1 → right; text 2 → 0.1 vs 0.5: wrong.
        assert!((r.t2i[0] - 100.0 / 3.0).abs() < 1e-9);
        assert!(
            (r.mean() - (50.0 + 100.0 + 100.0 + 100.0 / 3.0 + 100.0 + 100.0) / 6.0).abs() < 1e-9
        );
    }
}
