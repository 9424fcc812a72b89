//! ROCO (radiology subset, official splits) with MedICaT's inline references, the ROCO
//! retrieval subsets, and MedICaT's radiology figures (ARL_SPEC.md §4.2-4.3), in their released
//! layouts: `roco/{train,val,test}/radiology/{images/, captions.txt, dlinks.txt}` (ROCO's own
//! `validation` folder is accepted as well), and MedICaT's `release/` and `net/.../roco_files/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use super::clean_text;
use super::python_random::PythonRandom;

/// An image with its texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Split index (0 train, 1 val, 2 test).
    pub split: usize,
    /// The image file.
    pub image: PathBuf,
    /// Its texts.
    pub texts: Vec<String>,
}

/// Lines left out, by reason.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Skipped {
    /// `captions.txt` lines without exactly one tab.
    pub malformed_caption_lines: usize,
    /// Texts under three words.
    pub short_texts: usize,
    /// MedICaT references to a ROCO image that `dlinks.txt` does not list.
    pub unknown_roco_ids: usize,
}

const SPLITS: [&str; 3] = ["train", "val", "test"];

/// `roco/{split}/radiology`, `val` also found as `validation`.
fn radiology(input: &Path, split: &str) -> anyhow::Result<PathBuf> {
    let names: &[&str] = if split == "val" {
        &["val", "validation"]
    } else {
        &[split]
    };
    names
        .iter()
        .map(|name| input.join(name).join("radiology"))
        .find(|p| p.is_dir())
        .with_context(|| format!("{}: no {split}/radiology folder", input.display()))
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Cleans `texts`, counting the short ones.
fn keep_texts(texts: impl IntoIterator<Item = String>, skipped: &mut Skipped) -> Vec<String> {
    texts
        .into_iter()
        .filter_map(|t| {
            let kept = clean_text(&t);
            skipped.short_texts += usize::from(kept.is_none());
            kept
        })
        .collect()
}

/// `(ROCO id, caption)` of the well-formed lines of a `captions.txt`.
fn captions(path: &Path, skipped: &mut Skipped) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in read_lines(path)? {
        match line.trim().split('\t').collect::<Vec<_>>()[..] {
            [id, caption] => out.push((id.to_owned(), caption.to_owned())),
            _ => skipped.malformed_caption_lines += usize::from(!line.trim().is_empty()),
        }
    }
    Ok(out)
}

/// MedICaT's id of each ROCO image, from the `dlinks.txt` of every split: the PMC archive's
/// name (third word of the download command) and the figure file.
fn medicat_ids(input: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut ids = HashMap::new();
    for split in SPLITS {
        let path = radiology(input, split)?.join("dlinks.txt");
        for (n, line) in read_lines(&path)?.iter().enumerate() {
            let fields: Vec<&str> = line.trim().split('\t').collect();
            let archive = fields
                .get(1)
                .and_then(|command| command.split(' ').nth(2))
                .and_then(|url| url.rsplit('/').next())
                .and_then(|file| file.split('.').next());
            let (Some(archive), true) = (archive, fields.len() >= 3) else {
                bail!(
                    "{}:{}: expected ROCO_ID<TAB>download command<TAB>figure",
                    path.display(),
                    n + 1
                );
            };
            ids.insert(
                format!("{archive}_{}", fields[fields.len() - 1]),
                fields[0].to_owned(),
            );
        }
    }
    Ok(ids)
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1))
        })
        .collect()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// ROCO's radiology pairs: per split, MedICaT's inline references of its images (when
/// `medicat` is given) and the captions; the texts of one image are merged later.
///
/// # Errors
/// A missing folder or file, or a malformed `dlinks.txt` or JSON line (named).
pub fn roco(input: &Path, medicat: Option<&Path>) -> anyhow::Result<(Vec<Pair>, Skipped)> {
    let mut skipped = Skipped::default();
    let mut pairs = Vec::new();
    let ids = medicat.map(|_| medicat_ids(input)).transpose()?;
    for (split, name) in SPLITS.iter().enumerate() {
        let folder = radiology(input, name)?;
        if let (Some(medicat), Some(ids)) = (medicat, &ids) {
            let path = medicat
                .join("net/nfs2.corp/allennlp/sanjays/roco_files")
                .join(format!("roco_{name}_references.jsonl"));
            for item in read_jsonl(&path)? {
                let key = item
                    .get("roco_image_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(roco_id) = ids.get(key) else {
                    skipped.unknown_roco_ids += 1;
                    continue;
                };
                let texts = keep_texts(strings(item.get("gorc_references")), &mut skipped);
                if !texts.is_empty() {
                    let image = folder.join("images").join(format!("{roco_id}.jpg"));
                    pairs.push(Pair {
                        split,
                        image,
                        texts,
                    });
                }
            }
        }
        for (id, caption) in captions(&folder.join("captions.txt"), &mut skipped)? {
            let texts = keep_texts([caption], &mut skipped);
            if !texts.is_empty() {
                let image = folder.join("images").join(format!("{id}.jpg"));
                pairs.push(Pair {
                    split,
                    image,
                    texts,
                });
            }
        }
    }
    Ok((pairs, skipped))
}

