//! MIMIC-CXR (ARL_SPEC.md §4.2) from its released files: `mimic-cxr-2.0.0-metadata.csv`
//! (`dicom_id`, `subject_id`, `study_id`, `ViewPosition`), `-split.csv`, `-chexpert.csv`,
//! `mimic_cxr_sectioned.csv` (from MIT-LCP's `create_section_files.py`) and `files/`. Frontal
//! views only; texts are the impression and the findings; the image is read as released —
//! DICOM (`.dcm`), MIMIC-CXR-JPG (`.jpg`) or a converted `.png` — with no conversion step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::clean_text;

/// The 14 CheXpert observations, in the CSV's column order.
pub const CHEXPERT_COLUMNS: usize = 14;

/// One frontal image with its report texts and CheXpert labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Study {
    /// Split index (0 train, 1 val, 2 test).
    pub split: usize,
    /// The image file.
    pub image: PathBuf,
    /// Impression, then findings (each when present with three words or more).
    pub texts: Vec<String>,
    /// CheXpert values: 1 positive, else 0 (blank and −1 → 0, as ARL).
    pub chexpert: Vec<i64>,
}

/// Why metadata rows were left out, with counts.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Skipped {
    /// Lateral and other non-frontal views.
    pub not_frontal: usize,
    /// No CheXpert row for the study.
    pub no_chexpert: usize,
    /// No sectioned report for the study.
    pub no_report: usize,
    /// No impression or findings of three words or more.
    pub no_text: usize,
}

/// A CSV file as header → column index, and its records.
fn read_csv(path: &Path) -> anyhow::Result<(HashMap<String, usize>, Vec<csv::StringRecord>)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}: header", path.display()))?
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_owned(), i))
        .collect();
    let records = reader
        .records()
        .enumerate()
        .map(|(row, r)| r.with_context(|| format!("{}: row {}", path.display(), row + 1)))
        .collect::<anyhow::Result<_>>()?;
    Ok((header, records))
}

fn column(header: &HashMap<String, usize>, name: &str, path: &Path) -> anyhow::Result<usize> {
    header
        .get(name)
        .copied()
        .with_context(|| format!("{}: no column {name:?}", path.display()))
}

/// The image of a study as released: `.png`, else `.jpg`, else `.dcm` (the `.png` path when
/// none exists, reported as missing later).
fn image_path(root: &Path, subject: &str, study: &str, dicom: &str) -> PathBuf {
    let folder = root
        .join("files")
        .join(format!("p{}", &subject[..subject.len().min(2)]))
        .join(format!("p{subject}"))
        .join(format!("s{study}"));
    ["png", "jpg", "dcm"]
        .iter()
        .map(|ext| folder.join(format!("{dicom}.{ext}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| folder.join(format!("{dicom}.png")))
}

/// The frontal studies of MIMIC-CXR in metadata order, and what was left out.
///
/// # Errors
/// A missing file or column, a malformed row, or a dicom_id without a split (named).
pub fn mimic_cxr(root: &Path) -> anyhow::Result<(Vec<Study>, Skipped)> {
    let file = |name: &str| root.join(name);
    let split_path = file("mimic-cxr-2.0.0-split.csv");
    let (header, rows) = read_csv(&split_path)?;
    let (dicom_col, split_col) = (
        column(&header, "dicom_id", &split_path)?,
        column(&header, "split", &split_path)?,
    );
    let mut splits = HashMap::new();
    for row in &rows {
        let split = match row.get(split_col).unwrap_or_default() {
            "train" => 0,
            "validate" | "val" => 1,
            "test" => 2,
            other => bail!(
                "{}: split {other:?} is not train/validate/test",
                split_path.display()
            ),
        };
        splits.insert(row.get(dicom_col).unwrap_or_default().to_owned(), split);
    }

    let chexpert_path = file("mimic-cxr-2.0.0-chexpert.csv");
    let (header, rows) = read_csv(&chexpert_path)?;
    let (subject_col, study_col) = (
        column(&header, "subject_id", &chexpert_path)?,
        column(&header, "study_id", &chexpert_path)?,
    );
    let mut chexpert = HashMap::new();
    for (n, row) in rows.iter().enumerate() {
        let values = (2..2 + CHEXPERT_COLUMNS)
            .map(|i| match row.get(i).unwrap_or_default().trim() {
                "" => Ok(0),
                v => v
                    .parse::<f64>()
                    .map(|x| i64::from(x == 1.0))
                    .with_context(|| {
                        format!("{}: row {}: value {v:?}", chexpert_path.display(), n + 1)
                    }),
            })
            .collect::<anyhow::Result<Vec<i64>>>()?;
        let key = format!("{}_{}", &row[subject_col], &row[study_col]);
        chexpert.insert(key, values);
    }

    let sections_path = file("mimic_cxr_sectioned.csv");
    let (header, rows) = read_csv(&sections_path)?;
    let (study_col, impression_col, findings_col) = (
        column(&header, "study", &sections_path)?,
        column(&header, "impression", &sections_path)?,
        column(&header, "findings", &sections_path)?,
    );
    let reports: HashMap<String, (String, String)> = rows
        .iter()
        .map(|r| {
            let get = |i: usize| r.get(i).unwrap_or_default().to_owned();
            (get(study_col), (get(impression_col), get(findings_col)))
        })
        .collect();

    let metadata_path = file("mimic-cxr-2.0.0-metadata.csv");
    let (header, rows) = read_csv(&metadata_path)?;
    let cols = ["dicom_id", "subject_id", "study_id", "ViewPosition"]
        .map(|name| column(&header, name, &metadata_path));
    let [dicom_col, subject_col, study_col, view_col] = cols;
    let (dicom_col, subject_col, study_col, view_col) =
        (dicom_col?, subject_col?, study_col?, view_col?);
    let (mut studies, mut skipped) = (Vec::new(), Skipped::default());
    for row in &rows {
        let (dicom, subject, study) = (&row[dicom_col], &row[subject_col], &row[study_col]);
        let split = *splits.get(dicom).with_context(|| {
            format!(
                "{}: dicom_id {dicom} has no row in {}",
                metadata_path.display(),
                split_path.display()
            )
        })?;
        if !matches!(row.get(view_col), Some("PA" | "AP")) {
            skipped.not_frontal += 1;
            continue;
        }
        let Some(labels) = chexpert.get(&format!("{subject}_{study}")) else {
            skipped.no_chexpert += 1;
            continue;
        };
        let Some((impression, findings)) = reports.get(&format!("s{study}")) else {
            skipped.no_report += 1;
            continue;
        };
        let texts: Vec<String> = [impression, findings]
            .into_iter()
            .filter_map(|t| clean_text(t))
            .collect();
        if texts.is_empty() {
            skipped.no_text += 1;
            continue;
        }
        studies.push(Study {
            split,
            image: image_path(root, subject, study, dicom),
            texts,
            chexpert: labels.clone(),
        });
    }
    Ok((studies, skipped))
}
