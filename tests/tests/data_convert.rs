//! `arl data convert` on small files written here in each dataset's released layout: VQA-RAD
//! (MEVF json), SLAKE, VQA-Med-2019 and MELINDA. Rows per split and image, answers normalised
//! into a first-seen vocabulary, ids, linked entities, missing images skipped and counted,
//! malformed input named.

use std::path::{Path, PathBuf};
use std::process::Command;

use arl_tests::{
    dicom_fixtures, python_random_fixtures, release_binary, scratch_dir, workspace_root,
};
use arl_worker::convert::python_random::PythonRandom;
use arl_worker::convert::{self, ConvertOptions, Dataset, vqa::RadValidation};
use arl_worker::data::labels::{Labels, TableKind};
use arl_worker::data::stream::ShardSource;
use arl_worker::data::table::{self, ImageTextRow};
use arl_worker::knowledge::linker::Linker;
use serde_json::json;

/// A small real PNG (a grey gradient), different per `seed`.
fn png(seed: u8) -> Vec<u8> {
    let pixels: Vec<u8> = (0..64u32 * 64).map(|i| (i % 251) as u8 ^ seed).collect();
    let mut out = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut out),
        &pixels,
        64,
        64,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    out
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn hpo_linker() -> Linker {
    Linker::from_obo_file(&workspace_root().join("data/hpo/hp.obo")).unwrap()
}

fn options() -> ConvertOptions {
    ConvertOptions {
        rad_validation: RadValidation::Valset,
        melinda_label: "p_meth_label".into(),
        shard_mb: 1,
        medicat: None,
    }
}

/// Every row of `dir/split`.
fn rows(dir: &Path, split: &str) -> (arl_worker::data::shard::Manifest, Vec<ImageTextRow>) {
    let url = format!("file://{}", dir.join(split).display());
    let source = ShardSource::open(&url, &dir.join(format!("cache-{split}")), 1 << 30).unwrap();
    let mut out = Vec::new();
    for shard in 0..source.manifest().shards.len() as u32 {
        for batch in source.shard(shard).unwrap() {
            out.extend((0..batch.num_rows()).map(|r| table::row(&batch, r).unwrap()));
        }
    }
    (source.manifest().clone(), out)
}

fn answers(row: &ImageTextRow) -> Vec<(String, i64, i64, i64)> {
    let Labels::Vqa(questions) = &row.labels else {
        panic!("not a VQA row: {row:?}")
    };
    questions
        .iter()
        .map(|q| {
            (
                q.answers[0].clone(),
                q.labels[0],
                q.question_id,
                q.answer_type,
            )
        })
        .collect()
}

fn vqa_rad(dir: &Path) -> PathBuf {
    let input = dir.join("vqa_rad");
    for (name, seed) in [("synpic1.jpg", 1), ("synpic2.jpg", 2), ("synpic3.jpg", 3)] {
        write(&input.join("images").join(name), png(seed));
    }
    let q = |image: &str, qid: i64, question: &str, answer: serde_json::Value, kind: &str| {
        json!({"image_name": image, "qid": qid, "question": question, "answer": answer,
               "answer_type": kind, "question_type": "PRES", "phrase_type": "freeform"})
    };
    let train = json!([
        q(
            "synpic1.jpg",
            1,
            "Is there a pleural effusion?",
            json!("Yes"),
            "CLOSED"
        ),
        q(
            "synpic1.jpg",
            2,
            "Which lung is affected?",
            json!("The left lung."),
            "OPEN"
        ),
        q("synpic2.jpg", 3, "How many nodules?", json!(2), "OPEN "),
        q("synpic9.jpg", 4, "Is this missing?", json!("no"), "CLOSED"),
    ]);
    let test = json!([
        q(
            "synpic1.jpg",
            10,
            "Is the heart enlarged?",
            json!("no"),
            "closed"
        ),
        q(
            "synpic3.jpg",
            11,
            "What modality is this?",
            json!("X-ray"),
            "OPEN"
        ),
    ]);
    write(&input.join("trainset.json"), train.to_string());
    write(&input.join("testset.json"), test.to_string());
    write(&input.join("valset.json"), test.to_string());
    input
}

