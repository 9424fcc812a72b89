//! Ranges and counts from untrusted files: a sample's text, mentions, entity ids and labels
//! are checked against the job before they reach the model, each failure naming the sample;
//! a shard index's counts and sizes are checked against the files before anything is sized
//! from them.

use std::sync::Arc;

use arl_tests::{grey_png, pretrain_inputs, scratch_dir, write_dataset_with};
use arl_worker::data::labels::{Labels, VqaLabel};
use arl_worker::data::loader::{LoaderConfig, Transform};
use arl_worker::data::sample_check::{LabelRange, SampleCheck};
use arl_worker::data::sampler::SampleRef;
use arl_worker::data::shard::{MANIFEST_FILE, Manifest, ShardWriter};
use arl_worker::data::stream::{Sample, ShardSource};
use arl_worker::data::table::ImageTextRow;
use arl_worker::data::text::TextTokenizer;
use arl_worker::data_check;

const TEXT: &str = "Small left pleural effusion.";

fn checks(labels: LabelRange) -> SampleCheck {
    let tokenizer =
        TextTokenizer::from_file(&pretrain_inputs().join("tokenizer.json"), 32).unwrap();
    SampleCheck {
        tokenizer,
        positions: 40,
        entity_ids: 5,
        labels,
    }
}

fn sample(labels: Labels, txt_ents: Vec<[i64; 3]>, img_ents: Vec<i64>) -> Sample {
    Sample {
        at: SampleRef { shard: 0, item: 0 },
        row: ImageTextRow {
            captions: vec![TEXT.to_owned()],
            image_id: "1.png".into(),
            img_ents,
            txt_ents: vec![txt_ents],
            labels,
            ..ImageTextRow::default()
        },
        text: 0,
        row_in_shard: 0,
    }
}

fn vqa(labels: Vec<i64>, scores: Vec<f64>) -> Labels {
    Labels::Vqa(vec![VqaLabel {
        answers: vec!["yes".into(); labels.len()],
        labels,
        scores,
        question_id: 1,
        answer_type: 0,
    }])
}

/// The loader settings of a check: 32-px crops, strict, with `check`.
fn loader(check: Option<SampleCheck>) -> LoaderConfig {
    LoaderConfig {
        threads: 2,
        queue_depth: 1,
        transform: Transform::Clip { size: 32 },
        max_bad_fraction: 0.0,
        seed: 0,
        first_step: 0,
        dicom: Default::default(),
        check: check.map(Arc::new),
    }
}

/// The check's error for `sample`, or "ok".
fn verdict(check: &SampleCheck, sample: &Sample) -> String {
    check
        .check(sample)
        .map_or_else(|e| format!("{e:#}"), |()| "ok".to_owned())
}

#[test]
fn texts_entities_and_labels_out_of_range_are_each_named() {
    let pretraining = checks(LabelRange::Unused);
    let mention = [6, 10, 2];
    assert_eq!(
        verdict(
            &pretraining,
            &sample(Labels::None, vec![mention], vec![0, 4])
        ),
        "ok"
    );
    for (txt, img, expected) in [
        (
            vec![[6, 10, 5]],
            vec![],
            "entity id 5 of a mention is outside the 5 entity ids",
        ),
        (
            vec![[6, 10, -1]],
            vec![],
            "entity id -1 of a mention is outside the 5 entity ids",
        ),
        (
            vec![],
            vec![9],
            "entity id 9 of the image is outside the 5 entity ids",
        ),
        (
            vec![[20, 40, 1]],
            vec![],
            "mention [20, 40) lies outside its text of 28 characters",
        ),
        (
            vec![[7, 3, 1]],
            vec![],
            "mention [7, 3) lies outside its text of 28 characters",
        ),
    ] {
        assert_eq!(
            verdict(&pretraining, &sample(Labels::None, txt, img)),
            expected
        );
    }
    let mut no_text = sample(Labels::None, vec![], vec![]);
    no_text.text = 3;
    assert_eq!(verdict(&pretraining, &no_text), "no text 3 (the row has 1)");

    let classes = checks(LabelRange::Classes(8));
    assert_eq!(
        verdict(&classes, &sample(Labels::Class(vec![7]), vec![], vec![])),
        "ok"
    );
    assert_eq!(
        verdict(&classes, &sample(Labels::Class(vec![8]), vec![], vec![])),
        "class id 8 is outside the 8 classes"
    );
    assert!(verdict(&classes, &sample(Labels::None, vec![], vec![])).contains("reads Classes(8)"));

    let answers = checks(LabelRange::Answers(3));
    assert_eq!(
        verdict(&answers, &sample(vqa(vec![2], vec![1.0]), vec![], vec![])),
        "ok"
    );
    for (labels, scores, expected) in [
        (vec![3], vec![1.0], "answer id 3 is outside the 3 answers"),
        (vec![1, 2], vec![1.0], "2 answer ids but 1 scores"),
        (vec![1], vec![f64::NAN], "answer 1 has score NaN"),
    ] {
        assert_eq!(
            verdict(&answers, &sample(vqa(labels, scores), vec![], vec![])),
            expected
        );
    }

    let short = SampleCheck {
        positions: 16,
        ..checks(LabelRange::Unused)
    };
    assert_eq!(
        verdict(&short, &sample(Labels::None, vec![], vec![])),
        "32 tokens, more than the model's 16 positions"
    );
}

