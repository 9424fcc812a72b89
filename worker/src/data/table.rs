//! ARL's tables (ARL_SPEC.md §4.1): one row per image with its texts (captions, report sections
//! or questions), entity mentions and task columns ([`super::labels`]), as Arrow record batches. Reading accepts what pyarrow writes from pandas (32- or 64-bit offsets, null
//! lists as empty) so ARL's own `.arrow` files read without conversion.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use super::labels::{self, LabelColumns, Labels, TableKind};

/// One image and its texts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageTextRow {
    /// The original JPEG/PNG/DICOM bytes.
    pub image: Vec<u8>,
    /// Texts (captions or report sections).
    pub captions: Vec<String>,
    /// Source identifier (file path).
    pub image_id: String,
    /// Entity ids of the image (union over its texts).
    pub img_ents: Vec<i64>,
    /// Per text, its mentions `[start_char, end_char, entity_id]`.
    pub txt_ents: Vec<Vec<[i64; 3]>>,
    /// `train`, `val` or `test`.
    pub split: String,
    /// Task columns; every row of a table has the same kind.
    pub labels: Labels,
}

/// Column of the texts of image-text tables.
pub const TEXT_COLUMN: &str = "caption";

/// A list type of `item`.
pub(super) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The schema of a `kind` table as arl writes it.
pub fn schema(kind: TableKind) -> Schema {
    let mut fields = vec![
        Field::new("image", DataType::Binary, false),
        Field::new(kind.text_column(), list_of(DataType::Utf8), false),
        Field::new("image_id", DataType::Utf8, false),
        Field::new("img_ents", list_of(DataType::Int64), false),
        Field::new(
            "txt_ents",
            list_of(list_of(list_of(DataType::Int64))),
            false,
        ),
        Field::new("split", DataType::Utf8, false),
    ];
    fields.extend(labels::fields(kind));
    Schema::new(fields)
}

/// Rows (all of one table kind) → one record batch.
///
/// # Errors
/// Rows of different kinds, or Arrow refusing the arrays.
pub fn to_batch(rows: &[ImageTextRow]) -> anyhow::Result<RecordBatch> {
    let kind = rows
        .first()
        .map_or(TableKind::ImageText, |r| r.labels.kind());
    if let Some(other) = rows.iter().find(|r| r.labels.kind() != kind) {
        anyhow::bail!(
            "row {:?} is a {:?} row in a {kind:?} table",
            other.image_id,
            other.labels.kind()
        );
    }
    let mut task = LabelColumns::default();
    let mut image = BinaryBuilder::new();
    let mut captions = ListBuilder::new(StringBuilder::new());
    let mut image_id = StringBuilder::new();
    let mut img_ents = ListBuilder::new(Int64Builder::new());
    let mut txt_ents = ListBuilder::new(ListBuilder::new(ListBuilder::new(Int64Builder::new())));
    let mut split = StringBuilder::new();
    for row in rows {
        image.append_value(&row.image);
        for caption in &row.captions {
            captions.values().append_value(caption);
        }
        captions.append(true);
        image_id.append_value(&row.image_id);
        img_ents.values().append_slice(&row.img_ents);
        img_ents.append(true);
        for mentions in &row.txt_ents {
            let per_text = txt_ents.values();
            for mention in mentions {
                per_text.values().values().append_slice(mention);
                per_text.values().append(true);
            }
            per_text.append(true);
        }
        txt_ents.append(true);
        split.append_value(&row.split);
        task.append(&row.labels);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(image.finish()),
        Arc::new(captions.finish()),
        Arc::new(image_id.finish()),
        Arc::new(img_ents.finish()),
        Arc::new(txt_ents.finish()),
        Arc::new(split.finish()),
    ];
    columns.extend(task.finish(kind));
    Ok(RecordBatch::try_new(Arc::new(schema(kind)), columns)?)
}

/// A column of a batch, named in the error when missing.
pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("no column {name:?}"))
}

/// Bytes at `row` of a binary column.
fn bytes_at(array: &dyn Array, row: usize) -> anyhow::Result<Vec<u8>> {
    Ok(match array.data_type() {
        _ if array.is_null(row) => Vec::new(),
        DataType::Binary => array.as_binary::<i32>().value(row).to_vec(),
        DataType::LargeBinary => array.as_binary::<i64>().value(row).to_vec(),
        other => anyhow::bail!("expected binary, found {other}"),
    })
}

