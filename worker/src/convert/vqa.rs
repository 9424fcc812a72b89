//! The VQA datasets in their released layouts (ARL_SPEC.md §4.3): VQA-RAD (MEVF json), SLAKE
//! (English questions only) and VQA-Med-2019 (Modality, Organ and Plane; Abnormality left out).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// One question as released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawQuestion {
    /// The image file.
    pub image: PathBuf,
    /// The question id.
    pub qid: i64,
    /// The question.
    pub question: String,
    /// The answer, as `str(answer).lower()`.
    pub answer: String,
    /// 0 closed, 1 open.
    pub answer_type: i64,
}

/// Where VQA-RAD's validation questions come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RadValidation {
    /// `valset.json`, as ARL does (in the MEVF release it is a copy of `testset.json`, so
    /// validation scores are test scores).
    Valset,
    /// This fraction of the training images (all their questions), drawn with the seed; the
    /// test set stays untouched.
    Holdout {
        /// Fraction of training images.
        fraction: f64,
        /// Seed of the draw.
        seed: u64,
    },
}

fn read_json(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match value {
        Value::Array(items) => Ok(items),
        _ => bail!("{}: expected a JSON list of questions", path.display()),
    }
}

/// A field of question `index` of `path`, named in the error when missing.
fn field<'a>(item: &'a Value, name: &str, path: &Path, index: usize) -> anyhow::Result<&'a Value> {
    item.get(name)
        .with_context(|| format!("{}: question {index} has no {name:?}", path.display()))
}

/// Python's `str(value)` of a JSON scalar, lower-cased.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        other => other.to_string().to_lowercase(),
    }
}

/// "CLOSED" → 0, "OPEN" → 1 (case and surrounding space ignored); anything else is an error.
pub fn answer_type(text: &str) -> Option<i64> {
    match text.trim().to_lowercase().as_str() {
        "closed" => Some(0),
        "open" => Some(1),
        _ => None,
    }
}

/// The questions of a MEVF-style json list (`image_key`, `qid`, `question`, `answer`,
/// `answer_type`); `keep` filters items.
fn json_questions(
    path: &Path,
    images: &Path,
    image_key: &str,
    keep: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<RawQuestion>> {
    let mut out = Vec::new();
    for (index, item) in read_json(path)?.iter().enumerate() {
        if !keep(item) {
            continue;
        }
        let text = |name: &str| -> anyhow::Result<String> {
            field(item, name, path, index)?
                .as_str()
                .map(str::to_owned)
                .with_context(|| {
                    format!("{}: question {index}: {name:?} is not text", path.display())
                })
        };
        let qid = match field(item, "qid", path, index)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .with_context(|| {
            format!(
                "{}: question {index}: qid is not an integer",
                path.display()
            )
        })?;
        let kind = text("answer_type")?;
        let answer_type = answer_type(&kind).with_context(|| {
            format!(
                "{}: question {index} (qid {qid}): answer_type {kind:?} is neither CLOSED nor OPEN",
                path.display()
            )
        })?;
        out.push(RawQuestion {
            image: images.join(text(image_key)?),
            qid,
            question: text("question")?,
            answer: python_str(field(item, "answer", path, index)?),
            answer_type,
        });
    }
    Ok(out)
}

/// VQA-RAD: `{trainset,valset,testset}.json` and `images/`.
///
/// # Errors
/// A missing or malformed file, or a malformed question (named).
pub fn vqa_rad(input: &Path, validation: RadValidation) -> anyhow::Result<[Vec<RawQuestion>; 3]> {
    let images = input.join("images");
    let read = |name: &str| json_questions(&input.join(name), &images, "image_name", |_| true);
    let (mut train, test) = (read("trainset.json")?, read("testset.json")?);
    let val = match validation {
        RadValidation::Valset => {
            let val = read("valset.json")?;
            if val == test {
                tracing::warn!(
                    "{}: valset.json is a copy of testset.json (the MEVF release), so validation \
                     scores are test scores; --val-holdout keeps them apart",
                    input.display()
                );
            }
            val
        }
        RadValidation::Holdout { fraction, seed } => {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            let mut images: Vec<PathBuf> = Vec::new();
            for q in &train {
                if !images.contains(&q.image) {
                    images.push(q.image.clone());
                }
            }
            images.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let held: Vec<PathBuf> =
                images[..(images.len() as f64 * fraction).round() as usize].to_vec();
            let (val, rest) = train.into_iter().partition(|q| held.contains(&q.image));
            train = rest;
            val
        }
    };
    Ok([train, val, test])
}

/// SLAKE: `{train,validate,test}.json` and `imgs/`; English questions only.
///
/// # Errors
/// As [`vqa_rad`].
pub fn slake(input: &Path) -> anyhow::Result<[Vec<RawQuestion>; 3]> {
    let images = input.join("imgs");
    let english = |item: &Value| item.get("q_lang").and_then(Value::as_str) == Some("en");
    let read = |name: &str| json_questions(&input.join(name), &images, "img_name", english);
    Ok([
        read("train.json")?,
        read("validate.json")?,
        read("test.json")?,
    ])
}

/// VQA-Med-2019: `{train,val,test}/QA/{Modality,Organ,Plane}.csv` (`image_id|question|answer`)
/// and `{split}/images/{image_id}.jpg`; every question open; ids run across the splits.
///
/// # Errors
/// A missing file, or a line without three `|`-separated fields (named with its line).
pub fn vqa_med_2019(input: &Path) -> anyhow::Result<[Vec<RawQuestion>; 3]> {
    let mut next_id = 0;
    let mut splits: [Vec<RawQuestion>; 3] = Default::default();
    for (split, out) in ["train", "val", "test"].iter().zip(splits.iter_mut()) {
        for category in ["Modality", "Organ", "Plane"] {
            let path = input.join(split).join("QA").join(format!("{category}.csv"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            for (line_no, line) in text.trim().lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.split('|').collect();
                let [image, question, answer, ..] = fields[..] else {
                    bail!(
                        "{}:{}: expected image_id|question|answer, found {line:?}",
                        path.display(),
                        line_no + 1
                    );
                };
                out.push(RawQuestion {
                    image: input
                        .join(split)
                        .join("images")
                        .join(format!("{image}.jpg")),
                    qid: next_id,
                    question: question.to_owned(),
                    answer: answer.to_lowercase(),
                    answer_type: 1,
                });
                next_id += 1;
            }
        }
    }
    Ok(splits)
}
