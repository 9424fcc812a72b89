//! The input pipeline over real images: batches decoded off the training thread, bad images
//! skipped and counted, too many stopping the run with the image named, seeded random crops.

use arl_tests::{dicom_fixtures, grey_png, image_fixtures, scratch_dir, write_dataset_with};
use arl_worker::data::dicom::DicomOptions;
use arl_worker::data::loader::{Loader, LoaderConfig, Transform};
use arl_worker::data::sampler::{Sampler, SamplerConfig, SamplerState};
use arl_worker::data::stream::{RankStream, ShardSource};

/// Real PNG, JPEG and DICOM images, except image 5 (not an image at all) and image 17 (a
/// truncated DICOM).
fn images() -> impl Fn(u8) -> Vec<u8> {
    let dir = image_fixtures();
    let mut files: Vec<Vec<u8>> = ["CT_small.png", "MR_small.jpg", "examples_rgb_color.jpg"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dicom_fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let dicom_dir = std::path::PathBuf::from(manifest["tests"].as_str().unwrap());
    files.push(std::fs::read(dicom_dir.join("CT_small.dcm")).unwrap());
    move |i| match i {
        5 => b"this is not an image".to_vec(),
        17 => files[3][..2000].to_vec(),
        _ => files[usize::from(i) % 4].clone(),
    }
}

fn loader(dir: &std::path::Path, cache: &str, cfg: LoaderConfig, steps: usize) -> Loader {
    let url = format!("file://{}", dir.join("dataset").display());
    let source = ShardSource::open(&url, &dir.join(cache), 1 << 26).unwrap();
    let sampler = Sampler::new(
        source.manifest().items_per_shard(),
        SamplerConfig::default(),
        8,
        (0, 1),
        SamplerState::default(),
    )
    .unwrap();
    Loader::start(RankStream::new(source, sampler, 2), cfg, steps)
}

fn config(transform: Transform, max_bad_fraction: f64) -> LoaderConfig {
    LoaderConfig {
        threads: 2,
        queue_depth: 2,
        transform,
        max_bad_fraction,
        seed: 3,
        first_step: 0,
        dicom: DicomOptions::default(),
        check: None,
    }
}

#[test]
fn bad_images_are_skipped_and_counted_and_too_many_stop_the_run() {
    let dir = scratch_dir("loader");
    write_dataset_with(&dir.join("dataset"), 20_000, images());
    let tolerant = loader(&dir, "a", config(Transform::Clip { size: 32 }, 0.5), 6);
    let (mut good, mut bad) = (0, Vec::new());
    for _ in 0..6 {
        let batch = tolerant.next_batch().unwrap();
        assert_eq!(batch.images.size(), [batch.samples.len() as i64, 3, 32, 32]);
        assert!(
            batch.samples.iter().all(|s| s.row.image.is_empty()),
            "bytes dropped after decoding"
        );
        good += batch.samples.len();
        bad.extend(batch.bad);
    }
    // Images 5 and 17 have 3 texts each: six bad items in the epoch of 48.
    assert_eq!((good, bad.len()), (42, 6));
    assert!(
        bad.iter()
            .all(|b| b.reason.contains("\"5.png\"") || b.reason.contains("\"17.png\""))
    );
    assert!(
        bad.iter()
            .filter(|b| b.reason.contains("\"17.png\""))
            .all(|b| b.reason.contains("DICOM")),
        "{bad:?}"
    );
    assert!(tolerant.next_batch().is_err(), "six steps only");

    let strict = loader(&dir, "b", config(Transform::Clip { size: 32 }, 0.0), 6);
    let error = (0..6)
        .map(|_| strict.next_batch())
        .find_map(Result::err)
        .expect("a bad image stops a strict run");
    let message = format!("{error:#}");
    assert!(
        message.contains("max_bad_fraction = 0") && message.contains(".png"),
        "{message}"
    );
    drop((tolerant, strict));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The grey level of row `i`'s image.
fn level(i: u8) -> u8 {
    20 + 8 * i
}

#[test]
fn hostile_images_cost_their_own_samples_and_every_image_stays_with_its_row() {
    let dir = scratch_dir("loader-hostile");
    let jpeg = std::fs::read(image_fixtures().join("MR_small.jpg")).unwrap();
    write_dataset_with(&dir.join("dataset"), 20_000, |i| match i {
        // A thin image that would resize to gigabytes, a decompression bomb (16384² pixels
        // in a few kilobytes), a truncated JPEG and an empty file.
        3 => grey_png(1, 65_535, 0),
        7 => grey_png(16_384, 16_384, 0),
        11 => jpeg[..jpeg.len() / 2].to_vec(),
        13 => Vec::new(),
        i => grey_png(40, 30, level(i)),
    });
    let loader = loader(&dir, "a", config(Transform::Clip { size: 32 }, 0.5), 6);
    let (mut good, mut bad) = (0, Vec::new());
    for _ in 0..6 {
        let batch = loader.next_batch().unwrap();
        for (k, sample) in batch.samples.iter().enumerate() {
            // The row's own image: its grey level, read back through CLIP's normalisation.
            let i: u8 = sample
                .row
                .image_id
                .trim_end_matches(".png")
                .parse()
                .unwrap();
            let red = batch.images.get(k as i64).get(0).mean(tch::Kind::Float);
            let read = (red.double_value(&[]) * 0.268_629_54 + 0.481_454_66) * 255.0;
            assert!((read - f64::from(level(i))).abs() < 0.5, "row {i}: {read}");
            assert!(sample.row.captions[sample.text].starts_with(&format!("image {i} ")));
        }
        good += batch.samples.len();
        bad.extend(batch.bad);
    }
    // Rows 3, 7, 11 and 13 have 1, 2, 3 and 2 texts: eight bad items of 48.
    assert_eq!((good, bad.len()), (40, 8), "{bad:?}");
    for (row, reason) in [
        ("3.png", "1×65535"),
        ("7.png", "16384×16384"),
        ("11.png", "truncated"),
        ("13.png", "image"),
    ] {
        assert!(
            bad.iter()
                .any(|b| b.reason.contains(&format!("{row:?}")) && b.reason.contains(reason)),
            "{row}: {bad:?}"
        );
    }
    drop(loader);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn random_crops_follow_the_seed() {
    let dir = scratch_dir("loader-crop");
    write_dataset_with(&dir.join("dataset"), 20_000, images());
    let crop = Transform::ResizedCrop { size: 24 };
    let first = loader(&dir, "a", config(crop, 0.5), 2);
    let again = loader(&dir, "b", config(crop, 0.5), 2);
    let other = loader(
        &dir,
        "c",
        LoaderConfig {
            seed: 4,
            ..config(crop, 0.5)
        },
        2,
    );
    let (a, b, c) = (
        first.next_batch().unwrap().images,
        again.next_batch().unwrap().images,
        other.next_batch().unwrap().images,
    );
    assert!(a.equal(&b), "same seed, same crops");
    assert!(!a.equal(&c), "another seed, other crops");
    drop((first, again, other));
    std::fs::remove_dir_all(dir).unwrap();
}
