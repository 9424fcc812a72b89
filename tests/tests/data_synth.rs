//! `arl data synth` and `arl data inspect`: the synthetic benchmark is byte-identical for a seed
//! whatever the thread count, different for another seed; its counts and splits follow the
//! scene index; paraphrases link to one HPO concept; the findings show in the pixels; it can be
//! written to an S3 server and inspected from there, with a contact sheet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arl_tests::{S3Server, release_binary, scratch_dir};
use arl_worker::data::image::decode;
use arl_worker::data::labels::Labels;
use arl_worker::data::shard::{MANIFEST_FILE, Manifest};
use arl_worker::data::stream::ShardSource;
use arl_worker::data::table::{self, ImageTextRow};

fn arl(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let out = Command::new(release_binary("arl"))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("running arl");
    assert!(
        out.status.success(),
        "arl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn synth(out: &Path, seed: u64, size: usize, threads: usize) {
    let out = out.display().to_string();
    let (seed, size, threads) = (seed.to_string(), size.to_string(), threads.to_string());
    arl(
        &[
            "data",
            "synth",
            "--output",
            &out,
            "--seed",
            &seed,
            "--size",
            &size,
            "--threads",
            &threads,
            "--image-size",
            "96",
        ],
        &[],
    );
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    out
}

fn rows(url: &str, cache: &Path) -> (Manifest, Vec<ImageTextRow>) {
    let source = ShardSource::open(url, cache, 1 << 30).unwrap();
    let mut rows = Vec::new();
    for shard in 0..source.manifest().shards.len() as u32 {
        for batch in source.shard(shard).unwrap() {
            rows.extend((0..batch.num_rows()).map(|r| table::row(&batch, r).unwrap()));
        }
    }
    (source.manifest().clone(), rows)
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_the_benchmark_is_consistent() {
    let dir = scratch_dir("synth");
    synth(&dir.join("a"), 7, 200, 1);
    synth(&dir.join("b"), 7, 200, 2);
    synth(&dir.join("c"), 8, 200, 2);
    let (a, b, c) = (
        files(&dir.join("a")),
        files(&dir.join("b")),
        files(&dir.join("c")),
    );
    let manifests = a.keys().filter(|p| p.ends_with(MANIFEST_FILE)).count();
    assert_eq!(manifests, 12, "four tasks, three splits");
    assert!(a.contains_key(Path::new("corpus.txt")) && a.contains_key(Path::new("synth.json")));
    assert!(a == b, "one thread and two write the same bytes");
    let shard = Path::new("pretrain/train/shard-00000.arrow");
    assert_ne!(a[shard], c[shard], "another seed, other scenes");

    // Splits by scene index: 160 train, 20 val, 20 test; two texts per pretraining image.
    let pretrain = |split: &str| {
        let manifest = Manifest::parse(
            &a[&Path::new("pretrain").join(split).join(MANIFEST_FILE)],
            split,
        )
        .unwrap();
        manifest
            .shards
            .iter()
            .map(|s| (s.rows, s.items))
            .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1))
    };
    assert_eq!(pretrain("train"), (160, 320));
    assert_eq!((pretrain("val"), pretrain("test")), ((20, 40), (20, 40)));

    let url = |task: &str| {
        format!(
            "file://{}",
            dir.join("a").join(task).join("train").display()
        )
    };
    // Paraphrases of cardiomegaly link to one CUI; negations are linked too (as ARL keeps them).
    let (manifest, texts) = rows(&url("pretrain"), &dir.join("cache-p"));
    let mut cardiomegaly = BTreeMap::new();
    for row in &texts {
        for (text, mentions) in row.captions.iter().zip(&row.txt_ents) {
            for &[start, end, id] in mentions {
                let surface: String = text
                    .chars()
                    .skip(start as usize)
                    .take((end - start) as usize)
                    .collect();
                let surface = surface.to_lowercase();
                if ["cardiomegaly", "enlarged heart", "increased heart size"]
                    .contains(&surface.as_str())
                {
                    cardiomegaly.insert(surface, manifest.entities[id as usize].clone());
                }
            }
        }
    }
    assert_eq!(cardiomegaly.len(), 3, "{cardiomegaly:?}");
    assert!(
        cardiomegaly.values().all(|cui| cui == "C0018800"),
        "{cardiomegaly:?}"
    );

    // Pretraining rows carry CheXpert values as MIMIC-CXR's do (ITM draws label-aware
    // negatives from them): "no finding" exactly for normal reports, pneumothorax exactly
    // where the findings report one.
    for row in &texts {
        let Labels::Chexpert(values) = &row.labels else {
            panic!("{:?}", row.labels)
        };
        assert_eq!(values.len(), 14);
        let (findings, impression) = (&row.captions[0], &row.captions[1]);
        let normal = [
            "No acute cardiopulmonary process.",
            "Normal chest radiograph.",
            "No acute findings in the chest.",
        ]
        .contains(&impression.as_str());
        assert_eq!(values[8] == 1, normal, "{row:?}");
        let findings_positive = values.iter().sum::<i64>() - values[8];
        assert_eq!(values[8] == 1, findings_positive == 0, "{values:?}");
        let pneumothorax =
            findings.contains("pneumothorax") && !findings.contains("No pneumothorax");
        assert_eq!(values[12] == 1, pneumothorax, "{findings}");
    }

    // The findings show in the pixels: effusions brighten the image; a pneumothorax leaves
    // air darker than any lung inside the chest.
    let (cls, labelled) = rows(&url("cls"), &dir.join("cache-c"));
    let class = |name: &str| cls.label_names.iter().position(|n| n == name).unwrap() as i64;
    let average = |wanted: i64, measure: &dyn Fn(&[u8], u32) -> f64| {
        let values: Vec<f64> = labelled
            .iter()
            .filter(|r| r.labels == Labels::Class(vec![wanted]))
            .map(|r| {
                let rgb = decode(&r.image).unwrap();
                measure(&rgb.pixels, rgb.width)
            })
            .collect();
        assert!(values.len() >= 5, "too few images of class {wanted}");
        values.iter().sum::<f64>() / values.len() as f64
    };
    let mean = |pixels: &[u8], _: u32| {
        pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / pixels.len() as f64
    };
    let dark = |pixels: &[u8], side: u32| {
        let (lo, hi) = (side / 5, side * 4 / 5);
        let central: Vec<u8> = (side / 5..side * 3 / 5)
            .flat_map(|y| (lo..hi).map(move |x| pixels[((y * side + x) * 3) as usize]))
            .collect();
        central.iter().filter(|&&v| v < 20).count() as f64 / central.len() as f64
    };
    let normal = class("normal");
    assert!(average(class("pleural effusion"), &mean) > average(normal, &mean) + 1.0);
    let (ptx, none) = (
        average(class("pneumothorax"), &dark),
        average(normal, &dark),
    );
    assert!(ptx > 0.02 && none < 0.005, "dark fraction {ptx} vs {none}");

    // VQA: answers are labels of the vocabulary, closed ones yes/no.
    let (vqa, questions) = rows(&url("vqa"), &dir.join("cache-v"));
    for row in &questions {
        let Labels::Vqa(answers) = &row.labels else {
            panic!("{row:?}")
        };
        assert_eq!(answers.len(), row.captions.len());
        for answer in answers {
            assert_eq!(
                vqa.label_names[answer.labels[0] as usize],
                answer.answers[0]
            );
            if answer.answer_type == 0 {
                assert!(["yes", "no"].contains(&answer.answers[0].as_str()));
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn synth_writes_to_s3_and_inspect_reads_it_back_with_a_contact_sheet() {
    let dir = scratch_dir("synth-s3");
    let server = S3Server::start(&["bench"]);
    let env = server.env();
    arl(
        &[
            "data",
            "synth",
            "--output",
            "s3://bench/synth",
            "--size",
            "12",
            "--image-size",
            "64",
        ],
        &env,
    );
    let sheet = dir.join("sheet.png");
    let sheet_arg = sheet.display().to_string();
    let out = arl(
        &[
            "data",
            "inspect",
            "s3://bench/synth/vqa/train",
            "--samples",
            "2",
            "--images",
            "6",
            "--sheet",
            &sheet_arg,
        ],
        &env,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kind Vqa, text column \"questions\""),
        "{stdout}"
    );
    assert!(stdout.contains("synth-000000.png (train"), "{stdout}");
    assert!(stdout.contains("(closed)"), "{stdout}");
    let picture = decode(&std::fs::read(&sheet).unwrap()).unwrap();
    assert_eq!(picture.width, 4 * 192, "four images a row");
    assert!(picture.pixels.contains(&255), "captions drawn in white");
    std::fs::remove_dir_all(dir).unwrap();
}
