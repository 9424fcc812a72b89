//! MELINDA (ARL_SPEC.md §4.3): `{train,dev,test}.csv` with `figure_file`, `caption`, `i_meth`,
//! `p_meth`, `i_meth_label`, `p_meth_label`, and `melinda_images/`. A label's id is its position
//! among the sorted distinct values of its column over all splits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The label columns.
pub const LABEL_COLUMNS: [&str; 4] = ["i_meth", "p_meth", "i_meth_label", "p_meth_label"];

/// One captioned figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// The image file.
    pub image: PathBuf,
    /// The caption.
    pub caption: String,
    /// The chosen label column's value.
    pub label: String,
}

/// The figures of each split, and the sorted names of the chosen label column.
///
/// # Errors
/// A missing file or column, or a malformed row (named with its line).
pub fn melinda(input: &Path, column: &str) -> anyhow::Result<([Vec<Figure>; 3], Vec<String>)> {
    if !LABEL_COLUMNS.contains(&column) {
        bail!("MELINDA has no label column {column:?} (one of {LABEL_COLUMNS:?})");
    }
    let images = input.join("melinda_images");
    let mut splits: [Vec<Figure>; 3] = Default::default();
    for (file, out) in ["train.csv", "dev.csv", "test.csv"]
        .iter()
        .zip(splits.iter_mut())
    {
        let path = input.join(file);
        let mut reader =
            csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        let headers = reader.headers()?.clone();
        let index = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("{}: no column {name:?}", path.display()))
        };
        let (figure, caption, label) = (index("figure_file")?, index("caption")?, index(column)?);
        for (row, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{}: row {}", path.display(), row + 1))?;
            let get = |i: usize| record.get(i).unwrap_or_default().to_owned();
            out.push(Figure {
                image: images.join(get(figure)),
                caption: get(caption),
                label: get(label),
            });
        }
    }
    let names: BTreeSet<String> = splits.iter().flatten().map(|f| f.label.clone()).collect();
    Ok((splits, names.into_iter().collect()))
}
