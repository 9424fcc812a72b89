//! `arl data synth`: the synthetic chest-radiograph benchmark the embedded default trains on.
//! Each scene (anatomy and findings, [`scene`]) is rendered as an image ([`render`]), described
//! by a report ([`report`]) and asked about ([`tasks`]); the texts are linked to HPO concepts,
//! and four datasets are written, each split into `train`, `val` and `test` sharded datasets:
//! `pretrain` (findings and impression), `vqa`, `cls` (indication line, primary finding) and
//! `irtr` (the whole report, for retrieval), plus `corpus.txt` (the pretraining texts of the
//! train split, for the knowledge build) and `synth.json`. Scene `i` depends only on the seed
//! and `i`, so the output is byte-identical for a seed whatever the thread count.

pub mod render;
pub mod report;
pub mod scene;
pub mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::Path;

use anyhow::Context;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::annotate::{EntityTable, Numbering, RowEntities};
use crate::data::labels::{Labels, VqaLabel};
use crate::data::shard::ShardWriter;
use crate::data::table::ImageTextRow;
use crate::knowledge::linker::Linker;
use report::Report;
use scene::{FINDINGS, Scene};
use tasks::Question;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Scenes (images).
    pub scenes: usize,
    /// Image side in pixels.
    pub image_size: u32,
    /// Image bytes per shard, MiB.
    pub shard_mb: usize,
    /// Rendering threads.
    pub threads: usize,
}

/// One rendered scene.
struct SceneOut {
    png: Vec<u8>,
    report: Report,
    questions: Vec<Question>,
    class: usize,
    /// The scene's CheXpert values (the pretraining rows' labels, as MIMIC-CXR's).
    chexpert: Vec<i64>,
    indication: String,
}

/// The split of scene `i`: one in ten each for val and test.
pub fn split_of(i: usize) -> &'static str {
    match i % 10 {
        8 => "val",
        9 => "test",
        _ => "train",
    }
}

/// The datasets and their splits.
const TASKS: [&str; 4] = ["pretrain", "vqa", "cls", "irtr"];
const SPLITS: [&str; 3] = ["train", "val", "test"];

fn make_scene(cfg: &SynthConfig, i: usize) -> anyhow::Result<SceneOut> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(i as u64);
    let scene = Scene::draw(&mut rng);
    let report = Report::write(&scene, &mut rng);
    let questions = tasks::questions(&scene, &mut rng);
    let indication = tasks::indication(&mut rng);
    let pixels = render::render(&scene, cfg.image_size, &mut rng);
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(Cursor::new(&mut png)),
        &pixels,
        cfg.image_size,
        cfg.image_size,
        image::ExtendedColorType::L8,
    )
    .context("encoding a PNG")?;
    Ok(SceneOut {
        png,
        report,
        questions,
        class: scene.primary(),
        chexpert: scene.chexpert(),
        indication,
    })
}

/// Renders every scene on `cfg.threads` threads, in scene order.
fn make_scenes(
    cfg: &SynthConfig,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<SceneOut>> {
    let threads = cfg.threads.max(1);
    let parts: Vec<anyhow::Result<Vec<(usize, SceneOut)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..cfg.scenes)
                        .step_by(threads)
                        .map(|i| {
                            let out = make_scene(cfg, i).map(|s| (i, s));
                            progress.inc(1);
                            out
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a render thread panicked")))
            })
            .collect()
    });
    let mut scenes: Vec<(usize, SceneOut)> = Vec::with_capacity(cfg.scenes);
    for part in parts {
        scenes.extend(part?);
    }
    scenes.sort_by_key(|(i, _)| *i);
    Ok(scenes.into_iter().map(|(_, s)| s).collect())
}

