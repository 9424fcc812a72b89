//! The shard format against files that ARL's own make_arrow.py writes (pandas + pyarrow, by
//! scripts/fixtures/arl_arrow.py): they read as a dataset without conversion.

use arl_tests::arl_arrow_fixtures;
use arl_worker::data::labels::{Labels, TableKind, VqaLabel};
use arl_worker::data::shard::{Manifest, verify_and_decode};
use arl_worker::data::table::{self, ImageTextRow};

#[derive(serde::Deserialize)]
struct Expected {
    rows: Vec<ExpectedRow>,
    vqa: Vec<ExpectedVqaRow>,
}

#[derive(serde::Deserialize)]
struct ExpectedVqaRow {
    image: String,
    questions: Vec<String>,
    answers: Vec<Vec<String>>,
    answer_labels: Vec<Vec<i64>>,
    answer_scores: Vec<Vec<f64>>,
    image_id: String,
    question_id: Vec<i64>,
    answer_type: Vec<i64>,
    img_ents: Vec<i64>,
    txt_ents: Vec<Vec<[i64; 3]>>,
    split: String,
}

#[derive(serde::Deserialize)]
struct ExpectedRow {
    image: String,
    caption: Vec<String>,
    image_id: String,
    img_ents: Vec<i64>,
    txt_ents: Vec<Vec<[i64; 3]>>,
    split: String,
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn an_arl_arrow_file_is_a_one_shard_dataset() {
    let dir = arl_arrow_fixtures();
    let bytes = std::fs::read(dir.join("roco_train.arrow")).unwrap();
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let manifest = Manifest::for_arrow_file("roco_train.arrow", &bytes).unwrap();
    assert_eq!(manifest.kind, TableKind::ImageText);
    let shard = &manifest.shards[0];
    assert_eq!((shard.rows, shard.items), (3, 6));
    assert!(
        manifest.columns.contains(&"image_id: LargeUtf8".to_owned()),
        "{:?}",
        manifest.columns
    );
    let batches = verify_and_decode(shard, &bytes).unwrap();
    let rows: Vec<ImageTextRow> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| table::row(b, r).unwrap()))
        .collect();
    let wanted: Vec<ImageTextRow> = expected
        .rows
        .into_iter()
        .map(|r| ImageTextRow {
            image: unhex(&r.image),
            captions: r.caption,
            image_id: r.image_id,
            img_ents: r.img_ents,
            txt_ents: r.txt_ents,
            split: r.split,
            labels: Labels::None,
        })
        .collect();
    assert_eq!(rows, wanted);
    let error = Manifest::for_arrow_file("roco_train.arrow", &bytes[..100]).unwrap_err();
    assert!(
        format!("{error:#}").starts_with("reading roco_train.arrow: "),
        "{error:#}"
    );

    // ARL's VQA table: the questions are the items, the answers the labels.
    let bytes = std::fs::read(dir.join("vqa_rad_train.arrow")).unwrap();
    let manifest = Manifest::for_arrow_file("vqa_rad_train.arrow", &bytes).unwrap();
    assert_eq!(
        (manifest.kind, manifest.text_column.as_str()),
        (TableKind::Vqa, "questions")
    );
    assert_eq!((manifest.shards[0].rows, manifest.shards[0].items), (2, 3));
    let batches = verify_and_decode(&manifest.shards[0], &bytes).unwrap();
    let rows: Vec<ImageTextRow> = (0..2)
        .map(|r| table::row(&batches[0], r).unwrap())
        .collect();
    let wanted: Vec<ImageTextRow> = expected
        .vqa
        .into_iter()
        .map(|r| ImageTextRow {
            image: unhex(&r.image),
            labels: Labels::Vqa(
                (0..r.questions.len())
                    .map(|q| VqaLabel {
                        answers: r.answers[q].clone(),
                        labels: r.answer_labels[q].clone(),
                        scores: r.answer_scores[q].clone(),
                        question_id: r.question_id[q],
                        answer_type: r.answer_type[q],
                    })
                    .collect(),
            ),
            captions: r.questions,
            image_id: r.image_id,
            img_ents: r.img_ents,
            txt_ents: r.txt_ents,
            split: r.split,
        })
        .collect();
    assert_eq!(rows, wanted);
}
