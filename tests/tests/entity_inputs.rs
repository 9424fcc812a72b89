//! Per-text entity inputs (ARL_SPEC.md §2.5) against ARL's collate run with Hugging Face's fast
//! tokenizer on the real all-MiniLM-L6-v2 `tokenizer.json` (fixtures from
//! scripts/fixtures/entity_inputs.py): token ids, usable mentions, P, entity ids, MLM variant.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arl_tests::entity_input_fixtures;
use arl_worker::data::text::TextTokenizer;
use arl_worker::knowledge::inputs::{EntityInputs, token_mentions};
use tch::Tensor;

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    mentions: Vec<[i64; 3]>,
    usable: usize,
}

#[derive(serde::Deserialize)]
struct Manifest {
    tokenizer: PathBuf,
    max_len: usize,
    cases: Vec<Case>,
}

#[test]
fn tokens_mentions_and_position_matrices_match_the_reference() {
    let dir = entity_input_fixtures();
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let expected: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("entity_inputs.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let tokenizer = TextTokenizer::from_file(&manifest.tokenizer, manifest.max_len).unwrap();
    let mut dropped = 0;
    for (index, case) in manifest.cases.iter().enumerate() {
        let tensor = |name: &str| &expected[&format!("{index}.{name}")];
        let tokens = tokenizer.encode(&case.text).unwrap();
        assert_eq!(
            Tensor::from_slice(&tokens.ids),
            *tensor("input_ids"),
            "{}",
            case.text
        );
        assert_eq!(
            Tensor::from_slice(&tokens.attention),
            *tensor("attention_mask")
        );
        let mentions = token_mentions(&case.mentions, &tokens.char_to_token());
        assert_eq!(mentions.len(), case.usable, "{}", case.text);
        dropped += case.mentions.len() - mentions.len();
        let plain = EntityInputs::new(&mentions, manifest.max_len);
        assert_eq!(plain.pos_matrix, *tensor("pos_matrix"), "{}", case.text);
        assert_eq!(plain.ent_ids, *tensor("ent_ids"));
        let labels = Vec::<i64>::try_from(tensor("labels")).unwrap();
        let mlm = EntityInputs::for_mlm(&mentions, manifest.max_len, &labels);
        assert_eq!(mlm.pos_matrix, *tensor("pos_matrix_mlm"), "{}", case.text);
        assert_eq!(mlm.ent_ids, *tensor("ent_ids_mlm"));
        assert_ne!(mlm.ent_ids, plain.ent_ids, "each case masks a mention");
    }
    assert!(dropped >= 3, "truncation drops mentions in the fixtures");
}

#[test]
fn a_missing_tokenizer_file_is_named() {
    let error = TextTokenizer::from_file(std::path::Path::new("/nonexistent/tokenizer.json"), 8)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("/nonexistent/tokenizer.json"), "{error}");
}