/// Rows per dataset of one scene.
fn rows(
    i: usize,
    s: &SceneOut,
    entities: &mut EntityTable,
    linker: &Linker,
    answers: &mut Numbering,
) -> [(usize, ImageTextRow); 4] {
    let split = split_of(i).to_owned();
    let image_id = format!("synth-{i:06}.png");
    let row = |texts: Vec<String>, found: RowEntities, labels: Labels| ImageTextRow {
        image: s.png.clone(),
        captions: texts,
        image_id: image_id.clone(),
        img_ents: found.img_ents,
        txt_ents: found.txt_ents,
        split: split.clone(),
        labels,
    };
    let sections = vec![s.report.findings.clone(), s.report.impression.clone()];
    let questions: Vec<String> = s.questions.iter().map(|q| q.text.clone()).collect();
    let vqa = s
        .questions
        .iter()
        .enumerate()
        .map(|(k, q)| VqaLabel {
            answers: vec![q.answer.clone()],
            labels: vec![answers.id(&q.answer)],
            scores: vec![1.0],
            question_id: (i * 100 + k) as i64,
            answer_type: q.answer_type,
        })
        .collect();
    let whole = vec![format!("{} {}", s.report.findings, s.report.impression)];
    let indication = vec![s.indication.clone()];
    [
        (
            0,
            row(
                sections.clone(),
                entities.annotate(linker, &sections),
                Labels::Chexpert(s.chexpert.clone()),
            ),
        ),
        (
            1,
            row(
                questions.clone(),
                entities.annotate(linker, &questions),
                Labels::Vqa(vqa),
            ),
        ),
        (
            2,
            row(
                indication.clone(),
                entities.annotate(linker, &indication),
                Labels::Class(vec![s.class as i64]),
            ),
        ),
        (
            3,
            row(
                whole.clone(),
                entities.annotate(linker, &whole),
                Labels::None,
            ),
        ),
    ]
}

/// Generates the benchmark into the local folder `out`; returns the summary also written to
/// `out/synth.json`.
///
/// # Errors
/// A file cannot be written.
pub fn generate(
    cfg: &SynthConfig,
    linker: &Linker,
    out: &Path,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(cfg.scenes > 0, "--size must be at least 1");
    anyhow::ensure!(cfg.image_size >= 32, "--image-size must be at least 32");
    let progress = indicatif::ProgressBar::new(cfg.scenes as u64).with_style(
        indicatif::ProgressStyle::with_template("synth {bar:30} {pos}/{len} scenes {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let scenes = make_scenes(cfg, &progress)?;
    progress.finish_and_clear();
    let mut writers: HashMap<(usize, &str), ShardWriter> = HashMap::new();
    for (t, task) in TASKS.iter().enumerate() {
        for split in SPLITS {
            let writer = ShardWriter::new(&out.join(task).join(split), cfg.shard_mb << 20)?;
            writers.insert((t, split), writer);
        }
    }
    let (mut entities, mut answers) = (EntityTable::default(), Numbering::default());
    let mut corpus = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, scene) in scenes.iter().enumerate() {
        let split = split_of(i);
        if split == "train" {
            corpus.push_str(&format!(
                "{}\n{}\n",
                scene.report.findings, scene.report.impression
            ));
        }
        for (t, row) in rows(i, scene, &mut entities, linker, &mut answers) {
            *counts.entry(format!("{}/{split}", TASKS[t])).or_default() += row.captions.len();
            writers
                .get_mut(&(t, split))
                .context("a writer per task and split")?
                .push(row)?;
        }
    }
    let classes: Vec<String> = FINDINGS.iter().map(|f| (*f).to_owned()).collect();
    for ((t, _), writer) in writers {
        let labels = match TASKS[t] {
            "vqa" => answers.names().to_vec(),
            "cls" => classes.clone(),
            _ => Vec::new(),
        };
        writer.finish_with(entities.cuis().to_vec(), labels)?;
    }
    std::fs::write(out.join("corpus.txt"), corpus).context("writing corpus.txt")?;
    let summary = serde_json::json!({
        "seed": cfg.seed,
        "scenes": cfg.scenes,
        "image_size": cfg.image_size,
        "items": counts,
        "entities": entities.cuis(),
        "answers": answers.names().len(),
        "classes": classes,
    });
    std::fs::write(out.join("synth.json"), serde_json::to_vec_pretty(&summary)?)
        .context("writing synth.json")?;
    Ok(summary)
}
