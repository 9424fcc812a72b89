//! The fuzz targets (tests/fuzz, RELIABILITY.md): one function per untrusted input, each feeding
//! arbitrary bytes to the project's own parser for it and discarding the result. An error is the
//! right answer to bad bytes; a panic, an abort, a hang or an unbounded allocation is a bug.
//! `tests/tests/fuzz_corpus.rs` replays the committed corpora and regressions through them.

use std::path::Path;

use arl_worker::data::dicom::{self, DicomOptions, Frames};
use arl_worker::data::{image, loader, shard, table, text};
use arl_worker::knowledge::{hpoa, obo, rrf};
use rand::SeedableRng;

/// A fuzz target: arbitrary bytes into one parser.
pub type Target = fn(&[u8]);

/// Every target by name (the folder of its corpus and the name of its fuzzer binary).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("shard_index", shard_index),
    ("arrow_shard", arrow_shard),
    ("image", image),
    ("dicom", dicom),
    ("obo", obo),
    ("rrf", rrf),
    ("hpoa", hpoa),
    ("tokenizer", tokenizer),
    ("checkpoint_manifest", checkpoint_manifest),
];

/// A job config as `arl check` reads it: TOML parse, types, the check of its pipeline, and the
/// resolved config written back.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = arl_contract::JobConfig::parse(&text, "fuzz.toml", &[])
        && arl_launcher::check::check(&config, &config.jobs()).is_ok()
    {
        let _ = config.resolved_toml();
    }
}

/// A dataset's `index.json`.
pub fn shard_index(data: &[u8]) {
    if let Ok(manifest) = shard::Manifest::parse(data, "index.json") {
        let _ = manifest.items_per_shard();
        let _ = manifest.hash();
    }
}

/// An Arrow shard: decoded, every row read, the texts counted; and as a one-file dataset.
pub fn arrow_shard(data: &[u8]) {
    if let Ok(batches) = shard::decode(data) {
        for batch in &batches {
            for index in 0..batch.num_rows() {
                let _ = table::row(batch, index);
            }
            let _ = table::text_counts(batch, table::TEXT_COLUMN);
        }
    }
    let _ = shard::Manifest::for_arrow_file("fuzz.arrow", data);
}

/// A sample's image (DICOM, JPEG or PNG) decoded as the loader does, then both transforms to
/// 32 px.
pub fn image(data: &[u8]) {
    if let Ok(decoded) = loader::decode(data, &DicomOptions::default()) {
        let _ = image::clip(&decoded, 32);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let _ = image::clip_resized_crop(&decoded, 32, &mut rng);
    }
}

/// A DICOM file: every frame decoded to RGB, and its descriptive text tags.
pub fn dicom(data: &[u8]) {
    let _ = dicom::decode(data, &DicomOptions::default(), Frames::All);
    let _ = dicom::text_tags(data);
}

/// An OBO ontology (`hp.obo`).
pub fn obo(data: &[u8]) {
    let _ = obo::parse(&String::from_utf8_lossy(data), Path::new("fuzz.obo"));
}

/// UMLS RRF rows, read as MRCONSO, MRREL and MRSTY.
pub fn rrf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.RRF");
    let _ = rrf::parse_names(&text, path, "ENG");
    let _ = rrf::parse_relations(&text, path);
    let _ = rrf::parse_semantic_types(&text, path);
}

/// HPO's disease annotations (`phenotype.hpoa`).
pub fn hpoa(data: &[u8]) {
    let _ = hpoa::parse(&String::from_utf8_lossy(data), Path::new("fuzz.hpoa"));
}

/// A `tokenizer.json`, loaded as training loads it and used on a report sentence.
pub fn tokenizer(data: &[u8]) {
    if let Ok(tokenizer) = text::TextTokenizer::from_bytes(data, "tokenizer.json", 16) {
        let _ = tokenizer.vocab_size();
        for sentence in ["No pneumothorax. Mild cardiomégalie — 3 cm.", ""] {
            if let Ok(encoded) = tokenizer.encode(sentence) {
                let _ = encoded.char_to_token().get(3);
            }
        }
    }
}

/// A checkpoint's `manifest.json` (of the folder of step 100, as the seeds say).
pub fn checkpoint_manifest(data: &[u8]) {
    if let Ok(manifest) = arl_checkpoints::Manifest::parse(data, 100, "manifest.json") {
        let _ = manifest.groups();
        let _ = manifest.tensor_bytes();
        let _ = manifest.state.pinned();
    }
}
