//! ARL's image-text table (ARL_SPEC.md §4.1: `roco_*`, `medicat_*`, `irtr_roco_*`, and the first
//! columns of `mimic_cxr_*`): one row per image with its texts and entity mentions, as Arrow
//! record batches. Reading accepts what pyarrow writes from pandas (32- or 64-bit offsets, null
//! lists as empty) so ARL's own `.arrow` files read without conversion.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

/// One image and its texts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
}

/// Column of the texts.
pub const TEXT_COLUMN: &str = "caption";

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The table's schema as arl writes it.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("image", DataType::Binary, false),
        Field::new(TEXT_COLUMN, list_of(DataType::Utf8), false),
        Field::new("image_id", DataType::Utf8, false),
        Field::new("img_ents", list_of(DataType::Int64), false),
        Field::new(
            "txt_ents",
            list_of(list_of(list_of(DataType::Int64))),
            false,
        ),
        Field::new("split", DataType::Utf8, false),
    ])
}

/// Rows → one record batch.
///
/// # Errors
/// Arrow refuses the arrays (it should not for well-formed rows).
pub fn to_batch(rows: &[ImageTextRow]) -> anyhow::Result<RecordBatch> {
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
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(image.finish()),
        Arc::new(captions.finish()),
        Arc::new(image_id.finish()),
        Arc::new(img_ents.finish()),
        Arc::new(txt_ents.finish()),
        Arc::new(split.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema()), columns)?)
}

/// A column of a batch, named in the error when missing.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a ArrayRef> {
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
fn string_at(array: &dyn Array, row: usize) -> anyhow::Result<String> {
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
fn items_at<T>(
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
fn int_at(array: &dyn Array, row: usize) -> anyhow::Result<i64> {
    match array.data_type() {
        DataType::Int64 => Ok(array.as_primitive::<Int64Type>().value(row)),
        other => anyhow::bail!("expected int64, found {other}"),
    }
}

/// Row `row` of a batch.
///
/// # Errors
/// A missing column or one of another type (named).
pub fn row(batch: &RecordBatch, row: usize) -> anyhow::Result<ImageTextRow> {
    let get = |name: &str| column(batch, name);
    let with = |name: &'static str| move |e: anyhow::Error| e.context(format!("column {name:?}"));
    let mention = |values: &dyn Array, i: usize| -> anyhow::Result<[i64; 3]> {
        let triple = items_at(values, i, int_at)?;
        <[i64; 3]>::try_from(triple.as_slice())
            .map_err(|_| anyhow::anyhow!("a mention has {} values, not 3", triple.len()))
    };
    Ok(ImageTextRow {
        image: bytes_at(get("image")?, row).map_err(with("image"))?,
        captions: items_at(get(TEXT_COLUMN)?, row, string_at).map_err(with(TEXT_COLUMN))?,
        image_id: string_at(get("image_id")?, row).map_err(with("image_id"))?,
        img_ents: items_at(get("img_ents")?, row, int_at).map_err(with("img_ents"))?,
        txt_ents: items_at(get("txt_ents")?, row, |texts, i| {
            items_at(texts, i, mention)
        })
        .map_err(with("txt_ents"))?,
        split: string_at(get("split")?, row).map_err(with("split"))?,
    })
}

/// Number of texts of each row (the dataset items of the batch).
///
/// # Errors
/// No text column, or one that is not a list.
pub fn text_counts(batch: &RecordBatch, text_column: &str) -> anyhow::Result<Vec<u32>> {
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