#[test]
fn data_check_names_the_rows_whose_ids_are_out_of_range() {
    let dir = scratch_dir("sample-checks-dataset");
    let data = dir.join("dataset");
    let mut writer = ShardWriter::new(&data, 1000).unwrap();
    for i in 0..12u8 {
        writer
            .push(ImageTextRow {
                image: grey_png(40, 30, i),
                captions: vec![TEXT.to_owned()],
                image_id: format!("{i}.png"),
                img_ents: vec![if i == 5 { 77 } else { 1 }],
                txt_ents: vec![vec![[6, 10, 2]]],
                labels: Labels::Class(vec![if i == 9 { 8 } else { i64::from(i % 8) }]),
                ..ImageTextRow::default()
            })
            .unwrap();
    }
    writer.finish().unwrap();
    let source = ShardSource::open(&data.to_string_lossy(), &dir.join("cache"), 1 << 30).unwrap();
    let cfg = loader(Some(checks(LabelRange::Classes(8))));
    let report = data_check::check(&source, &cfg, &indicatif::ProgressBar::hidden()).unwrap();
    let reasons: Vec<&str> = report.bad.iter().map(|b| b.reason.as_str()).collect();
    assert_eq!(report.samples, 12);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0]
            .ends_with("(image \"5.png\"): entity id 77 of the image is outside the 5 entity ids"),
        "{reasons:?}"
    );
    assert!(reasons[0].starts_with("shard shard-"), "{reasons:?}");
    assert!(
        reasons[1].ends_with("(image \"9.png\"): class id 8 is outside the 8 classes"),
        "{reasons:?}"
    );
    assert!(
        report
            .summary(0.0)
            .contains("12 samples, 2 bad (16.67 %): more than")
    );
}

#[test]
fn forged_shard_counts_and_sizes_are_refused_before_anything_is_sized_from_them() {
    let dir = scratch_dir("sample-checks-forged");
    let data = dir.join("dataset");
    write_dataset_with(&data, 1000, |i| vec![i; 180]);
    let text = std::fs::read(data.join(MANIFEST_FILE)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let forge = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut forged = manifest.clone();
        edit(&mut forged);
        serde_json::to_vec(&forged).unwrap()
    };
    let refused =
        |bytes: Vec<u8>| format!("{:#}", Manifest::parse(&bytes, "index.json").unwrap_err());
    let error = refused(forge(&|m| {
        m["shards"][0]["items"] = 4_000_000_000u32.into()
    }));
    assert!(
        error.contains("claims") && error.contains("4000000000 items"),
        "{error}"
    );
    let error = refused(forge(&|m| {
        m["shards"][1]["name"] = "../../etc/passwd".into()
    }));
    assert!(error.contains("is not a plain file name"), "{error}");
    let error = refused(forge(&|m| {
        m["shards"][1]["name"] = m["shards"][0]["name"].clone();
    }));
    assert!(error.contains("is listed twice"), "{error}");

    // A size that the object does not have: refused at open, naming the shard.
    std::fs::write(
        data.join(MANIFEST_FILE),
        forge(&|m| m["shards"][2]["bytes"] = 999_999.into()),
    )
    .unwrap();
    let error = ShardSource::open(&data.to_string_lossy(), &dir.join("c1"), 1 << 30)
        .err()
        .unwrap();
    assert!(
        format!("{error:#}").contains("shard-00002.arrow has")
            && format!("{error:#}").contains("the manifest says 999999"),
        "{error:#}"
    );

    // Counts the file does not hold (within what its size allows): its samples are bad, named.
    std::fs::write(
        data.join(MANIFEST_FILE),
        forge(&|m| m["shards"][0]["items"] = 2.into()),
    )
    .unwrap();
    let source = ShardSource::open(&data.to_string_lossy(), &dir.join("c2"), 1 << 30).unwrap();
    let cfg = loader(None);
    let report = data_check::check(&source, &cfg, &indicatif::ProgressBar::hidden()).unwrap();
    let first: Vec<&str> = report
        .bad
        .iter()
        .filter(|b| b.at.shard == 0)
        .map(|b| b.reason.as_str())
        .collect();
    assert_eq!(first.len(), 2);
    assert!(
        first[0].contains("shard-00000.arrow") && first[0].contains("the manifest says"),
        "{first:?}"
    );
}
