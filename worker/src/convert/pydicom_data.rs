//! A small real-image smoke set: the DICOM files of `pydicom-data` (CR, CT, MR, NM, ultrasound;
//! several transfer syntaxes), each captioned from its description attributes (modality, body
//! part, study and series descriptions, protocol), split by file index as the synthetic
//! benchmark is. Files whose first frame does not decode here (JPEG-LS, palette colour, 1-bit,
//! broken) are skipped and counted with the reason.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::dicom::{self, DicomOptions, Frames};

/// A modality code's name.
fn modality_name(code: &str) -> &'static str {
    match code {
        "CT" => "computed tomography",
        "MR" => "magnetic resonance",
        "CR" => "computed radiography",
        "DX" => "digital radiography",
        "RG" => "radiographic",
        "US" => "ultrasound",
        "NM" => "nuclear medicine",
        "PT" => "positron emission tomography",
        "XA" => "X-ray angiography",
        "MG" => "mammography",
        "SC" => "secondary capture",
        _ => "medical",
    }
}

/// The caption of a file from its text attributes, e.g. "A magnetic resonance image of the
/// abdomen: abdomen liver, marked lesion."
pub fn caption(tags: &[(&str, String)]) -> String {
    let get = |name: &str| {
        tags.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.replace('^', " "))
    };
    let kind = modality_name(get("Modality").as_deref().unwrap_or(""));
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    };
    let mut text = format!("{article} {kind} image");
    if let Some(part) = get("BodyPartExamined") {
        text.push_str(&format!(" of the {}", part.to_lowercase()));
    }
    let mut details: Vec<String> = Vec::new();
    for name in ["StudyDescription", "SeriesDescription", "ProtocolName"] {
        if let Some(value) = get(name).filter(|v| !details.contains(v)) {
            details.push(value);
        }
    }
    if !details.is_empty() {
        text.push_str(&format!(": {}", details.join(", ")));
    }
    text.push('.');
    text
}

/// One usable file.
pub struct SmokeImage {
    /// The file.
    pub path: PathBuf,
    /// Its caption.
    pub caption: String,
}

/// The decodable files of `input` (sorted by name) with captions, and the skipped ones with
/// their reasons.
///
/// # Errors
/// The folder cannot be listed.
pub fn smoke_set(input: &Path) -> anyhow::Result<(Vec<SmokeImage>, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .with_context(|| format!("listing {}", input.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for path in files {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let checked = dicom::decode(&bytes, &DicomOptions::default(), Frames::First)
            .and_then(|_| dicom::text_tags(&bytes));
        match checked {
            Ok(tags) => kept.push(SmokeImage {
                caption: caption(&tags),
                path,
            }),
            Err(error) => {
                tracing::warn!(file = %path.display(), "skipped: {error:#}");
                skipped.push(format!("{}: {error:#}", path.display()));
            }
        }
    }
    Ok((kept, skipped))
}
