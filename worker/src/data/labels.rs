//! The per-task columns of ARL's tables (ARL_SPEC.md §4.1) beside the image and its texts:
//! CheXpert labels (`mimic_cxr_*`), answers (`vqa_*`, whose texts are the questions) and class
//! labels (classification, one per text).

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};

use super::table::{column, float_at, int_at, items_at, list_of, string_at};

/// Which table a dataset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Image-text pairs (ROCO, MedICaT, retrieval).
    #[default]
    ImageText,
    /// Image-report pairs with the image's 14 CheXpert labels (MIMIC-CXR).
    Chexpert,
    /// Questions about the image, with answers.
    Vqa,
    /// Texts with a class each.
    Class,
}

impl TableKind {
    /// The list column whose elements are the dataset's items.
    pub fn text_column(self) -> &'static str {
        match self {
            Self::Vqa => "questions",
            _ => "caption",
        }
    }
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VqaLabel {
    /// Normalised answers.
    pub answers: Vec<String>,
    /// Their ids in the dataset's answer vocabulary.
    pub labels: Vec<i64>,
    /// Their scores (1.0 for the one answer of ARL's datasets).
    pub scores: Vec<f64>,
    /// The question's id.
    pub question_id: i64,
    /// 0 closed, 1 open.
    pub answer_type: i64,
}

/// A row's task columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Labels {
    /// None (image-text pairs).
    #[default]
    None,
    /// The image's 14 CheXpert values (1 positive, 0 otherwise).
    Chexpert(Vec<i64>),
    /// One answer per question (text).
    Vqa(Vec<VqaLabel>),
    /// One class id per text.
    Class(Vec<i64>),
}

impl Labels {
    /// The table these labels belong to.
    pub fn kind(&self) -> TableKind {
        match self {
            Self::None => TableKind::ImageText,
            Self::Chexpert(_) => TableKind::Chexpert,
            Self::Vqa(_) => TableKind::Vqa,
            Self::Class(_) => TableKind::Class,
        }
    }
}

/// The task columns of a table.
pub fn fields(kind: TableKind) -> Vec<Field> {
    let ints = || list_of(DataType::Int64);
    match kind {
        TableKind::ImageText => vec![],
        TableKind::Chexpert => vec![Field::new("chexpert", ints(), false)],
        TableKind::Vqa => vec![
            Field::new("answers", list_of(list_of(DataType::Utf8)), false),
            Field::new("answer_labels", list_of(ints()), false),
            Field::new("answer_scores", list_of(list_of(DataType::Float64)), false),
            Field::new("question_id", ints(), false),
            Field::new("answer_type", ints(), false),
        ],
        TableKind::Class => vec![Field::new("label", ints(), false)],
    }
}

/// Builds the task columns row by row.
#[derive(Default)]
pub struct LabelColumns {
    ints: ListBuilder<Int64Builder>,
    answers: ListBuilder<ListBuilder<StringBuilder>>,
    answer_labels: ListBuilder<ListBuilder<Int64Builder>>,
    answer_scores: ListBuilder<ListBuilder<Float64Builder>>,
    question_id: ListBuilder<Int64Builder>,
    answer_type: ListBuilder<Int64Builder>,
}

impl LabelColumns {
    /// Appends a row's labels.
    pub fn append(&mut self, labels: &Labels) {
        match labels {
            Labels::None => {}
            Labels::Chexpert(values) | Labels::Class(values) => {
                self.ints.values().append_slice(values);
                self.ints.append(true);
            }
            Labels::Vqa(questions) => {
                for q in questions {
                    for answer in &q.answers {
                        self.answers.values().values().append_value(answer);
                    }
                    self.answers.values().append(true);
                    self.answer_labels.values().values().append_slice(&q.labels);
                    self.answer_labels.values().append(true);
                    self.answer_scores.values().values().append_slice(&q.scores);
                    self.answer_scores.values().append(true);
                    self.question_id.values().append_value(q.question_id);
                    self.answer_type.values().append_value(q.answer_type);
                }
                self.answers.append(true);
                self.answer_labels.append(true);
                self.answer_scores.append(true);
                self.question_id.append(true);
                self.answer_type.append(true);
            }
        }
    }

    /// The finished columns of a `kind` table, in [`fields`] order.
    pub fn finish(mut self, kind: TableKind) -> Vec<ArrayRef> {
        match kind {
            TableKind::ImageText => vec![],
            TableKind::Chexpert | TableKind::Class => vec![Arc::new(self.ints.finish())],
            TableKind::Vqa => vec![
                Arc::new(self.answers.finish()),
                Arc::new(self.answer_labels.finish()),
                Arc::new(self.answer_scores.finish()),
                Arc::new(self.question_id.finish()),
                Arc::new(self.answer_type.finish()),
            ],
        }
    }
}

/// The task columns of `row`, by the columns the batch has (ARL's MELINDA tables name their
/// class column `p_meth_label`).
///
/// # Errors
/// A task column of the wrong type, or VQA columns of different lengths.
pub fn read(batch: &RecordBatch, row: usize) -> anyhow::Result<Labels> {
    let has = |name: &str| batch.column_by_name(name).is_some();
    let ints = |name: &str| -> anyhow::Result<Vec<i64>> {
        items_at(column(batch, name)?, row, int_at)
            .map_err(|e| e.context(format!("column {name:?}")))
    };
    if has("answers") {
        let answers = items_at(column(batch, "answers")?, row, |a, i| {
            items_at(a, i, string_at)
        })?;
        let labels = items_at(column(batch, "answer_labels")?, row, |a, i| {
            items_at(a, i, int_at)
        })?;
        let scores = items_at(column(batch, "answer_scores")?, row, |a, i| {
            items_at(a, i, float_at)
        })?;
        let (ids, types) = (ints("question_id")?, ints("answer_type")?);
        let n = answers.len();
        anyhow::ensure!(
            [labels.len(), scores.len(), ids.len(), types.len()] == [n; 4],
            "the answer columns of row {row} have different lengths"
        );
        let questions = answers
            .into_iter()
            .zip(labels)
            .zip(scores)
            .zip(ids.into_iter().zip(types))
            .map(
                |(((answers, labels), scores), (question_id, answer_type))| VqaLabel {
                    answers,
                    labels,
                    scores,
                    question_id,
                    answer_type,
                },
            )
            .collect();
        return Ok(Labels::Vqa(questions));
    }
    if has("chexpert") {
        return Ok(Labels::Chexpert(ints("chexpert")?));
    }
    for name in ["label", "p_meth_label"] {
        if has(name) {
            return Ok(Labels::Class(ints(name)?));
        }
    }
    Ok(Labels::None)
}