#[test]
fn vqa_rad_converts_per_split_with_a_first_seen_answer_vocabulary() {
    let dir = scratch_dir("convert-rad");
    let input = vqa_rad(&dir);
    let out = dir.join("out");
    let result = Command::new(release_binary("arl"))
        .args(["data", "convert", "--dataset", "vqa-rad", "--input"])
        .arg(&input)
        .args(["--output", &out.display().to_string()])
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["missing_images"], 1, "{summary}");
    assert_eq!(summary["rows"], json!({"train": 2, "val": 2, "test": 2}));
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("valset.json is a copy of testset.json"),
        "the MEVF convention is said out loud"
    );

    let (manifest, train) = rows(&out, "train");
    assert_eq!(manifest.kind, TableKind::Vqa);
    assert_eq!(
        manifest.label_names,
        ["yes", "left lung", "2", "no", "x ray"]
    );
    assert_eq!(
        train[0].captions,
        ["Is there a pleural effusion?", "Which lung is affected?"]
    );
    assert_eq!(
        answers(&train[0]),
        [("yes".into(), 0, 1, 0), ("left lung".into(), 1, 2, 1)]
    );
    assert_eq!(answers(&train[1]), [("2".into(), 2, 3, 1)]);
    // The effusion question is linked to HPO's concept.
    let [start, end, id] = train[0].txt_ents[0][0];
    assert_eq!((start, end), (11, 27));
    assert_eq!(manifest.entities[id as usize], "C0032227");
    assert_eq!(train[0].img_ents, [id]);
    // synpic1 is asked about in train and test: a row in each.
    let (_, test) = rows(&out, "test");
    assert!(
        test[0].image_id.ends_with("synpic1.jpg") && train[0].image_id.ends_with("synpic1.jpg")
    );
    assert_eq!(answers(&test[1]), [("x ray".into(), 4, 11, 1)]);

    // A held-out validation split comes from the training images instead.
    let linker = hpo_linker();
    let held = dir.join("held");
    let opts = ConvertOptions {
        rad_validation: RadValidation::Holdout {
            fraction: 0.5,
            seed: 1,
        },
        ..options()
    };
    let summary = convert::convert(Dataset::VqaRad, &input, &held, &linker, &opts).unwrap();
    assert_eq!(summary["rows"]["test"], 2);
    assert_eq!(
        summary["rows"]["val"].as_u64().unwrap() + summary["rows"]["train"].as_u64().unwrap(),
        2
    );
    assert_eq!(summary["rows"]["val"], 1, "{summary}");

    // Malformed questions are named.
    write(
        &input.join("trainset.json"),
        json!([{"image_name": "synpic1.jpg", "qid": 7, "question": "Q?", "answer": "yes",
                "answer_type": "MAYBE"}])
        .to_string(),
    );
    let error =
        convert::convert(Dataset::VqaRad, &input, &dir.join("x"), &linker, &options()).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("trainset.json: question 0 (qid 7): answer_type \"MAYBE\""),
        "{message}"
    );
    write(
        &input.join("trainset.json"),
        json!([{"image_name": "a.jpg", "qid": 1}]).to_string(),
    );
    let error =
        convert::convert(Dataset::VqaRad, &input, &dir.join("y"), &linker, &options()).unwrap_err();
    assert!(format!("{error:#}").contains("trainset.json: question 0 has no \"answer_type\""));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn slake_keeps_english_and_vqa_med_numbers_questions_across_splits() {
    let dir = scratch_dir("convert-slake");
    let linker = hpo_linker();
    let slake = dir.join("slake");
    write(&slake.join("imgs/xmlab1/source.jpg"), png(4));
    let q = |qid: i64, lang: &str, question: &str, answer: &str| {
        json!({"img_id": 1, "img_name": "xmlab1/source.jpg", "question": question, "answer": answer,
               "q_lang": lang, "qid": qid, "location": "Lung", "modality": "CT",
               "answer_type": "OPEN", "base_type": "vqa", "content_type": "Organ"})
    };
    write(
        &slake.join("train.json"),
        json!([
            q(1, "en", "Which organ is shown?", "Lung"),
            q(2, "zh", "图片显示哪个器官?", "肺")
        ])
        .to_string(),
    );
    write(
        &slake.join("validate.json"),
        json!([q(3, "en", "Is this a CT?", "Yes")]).to_string(),
    );
    write(&slake.join("test.json"), "[]");
    let out = dir.join("slake-out");
    let summary = convert::convert(Dataset::Slake, &slake, &out, &linker, &options()).unwrap();
    assert_eq!(summary["rows"], json!({"train": 1, "val": 1, "test": 0}));
    let (manifest, train) = rows(&out, "train");
    assert_eq!(train[0].captions, ["Which organ is shown?"]);
    assert_eq!(manifest.label_names, ["lung", "yes"]);

    let med = dir.join("medvqa_2019");
    for (split, image) in [
        ("train", "synpic100"),
        ("val", "synpic200"),
        ("test", "synpic300"),
    ] {
        write(
            &med.join(split).join("images").join(format!("{image}.jpg")),
            png(5),
        );
        for category in ["Modality", "Organ", "Plane"] {
            let line = format!(
                "{image}|what {} is shown?|{}\n",
                category.to_lowercase(),
                category
            );
            write(
                &med.join(split).join("QA").join(format!("{category}.csv")),
                line,
            );
        }
    }
    let out = dir.join("med-out");
    convert::convert(Dataset::VqaMed2019, &med, &out, &linker, &options()).unwrap();
    let (_, val) = rows(&out, "val");
    let ids: Vec<i64> = answers(&val[0]).iter().map(|a| a.2).collect();
    assert_eq!(ids, [3, 4, 5], "ids run on from the training questions");
    assert!(
        answers(&val[0]).iter().all(|a| a.3 == 1),
        "every question open"
    );
    write(&med.join("test/QA/Plane.csv"), "synpic300|no answer here\n");
    let error = convert::convert(
        Dataset::VqaMed2019,
        &med,
        &dir.join("z"),
        &linker,
        &options(),
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("test/QA/Plane.csv:1: expected image_id|question|answer")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn melinda_labels_are_positions_among_sorted_values() {
    let dir = scratch_dir("convert-melinda");
    let input = dir.join("melinda");
    for name in ["a.jpg", "b.jpg", "c.jpg"] {
        write(&input.join("melinda_images").join(name), png(6));
    }
    let header = "figure_file,caption,i_meth,p_meth,i_meth_label,p_meth_label\n";
    write(
        &input.join("train.csv"),
        format!(
            "{header}a.jpg,\"Western blot, showing cardiomegaly.\",Western,Protein,exp,molecular\n"
        ),
    );
    write(
        &input.join("dev.csv"),
        format!("{header}b.jpg,Light microscopy image.,Light,Micro,exp,cellular\n"),
    );
    write(
        &input.join("test.csv"),
        format!("{header}c.jpg,A CT scan of the chest.,CT,Imaging,exp,anatomical\n"),
    );
    let linker = hpo_linker();
    let out = dir.join("out");
    convert::convert(Dataset::Melinda, &input, &out, &linker, &options()).unwrap();
    let (manifest, train) = rows(&out, "train");
    assert_eq!(manifest.kind, TableKind::Class);
    assert_eq!(
        manifest.label_names,
        ["anatomical", "cellular", "molecular"]
    );
    assert_eq!(train[0].labels, Labels::Class(vec![2]));
    assert_eq!(train[0].captions, ["Western blot, showing cardiomegaly."]);
    assert_eq!(
        manifest.entities[train[0].txt_ents[0][0][2] as usize],
        "C0018800"
    );
    let error = convert::convert(
        Dataset::Melinda,
        &input,
        &dir.join("x"),
        &linker,
        &ConvertOptions {
            melinda_label: "colour".into(),
            ..options()
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("no label column \"colour\""));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pydicom_data_is_a_captioned_real_image_smoke_set() {
    let dir = scratch_dir("convert-pydicom");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dicom_fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let input = PathBuf::from(manifest["data"].as_str().unwrap());
    let out = dir.join("out");
    let summary = convert::convert(
        Dataset::PydicomData,
        &input,
        &out,
        &hpo_linker(),
        &options(),
    )
    .unwrap();
    let undecodable: Vec<String> = serde_json::from_value(summary["skipped"].clone()).unwrap();
    let kept: u64 = ["train", "val", "test"]
        .iter()
        .map(|s| summary["rows"][s].as_u64().unwrap())
        .sum();
    assert_eq!(
        kept as usize + undecodable.len(),
        68,
        "every file kept or named"
    );
    assert!(kept >= 50, "{summary}");
    for reason in ["JPEG-LS", "PALETTE COLOR", "BitsAllocated 1"] {
        assert!(
            undecodable.iter().any(|u| u.contains(reason)),
            "{reason}: {undecodable:?}"
        );
    }
    let (_, train) = rows(&out, "train");
    let chest = train
        .iter()
        .find(|r| r.image_id.ends_with("RG1_UNCR.dcm"))
        .expect("the chest radiograph");
    assert_eq!(
        chest.captions,
        ["A computed radiography image of the chest: THORAX."]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mimic_cxr_keeps_frontal_studies_with_reports_and_reads_dicom_directly() {
    let dir = scratch_dir("convert-mimic");
    let root = dir.join("mimic_cxr");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dicom_fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let dicom =
        std::fs::read(Path::new(manifest["tests"].as_str().unwrap()).join("CT_small.dcm")).unwrap();
    let study = |subject: &str, study: &str| {
        root.join("files")
            .join(format!("p{}", &subject[..2]))
            .join(format!("p{subject}"))
            .join(format!("s{study}"))
    };
    write(&study("10000032", "50414267").join("d1.dcm"), &dicom);
    write(&study("10000032", "50414267").join("d2.dcm"), &dicom);
    write(&study("10000764", "57375967").join("d3.jpg"), png(7));
    write(&study("10000898", "50771383").join("d4.dcm"), &dicom);
    write(
        &root.join("mimic-cxr-2.0.0-metadata.csv"),
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n\
         d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544\n\
         d2,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544\n\
         d3,10000764,57375967,CHEST (PORTABLE AP),AP,2544,3056\n\
         d4,10000898,50771383,CHEST (PA AND LAT),PA,3056,2544\n",
    );
    write(
        &root.join("mimic-cxr-2.0.0-split.csv"),
        "dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\n\
         d2,50414267,10000032,train\nd3,57375967,10000764,validate\nd4,50771383,10000898,test\n",
    );
    let observations = "Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,\
                        Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,\
                        Pneumonia,Pneumothorax,Support Devices";
    write(
        &root.join("mimic-cxr-2.0.0-chexpert.csv"),
        format!(
            "subject_id,study_id,{observations}\n\
             10000032,50414267,,1.0,,,,,,,,-1.0,,0.0,,\n\
             10000764,57375967,1.0,,,,,,,,,,,,,1.0\n\
             10000898,50771383,,,,,,,,,1.0,,,,,\n"
        ),
    );
    write(
        &root.join("mimic_cxr_sectioned.csv"),
        "study,impression,findings,last_paragraph,comparison\n\
         s50414267,\"No acute   cardiopulmonary process.\",\"Mild cardiomegaly.  No pleural effusion.\",,\n\
         s57375967,Small left pleural effusion.,Lines.,,\n",
    );
    let out = dir.join("out");
    let summary =
        convert::convert(Dataset::MimicCxr, &root, &out, &hpo_linker(), &options()).unwrap();
    assert_eq!(
        summary["rows"],
        json!({"train": 1, "val": 1, "test": 0}),
        "{summary}"
    );
    assert_eq!(
        summary["skipped"],
        json!({"not_frontal": 1, "no_chexpert": 0, "no_report": 1, "no_text": 0})
    );
    let (manifest, train) = rows(&out, "train");
    assert_eq!(manifest.kind, TableKind::Chexpert);
    assert_eq!(
        train[0].captions,
        [
            "No acute cardiopulmonary process.",
            "Mild cardiomegaly. No pleural effusion."
        ]
    );
    let mut expected = vec![0; 14];
    expected[1] = 1; // Cardiomegaly 1.0; the −1.0 and blanks become 0
    assert_eq!(train[0].labels, Labels::Chexpert(expected));
    assert_eq!(train[0].image, dicom, "the DICOM is stored as released");
    let decoded = arl_worker::data::loader::decode(&train[0].image, &Default::default()).unwrap();
    assert_eq!((decoded.width, decoded.height), (128, 128));
    let (_, val) = rows(&out, "val");
    assert_eq!(
        val[0].captions,
        ["Small left pleural effusion."],
        "findings of one word dropped"
    );
    assert!(val[0].image_id.ends_with("d3.jpg"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_python_shuffle_is_cpythons() {
    #[derive(serde::Deserialize)]
    struct Draw {
        seed: u64,
        bits: Vec<u32>,
        shuffle1000: Vec<usize>,
        shuffle7: Vec<usize>,
    }
    #[derive(serde::Deserialize)]
    struct Draws {
        draws: Vec<Draw>,
    }
    let text = std::fs::read(python_random_fixtures().join("manifest.json")).unwrap();
    let draws: Draws = serde_json::from_slice(&text).unwrap();
    for draw in draws.draws {
        let mut random = PythonRandom::new(draw.seed);
        let bits: Vec<u32> = (0..5).map(|_| random.next_u32()).collect();
        assert_eq!(bits, draw.bits, "seed {}", draw.seed);
        let mut random = PythonRandom::new(draw.seed);
        let (mut long, mut short): (Vec<usize>, Vec<usize>) =
            ((0..1000).collect(), (0..7).collect());
        random.shuffle(&mut long);
        random.shuffle(&mut short);
        assert_eq!(
            (long, short),
            (draw.shuffle1000, draw.shuffle7),
            "seed {}",
            draw.seed
        );
    }
}

#[test]
fn roco_merges_medicat_references_and_the_retrieval_subsets_are_drawn_by_seed() {
    let dir = scratch_dir("convert-roco");
    let roco = dir.join("roco");
    let medicat = dir.join("medicat");
    for (split, folder) in [("train", "train"), ("val", "validation"), ("test", "test")] {
        let radiology = roco.join(folder).join("radiology");
        let mut captions = String::new();
        let mut dlinks = String::new();
        for i in 0..6 {
            let id = format!("ROCO_{split}_{i}");
            write(&radiology.join("images").join(format!("{id}.jpg")), png(i));
            captions.push_str(&format!(
                "{id}\tChest radiograph number {i} with pleural effusion.\n"
            ));
            dlinks.push_str(&format!(
                "{id}\twget -c https://example.org/pub/PMC{}{i}.tar.gz\tfig{i}.jpg\n",
                split.len()
            ));
        }
        captions.push_str("ROCO_bad line without a tab\n");
        captions.push_str(&format!("ROCO_{split}_9\tToo short\n"));
        write(&radiology.join("captions.txt"), captions);
        write(&radiology.join("dlinks.txt"), dlinks);
        let refs = json!({"roco_image_id": format!("PMC{}1_fig1.jpg", split.len()),
                          "gorc_references": ["As shown in the figure, the effusion is large.", "ok"]});
        write(
            &medicat
                .join("net/nfs2.corp/allennlp/sanjays/roco_files")
                .join(format!("roco_{split}_references.jsonl")),
            format!(
                "{refs}\n{}\n",
                json!({"roco_image_id": "PMC999_nowhere.jpg", "gorc_references": []})
            ),
        );
    }
    let linker = hpo_linker();
    let out = dir.join("roco-out");
    let opts = ConvertOptions {
        medicat: Some(medicat.clone()),
        ..options()
    };
    let summary = convert::convert(Dataset::Roco, &roco, &out, &linker, &opts).unwrap();
    assert_eq!(
        summary["rows"],
        json!({"train": 6, "val": 6, "test": 6}),
        "{summary}"
    );
    assert_eq!(summary["skipped"]["malformed_caption_lines"], 3);
    assert_eq!(summary["skipped"]["unknown_roco_ids"], 3);
    let (_, train) = rows(&out, "train");
    let one = train
        .iter()
        .find(|r| r.image_id.ends_with("ROCO_train_1.jpg"))
        .unwrap();
    assert_eq!(
        one.captions,
        [
            "As shown in the figure, the effusion is large.",
            "Chest radiograph number 1 with pleural effusion."
        ],
        "MedICaT's references, then the caption, in one row"
    );

    let out = dir.join("irtr-out");
    convert::convert(Dataset::RocoRetrieval, &roco, &out, &linker, &options()).unwrap();
    let (_, train) = rows(&out, "train");
    let order: Vec<String> = train
        .iter()
        .map(|r| r.image_id.rsplit('/').next().unwrap().to_owned())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..6)
            .map(|i| format!("ROCO_train_{i}.jpg"))
            .collect::<Vec<_>>()
    );
    assert_ne!(order, sorted, "shuffled with Python's generator");
    let again = dir.join("irtr-again");
    convert::convert(Dataset::RocoRetrieval, &roco, &again, &linker, &options()).unwrap();
    assert_eq!(
        std::fs::read(again.join("train/shard-00000.arrow")).unwrap(),
        std::fs::read(out.join("train/shard-00000.arrow")).unwrap(),
        "the same draw every time"
    );

    // MedICaT: radiology records only; with fewer than 2,000, Python's slices put all in test.
    let records: String = (0..5)
        .map(|i| {
            write(
                &medicat.join(format!("release/figures/hash{i}_fig.jpg")),
                png(i),
            );
            format!(
                "{}\n",
                json!({"pdf_hash": format!("hash{i}"), "fig_uri": "fig.jpg", "radiology": i != 4,
                       "s2_caption": "Axial CT image of the chest.", "s2orc_references": null})
            )
        })
        .collect();
    write(
        &medicat.join("release/s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl"),
        records,
    );
    let out = dir.join("medicat-out");
    let summary = convert::convert(Dataset::Medicat, &medicat, &out, &linker, &options()).unwrap();
    assert_eq!(
        summary["rows"],
        json!({"train": 0, "val": 0, "test": 4}),
        "{summary}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
