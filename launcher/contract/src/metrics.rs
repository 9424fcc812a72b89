//! The metrics a fine-tune reports (ARL_SPEC.md §5.6): VQA accuracy by answer type,
//! classification accuracy, and retrieval Recall@K in both directions. The worker computes
//! them (`arl_worker::finetune::metrics`); the launcher reads them from the events.

use serde::{Deserialize, Serialize};

/// VQA accuracy (%) of closed questions, open questions and all of them; `None` where a split
/// has no question (VQA-Med-2019 has only open ones).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VqaScore {
    /// Questions of type 1.
    pub open: Option<f64>,
    /// Questions of type 0.
    pub closed: Option<f64>,
    /// Every question.
    pub overall: f64,
    /// Questions scored.
    pub questions: usize,
}

/// The cut-offs of Recall@K.
pub const RECALL_KS: [usize; 3] = [1, 5, 10];

/// Recall@1/5/10 (%) in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Image → text (the reference's `tr_r@k`): per image, a gold caption among the top k.
    pub i2t: [f64; 3],
    /// Text → image (`ir_r@k`): per caption, its image among the top k.
    pub t2i: [f64; 3],
    /// Images (rows) scored.
    pub images: usize,
    /// Captions (columns) scored.
    pub texts: usize,
}

impl Recall {
    /// The mean of the six recalls (the reference's `irtr` validation metric).
    pub fn mean(&self) -> f64 {
        self.i2t.iter().chain(&self.t2i).sum::<f64>() / 6.0
    }
}

/// A metric of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// VQA accuracy by answer type.
    Vqa(VqaScore),
    /// Classification accuracy (%).
    Cls {
        /// Accuracy.
        accuracy: f64,
        /// Items scored.
        items: usize,
    },
    /// Retrieval recall.
    Irtr(Recall),
}

impl Metric {
    /// The number that selects the best epoch: overall accuracy, accuracy, mean recall.
    pub fn headline(&self) -> f64 {
        match self {
            Self::Vqa(score) => score.overall,
            Self::Cls { accuracy, .. } => *accuracy,
            Self::Irtr(recall) => recall.mean(),
        }
    }

    /// Every number of the metric as TensorBoard scalars under `prefix`: `overall`, `open`,
    /// `closed` (VQA); `accuracy` (classification); `i2t_r1` … `t2i_r10` and `mean_recall`
    /// (retrieval).
    pub fn scalars(&self, prefix: &str) -> Vec<(String, f64)> {
        let named: Vec<(String, f64)> = match self {
            Self::Vqa(score) => [
                Some(("overall", score.overall)),
                score.open.map(|v| ("open", v)),
                score.closed.map(|v| ("closed", v)),
            ]
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
            Self::Cls { accuracy, .. } => vec![("accuracy".to_owned(), *accuracy)],
            Self::Irtr(recall) => [("i2t", recall.i2t), ("t2i", recall.t2i)]
                .into_iter()
                .flat_map(|(direction, values)| {
                    [1, 5, 10]
                        .into_iter()
                        .zip(values)
                        .map(move |(k, value)| (format!("{direction}_r{k}"), value))
                })
                .chain([("mean_recall".to_owned(), recall.mean())])
                .collect(),
        };
        named
            .into_iter()
            .map(|(name, value)| (format!("{prefix}/{name}"), value))
            .collect()
    }

    /// The metric in a few words, for a person.
    pub fn describe(&self) -> String {
        let percent = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
        match self {
            Self::Vqa(s) => format!(
                "open {} closed {} overall {} %",
                percent(s.open),
                percent(s.closed),
                percent(Some(s.overall))
            ),
            Self::Cls { accuracy, .. } => format!("accuracy {} %", percent(Some(*accuracy))),
            Self::Irtr(r) => {
                let at = |v: [f64; 3]| v.map(|x| percent(Some(x))).join("/");
                format!("T2I R@1/5/10 {}, I2T R@1/5/10 {} %", at(r.t2i), at(r.i2t))
            }
        }
    }
}
