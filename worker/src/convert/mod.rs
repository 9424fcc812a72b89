//! `arl data convert`: published datasets in their released layouts to arl's shards, one
//! sharded dataset per split (`OUTPUT/{train,val,test}`), texts linked to the ontology's
//! concepts (ARL_SPEC.md §4.3). Images missing on disk are skipped (as ARL does) but counted
//! and reported; malformed files and rows are errors naming the file and row.

pub mod answers;
pub mod melinda;
pub mod mimic;
pub mod pydicom_data;
pub mod python_random;
pub mod roco;
pub mod vqa;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::annotate::EntityTable;
use crate::data::labels::{Labels, VqaLabel};
use crate::data::shard::ShardWriter;
use crate::data::table::ImageTextRow;
use crate::knowledge::linker::Linker;
use answers::{AnswerVocabulary, normalize_word};

/// The datasets `arl data convert` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    /// VQA-RAD (MEVF release).
    VqaRad,
    /// SLAKE, English questions.
    Slake,
    /// VQA-Med-2019, categories C1–C3.
    #[value(name = "vqa-med-2019")]
    VqaMed2019,
    /// MELINDA.
    Melinda,
    /// ROCO, radiology subset, with MedICaT's inline references when `--medicat` is given.
    Roco,
    /// The ROCO retrieval subsets (all of train, 2,000 of val and of test, ARL's draw).
    RocoRetrieval,
    /// MedICaT's radiology figures, ARL's seeded split.
    Medicat,
    /// MIMIC-CXR, frontal views, DICOM or JPG read directly.
    MimicCxr,
    /// The DICOM files of pydicom-data, captioned from their attributes (a real-image smoke
    /// set).
    PydicomData,
}

/// Conversion settings.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// VQA-RAD's validation split.
    pub rad_validation: vqa::RadValidation,
    /// MELINDA's label column.
    pub melinda_label: String,
    /// Image bytes per shard, MiB.
    pub shard_mb: usize,
    /// ROCO: MedICaT's folder, for the inline references.
    pub medicat: Option<PathBuf>,
}

const SPLITS: [&str; 3] = ["train", "val", "test"];

/// ARL's text rule: whitespace runs to one space, trimmed, three words or more.
pub fn clean_text(text: &str) -> Option<String> {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (text.split(' ').count() >= 3).then_some(text)
}

/// Rows grouped by (split, image) in first-seen order, each with its texts: an image asked
/// about in two splits (VQA-RAD shares images between train and test) is a row of each, as in
/// ARL's per-split tables.
#[derive(Default)]
struct Groups {
    order: Vec<(usize, PathBuf)>,
    rows: std::collections::HashMap<(usize, PathBuf), (Vec<String>, Labels)>,
}

/// What a text carries besides itself.
enum Extra {
    Nothing,
    Chexpert(Vec<i64>),
    Answer(VqaLabel),
    Class(i64),
}

impl Groups {
    fn push(&mut self, image: &Path, split: usize, text: String, extra: Extra) {
        let key = (split, image.to_owned());
        let (texts, labels) = self.rows.entry(key.clone()).or_insert_with(|| {
            self.order.push(key);
            (Vec::new(), Labels::None)
        });
        texts.push(text);
        // A row's labels: one answer or class per text, CheXpert values once per image.
        match (labels, extra) {
            (Labels::Vqa(answers), Extra::Answer(answer)) => answers.push(answer),
            (Labels::Class(classes), Extra::Class(class)) => classes.push(class),
            (labels @ Labels::None, Extra::Answer(answer)) => *labels = Labels::Vqa(vec![answer]),
            (labels @ Labels::None, Extra::Class(class)) => *labels = Labels::Class(vec![class]),
            (labels @ Labels::None, Extra::Chexpert(values)) => *labels = Labels::Chexpert(values),
            _ => {}
        }
    }
}