/// String at `row` of a string column.
pub(super) fn string_at(array: &dyn Array, row: usize) -> anyhow::Result<String> {
    Ok(match array.data_type() {
        _ if array.is_null(row) => String::new(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => array.as_string_view().value(row).to_owned(),
        other => anyhow::bail!("expected string, found {other}"),
    })
}

/// The list at `row` of a list column (`None` when null).
fn list_at(array: &dyn Array, row: usize) -> anyhow::Result<Option<ArrayRef>> {
    Ok(match array.data_type() {
        _ if array.is_null(row) => None,
        DataType::List(_) => Some(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(row)),
        other => anyhow::bail!("expected a list, found {other}"),
    })
}

/// Every element of a list column's row, converted by `item`.
pub(super) fn items_at<T>(
    array: &dyn Array,
    row: usize,
    item: impl Fn(&dyn Array, usize) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    match list_at(array, row)? {
        None => Ok(Vec::new()),
        Some(values) => (0..values.len()).map(|i| item(&values, i)).collect(),
    }
}

/// An int64 at `row`.
pub(super) fn int_at(array: &dyn Array, row: usize) -> anyhow::Result<i64> {
    match array.data_type() {
        DataType::Int64 => Ok(array.as_primitive::<Int64Type>().value(row)),
        other => anyhow::bail!("expected int64, found {other}"),
    }
}

/// A float64 at `row`.
pub(super) fn float_at(array: &dyn Array, row: usize) -> anyhow::Result<f64> {
    match array.data_type() {
        DataType::Float64 => Ok(array.as_primitive::<Float64Type>().value(row)),
        other => anyhow::bail!("expected float64, found {other}"),
    }
}

/// Row `row` of a batch.
///
/// # Errors
/// A missing column or one of another type (named).
pub fn row(batch: &RecordBatch, row: usize) -> anyhow::Result<ImageTextRow> {
    // arrow 60 panics on some malformed arrays (RELIABILITY.md): the row's error, not the rank's.
    super::loader::contained(|| read_row(batch, row))
}

fn read_row(batch: &RecordBatch, row: usize) -> anyhow::Result<ImageTextRow> {
    let get = |name: &str| column(batch, name);
    let with = |name: &'static str| move |e: anyhow::Error| e.context(format!("column {name:?}"));
    let mention = |values: &dyn Array, i: usize| -> anyhow::Result<[i64; 3]> {
        let triple = items_at(values, i, int_at)?;
        <[i64; 3]>::try_from(triple.as_slice())
            .map_err(|_| anyhow::anyhow!("a mention has {} values, not 3", triple.len()))
    };
    let text_column = if batch.column_by_name("questions").is_some() {
        "questions"
    } else {
        TEXT_COLUMN
    };
    Ok(ImageTextRow {
        image: bytes_at(get("image")?, row).map_err(with("image"))?,
        captions: items_at(get(text_column)?, row, string_at)
            .map_err(|e| e.context(format!("column {text_column:?}")))?,
        image_id: string_at(get("image_id")?, row).map_err(with("image_id"))?,
        img_ents: items_at(get("img_ents")?, row, int_at).map_err(with("img_ents"))?,
        txt_ents: items_at(get("txt_ents")?, row, |texts, i| {
            items_at(texts, i, mention)
        })
        .map_err(with("txt_ents"))?,
        split: string_at(get("split")?, row).map_err(with("split"))?,
        labels: labels::read(batch, row)?,
    })
}

/// Number of texts of each row (the dataset items of the batch).
///
/// # Errors
/// No text column, or one that is not a list.
pub fn text_counts(batch: &RecordBatch, text_column: &str) -> anyhow::Result<Vec<u32>> {
    super::loader::contained(|| count_texts(batch, text_column))
}

fn count_texts(batch: &RecordBatch, text_column: &str) -> anyhow::Result<Vec<u32>> {
    let texts = column(batch, text_column)?;
    (0..batch.num_rows())
        .map(|r| Ok(list_at(texts, r)?.map_or(0, |l| l.len() as u32)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_rows() -> Vec<ImageTextRow> {
        vec![
            ImageTextRow {
                image: vec![0xFF, 0xD8, 1, 2],
                captions: vec!["No pneumothorax.".into(), "Cardiomegaly.".into()],
                image_id: "a.jpg".into(),
                img_ents: vec![3, 5],
                txt_ents: vec![vec![[3, 15, 3]], vec![[0, 12, 5]]],
                split: "train".into(),
                labels: Labels::None,
            },
            ImageTextRow {
                image: vec![0x89, b'P'],
                captions: vec![],
                image_id: "b.png".into(),
                split: "val".into(),
                ..ImageTextRow::default()
            },
        ]
    }

    #[test]
    fn task_columns_round_trip_and_kinds_do_not_mix() {
        use crate::data::labels::VqaLabel;
        let vqa = ImageTextRow {
            image: vec![1],
            captions: vec!["Is there an effusion?".into(), "Which side?".into()],
            labels: Labels::Vqa(vec![
                VqaLabel {
                    answers: vec!["yes".into()],
                    labels: vec![0],
                    scores: vec![1.0],
                    question_id: 7,
                    answer_type: 0,
                },
                VqaLabel {
                    answers: vec!["left".into()],
                    labels: vec![3],
                    scores: vec![1.0],
                    question_id: 8,
                    answer_type: 1,
                },
            ]),
            ..ImageTextRow::default()
        };
        let batch = to_batch(std::slice::from_ref(&vqa)).unwrap();
        assert!(batch.column_by_name("questions").is_some());
        assert_eq!(row(&batch, 0).unwrap(), vqa);
        for labels in [Labels::Chexpert(vec![0; 14]), Labels::Class(vec![2, 5])] {
            let rows = vec![ImageTextRow {
                labels,
                ..sample_rows()[0].clone()
            }];
            assert_eq!(row(&to_batch(&rows).unwrap(), 0).unwrap(), rows[0]);
        }
        let mixed = [vqa, sample_rows()[0].clone()];
        let error = to_batch(&mixed).unwrap_err().to_string();
        assert!(
            error.contains("is a ImageText row in a Vqa table"),
            "{error}"
        );
    }

    #[test]
    fn rows_round_trip_through_a_batch() {
        let rows = sample_rows();
        let batch = to_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let back: Vec<ImageTextRow> = (0..2).map(|r| row(&batch, r).unwrap()).collect();
        assert_eq!(back, rows);
        assert_eq!(text_counts(&batch, TEXT_COLUMN).unwrap(), [2, 0]);
        let error = text_counts(&batch, "questions").unwrap_err().to_string();
        assert_eq!(error, "no column \"questions\"");
    }
}