/// The ROCO retrieval subsets: `random.seed(42)` once, each split's caption lines shuffled in
/// turn, the valid ones kept; all of train, the first 2,000 of val and of test.
///
/// # Errors
/// A missing folder or file (named).
pub fn roco_retrieval(input: &Path) -> anyhow::Result<(Vec<Pair>, Skipped)> {
    let mut random = PythonRandom::new(42);
    let mut skipped = Skipped::default();
    let mut pairs = Vec::new();
    for (split, name) in SPLITS.iter().enumerate() {
        let folder = radiology(input, name)?;
        let path = folder.join("captions.txt");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut lines: Vec<&str> = text.trim().split('\n').collect();
        random.shuffle(&mut lines);
        let mut kept = 0;
        for line in lines {
            let [id, caption] = line.trim().split('\t').collect::<Vec<_>>()[..] else {
                skipped.malformed_caption_lines += 1;
                continue;
            };
            let texts = keep_texts([caption.to_owned()], &mut skipped);
            if texts.is_empty() {
                continue;
            }
            pairs.push(Pair {
                split,
                image: folder.join("images").join(format!("{id}.jpg")),
                texts,
            });
            kept += 1;
            if split > 0 && kept == 2000 {
                break;
            }
        }
    }
    Ok((pairs, skipped))
}

/// Python's `items[start:end]` with negative bounds from the end, clamped.
fn python_slice<T: Clone>(items: &[T], start: i64, end: Option<i64>) -> Vec<T> {
    let n = items.len() as i64;
    let at = |i: i64| if i < 0 { (n + i).max(0) } else { i.min(n) } as usize;
    let (s, e) = (at(start), end.map_or(n as usize, at));
    if s < e {
        items[s..e].to_vec()
    } else {
        Vec::new()
    }
}

/// MedICaT's radiology figures outside ROCO: `random.seed(42)`, the record indices shuffled,
/// the last 2,000 split into val (first 1,000) and test, the rest train; texts are the caption
/// and the inline references; images `release/figures/{pdf_hash}_{fig_uri}`.
///
/// # Errors
/// A missing file or malformed JSON line (named).
pub fn medicat(input: &Path) -> anyhow::Result<(Vec<Pair>, Skipped)> {
    let path = input.join("release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl");
    let records: Vec<Value> = read_jsonl(&path)?
        .into_iter()
        .filter(|r| r.get("radiology").and_then(Value::as_bool) == Some(true))
        .collect();
    let mut indices: Vec<usize> = (0..records.len()).collect();
    PythonRandom::new(42).shuffle(&mut indices);
    let splits = [
        python_slice(&indices, 0, Some(-2000)),
        python_slice(&indices, -2000, Some(-1000)),
        python_slice(&indices, -1000, None),
    ];
    let mut skipped = Skipped::default();
    let mut pairs = Vec::new();
    for (split, chosen) in splits.iter().enumerate() {
        for &i in chosen {
            let record = &records[i];
            let mut texts = Vec::new();
            if let Some(caption) = record
                .get("s2_caption")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
            {
                texts.push(caption.to_owned());
            }
            texts.extend(strings(record.get("s2orc_references")));
            let texts = keep_texts(texts, &mut skipped);
            let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or_default();
            if !texts.is_empty() {
                let image = input.join("release/figures").join(format!(
                    "{}_{}",
                    field("pdf_hash"),
                    field("fig_uri")
                ));
                pairs.push(Pair {
                    split,
                    image,
                    texts,
                });
            }
        }
    }
    Ok((pairs, skipped))
}
