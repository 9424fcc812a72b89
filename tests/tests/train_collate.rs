//! The pretraining micro-batch: shapes, entity ids mapped from the dataset's CUI table onto the
//! knowledge vocabulary (unknown CUIs dropped), whole-entity MLM targets kept out of the MLM
//! pass's entity slots, ITM pairs with label-aware negatives, and determinism in the generator.

use std::collections::HashMap;

use arl_tests::scratch_dir;
use arl_worker::data::labels::Labels;
use arl_worker::data::sampler::SampleRef;
use arl_worker::data::stream::Sample;
use arl_worker::data::table::ImageTextRow;
use arl_worker::data::text::TextTokenizer;
use arl_worker::data::tokenizer_train::train_bpe;
use arl_worker::train::collate::{Collator, EntityMap};
use arl_worker::train::masking::Masking;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

const TEXT: &str = "Cardiomegaly and a small pleural effusion, no pneumothorax.";

fn collator(dir: &std::path::Path) -> Collator {
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, [TEXT; 200].join("\n")).unwrap();
    let path = dir.join("tokenizer.json");
    train_bpe(&[corpus.as_path()], 300, &path).unwrap();
    // Dataset ids 0..3 are C0018800 (cardiomegaly), C0032227 (effusion), C9999999 (not in the
    // vocabulary) and C0032326 (pneumothorax).
    let cuis: Vec<String> = ["C0018800", "C0032227", "C9999999", "C0032326"]
        .map(String::from)
        .to_vec();
    let vocabulary = HashMap::from([("C0032326", 1i64), ("C0018800", 4), ("C0032227", 6)]);
    Collator {
        tokenizer: TextTokenizer::from_file(&path, 24).unwrap(),
        masking: Masking::reference(4, 300),
        entities: 8,
        map: EntityMap::new(&cuis, &vocabulary),
        patches: 16,
    }
}

fn sample(i: u32, chexpert: Vec<i64>) -> Sample {
    let span = |word: &str| TEXT.find(word).unwrap() as i64;
    Sample {
        at: SampleRef { shard: 0, item: i },
        row: ImageTextRow {
            captions: vec![TEXT.to_owned()],
            image_id: format!("{i}.png"),
            img_ents: vec![0, 1, 2],
            txt_ents: vec![vec![
                [span("Cardiomegaly"), span("Cardiomegaly") + 12, 0],
                [span("pleural effusion"), span("pleural effusion") + 16, 1],
                [span("small"), span("small") + 5, 2],
            ]],
            labels: Labels::Chexpert(chexpert),
            ..ImageTextRow::default()
        },
        text: 0,
        row_in_shard: i,
    }
}

#[test]
fn a_micro_batch_maps_entities_masks_whole_mentions_and_pairs_itm_negatives() {
    let dir = scratch_dir("collate");
    let collator = collator(&dir);
    let samples: Vec<Sample> = (0..6)
        .map(|i| sample(i, vec![i64::from(i % 2); 14]))
        .collect();
    let images = Tensor::arange(6, (Kind::Float, tch::Device::Cpu))
        .view([6, 1, 1, 1])
        .expand([6, 3, 4, 4], true)
        .contiguous();
    let batch = collator
        .collate(&images, &samples, &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap();
    assert_eq!(batch.text_ids.size(), [6, 24]);
    assert_eq!(batch.positions.size(), [6, 24, 24]);
    assert_eq!(batch.image_labels.size(), [6, 8]);
    assert_eq!(batch.mim_noise.size(), [6, 16]);

    // Image entities 0, 1, 2 → knowledge 4, 6 and nothing; text mentions likewise.
    let image_ids: Vec<i64> =
        Vec::try_from(batch.image_labels.get(0).nonzero().flatten(0, 1)).unwrap();
    assert_eq!(image_ids, [4, 6]);
    let slots: Vec<i64> = Vec::try_from(batch.entity_ids.get(0)).unwrap();
    assert_eq!(&slots[..3], &[4, 6, -100]);
    assert!(batch.text_labels.equal(&batch.image_labels));

    // The MLM pass drops the slot of a mention that has an MLM target, and only that one.
    for i in 0..6 {
        let labels: Vec<i64> = Vec::try_from(batch.mlm_labels.get(i)).unwrap();
        let positions = batch.positions.get(i);
        let plain: Vec<i64> = Vec::try_from(batch.entity_ids.get(i)).unwrap();
        let kept: Vec<i64> = Vec::try_from(batch.entity_ids_mlm.get(i)).unwrap();
        for slot in 0..2 {
            let tokens: Vec<f32> = Vec::try_from(positions.get(slot)).unwrap();
            let hit: Vec<bool> = (0..24)
                .filter(|&t| tokens[t] > 0.0)
                .map(|t| labels[t] != -100)
                .collect();
            assert!(
                hit.iter().all(|&h| h) || hit.iter().all(|&h| !h),
                "mention masked whole"
            );
            assert_eq!(
                kept.contains(&plain[slot as usize]),
                !hit[0],
                "sample {i} slot {slot}"
            );
        }
    }

    // ITM: three positives on their own image, three negatives on an image of another label.
    let labels: Vec<i64> = Vec::try_from(&batch.itm_labels).unwrap();
    assert_eq!(labels.iter().sum::<i64>(), 3);
    for (i, &label) in labels.iter().enumerate() {
        let partner = batch.itm_partners.int64_value(&[i as i64]) as usize;
        if label == 1 {
            assert_eq!(partner, i);
        } else {
            assert_ne!(
                partner % 2,
                i % 2,
                "a negative of sample {i} with the same CheXpert labels"
            );
        }
    }

    let again = collator
        .collate(&images, &samples, &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap();
    assert!(
        again.text_ids_mlm.equal(&batch.text_ids_mlm) && again.mim_noise.equal(&batch.mim_noise)
    );
    let other = collator
        .collate(&images, &samples, &mut ChaCha8Rng::seed_from_u64(4))
        .unwrap();
    assert!(!other.mlm_labels.equal(&batch.mlm_labels));

    // A micro-batch of one sample has no negative to draw: it is its own positive.
    let lone = collator
        .collate(
            &images.narrow(0, 0, 1),
            &samples[..1],
            &mut ChaCha8Rng::seed_from_u64(3),
        )
        .unwrap();
    assert_eq!(Vec::<i64>::try_from(&lone.itm_labels).unwrap(), [1]);
    assert_eq!(Vec::<i64>::try_from(&lone.itm_partners).unwrap(), [0]);
    let _ = std::fs::remove_dir_all(dir);
}