/// Writes the groups as one dataset per split; returns the summary.
fn write(
    groups: Groups,
    label_names: Vec<String>,
    linker: &Linker,
    out: &Path,
    shard_mb: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut writers = SPLITS
        .iter()
        .map(|split| ShardWriter::new(&out.join(split), shard_mb << 20))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut entities = EntityTable::default();
    let (mut missing, mut rows, mut items) = (Vec::new(), [0usize; 3], [0usize; 3]);
    for key in &groups.order {
        let (split, image) = (&key.0, &key.1);
        let (texts, labels) = &groups.rows[key];
        let bytes = match std::fs::read(image) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(image = %image.display(), %error, "image missing; row skipped");
                missing.push(image.display().to_string());
                continue;
            }
        };
        let found = entities.annotate(linker, texts);
        rows[*split] += 1;
        items[*split] += texts.len();
        writers[*split].push(ImageTextRow {
            image: bytes,
            captions: texts.clone(),
            image_id: image.display().to_string(),
            img_ents: found.img_ents,
            txt_ents: found.txt_ents,
            split: SPLITS[*split].to_owned(),
            labels: labels.clone(),
        })?;
    }
    for writer in writers {
        writer.finish_with(entities.cuis().to_vec(), label_names.clone())?;
    }
    Ok(serde_json::json!({
        "rows": dict(rows), "items": dict(items), "labels": label_names.len(),
        "entities": entities.cuis().len(), "missing_images": missing.len(),
        "missing_examples": missing.iter().take(5).collect::<Vec<_>>(),
    }))
}

fn dict(values: [usize; 3]) -> serde_json::Value {
    serde_json::json!({"train": values[0], "val": values[1], "test": values[2]})
}

/// Converts `dataset` from its released layout in `input` into the local folder `out`.
///
/// # Errors
/// Missing or malformed input (named), or an output that cannot be written.
pub fn convert(
    dataset: Dataset,
    input: &Path,
    out: &Path,
    linker: &Linker,
    options: &ConvertOptions,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(input.is_dir(), "{} is not a folder", input.display());
    let mut groups = Groups::default();
    let mut skipped = serde_json::Value::Null;
    let label_names = match dataset {
        Dataset::Roco | Dataset::RocoRetrieval | Dataset::Medicat => {
            let (pairs, left_out) = match dataset {
                Dataset::Roco => roco::roco(input, options.medicat.as_deref())?,
                Dataset::RocoRetrieval => roco::roco_retrieval(input)?,
                _ => roco::medicat(input)?,
            };
            skipped = serde_json::to_value(left_out)?;
            for pair in pairs {
                for text in pair.texts {
                    groups.push(&pair.image, pair.split, text, Extra::Nothing);
                }
            }
            Vec::new()
        }
        Dataset::MimicCxr => {
            let (studies, left_out) = mimic::mimic_cxr(input)?;
            skipped = serde_json::to_value(left_out)?;
            for study in studies {
                for text in study.texts {
                    let extra = Extra::Chexpert(study.chexpert.clone());
                    groups.push(&study.image, study.split, text, extra);
                }
            }
            Vec::new()
        }
        Dataset::PydicomData => {
            let (images, failed) = pydicom_data::smoke_set(input)?;
            skipped = serde_json::json!(failed);
            for (i, image) in images.into_iter().enumerate() {
                let split = SPLITS.iter().position(|s| *s == crate::synth::split_of(i));
                let split = split.context("a split")?;
                groups.push(&image.path, split, image.caption, Extra::Nothing);
            }
            Vec::new()
        }
        Dataset::Melinda => {
            let (splits, names) = melinda::melinda(input, &options.melinda_label)?;
            for (split, figures) in splits.into_iter().enumerate() {
                for figure in figures {
                    let id = names
                        .iter()
                        .position(|n| *n == figure.label)
                        .context("a label")?;
                    groups.push(
                        &figure.image,
                        split,
                        figure.caption,
                        Extra::Class(id as i64),
                    );
                }
            }
            names
        }
        vqa_dataset => {
            let splits = match vqa_dataset {
                Dataset::VqaRad => vqa::vqa_rad(input, options.rad_validation)?,
                Dataset::Slake => vqa::slake(input)?,
                _ => vqa::vqa_med_2019(input)?,
            };
            let mut vocabulary = AnswerVocabulary::default();
            for (split, questions) in splits.into_iter().enumerate() {
                for q in questions {
                    let answer = normalize_word(&q.answer);
                    let label = VqaLabel {
                        labels: vec![vocabulary.id(&answer)],
                        answers: vec![answer],
                        scores: vec![1.0],
                        question_id: q.qid,
                        answer_type: q.answer_type,
                    };
                    groups.push(&q.image, split, q.question, Extra::Answer(label));
                }
            }
            vocabulary.names().to_vec()
        }
    };
    let mut summary = write(groups, label_names, linker, out, options.shard_mb)?;
    summary["skipped"] = skipped;
    Ok(summary)
}
