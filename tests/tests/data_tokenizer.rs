//! `arl data tokenizer`: a RoBERTa-style byte-level BPE learned from a corpus, read back by the
//! tokenizer of the input pipeline with RoBERTa's special ids and template.

use std::process::Command;

use arl_tests::{arl_ok, release_binary, scratch_dir};
use arl_worker::data::text::TextTokenizer;

#[test]
fn a_learned_tokenizer_has_robertas_special_ids_and_round_trips() {
    let dir = scratch_dir("tokenizer");
    let corpus = dir.join("corpus.txt");
    let lines: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "Report {i}: the heart is enlarged. There is a small left pleural effusion. \
                 No pneumothorax. Cardiomegaly with pulmonary edema."
            )
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let output = dir.join("tok/tokenizer.json");
    let (corpus_arg, output_arg) = (corpus.to_string_lossy(), output.to_string_lossy());
    arl_ok(&[
        "data",
        "tokenizer",
        "--vocab-size",
        "400",
        "--corpus",
        &corpus_arg,
        "--output",
        &output_arg,
    ]);

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    // At most the size asked for (fewer when the corpus runs out of pairs to merge).
    assert!((300..=400).contains(&vocab.len()), "{}", vocab.len());
    for (id, token) in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        .iter()
        .enumerate()
    {
        assert_eq!(vocab[*token], id as u64, "{token}");
    }

    let tokenizer = TextTokenizer::from_file(&output, 16).unwrap();
    let text = "Cardiomegaly with a small effusion.";
    let encoded = tokenizer.encode(text).unwrap();
    assert_eq!(encoded.ids[0], 0, "<s> first");
    let real = encoded.attention.iter().filter(|&&a| a == 1).count();
    assert_eq!(encoded.ids[real - 1], 2, "</s> last");
    assert!(encoded.ids[real..].iter().all(|&id| id == 1), "<pad> after");
    assert!(
        encoded.ids.iter().all(|&id| id != 3),
        "no <unk> for byte-level BPE"
    );
    // Frequent words became single tokens; offsets map back into the text.
    let words: Vec<&str> = encoded.offsets[1..real - 1]
        .iter()
        .map(|&(a, b)| text[a..b].trim())
        .collect();
    assert!(words.contains(&"effusion"), "{words:?}");

    let bad = Command::new(release_binary("arl"))
        .args(["data", "tokenizer", "--vocab-size", "100", "--corpus"])
        .arg(&corpus)
        .arg("--output")
        .arg(dir.join("small.json"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least 261 tokens"));
    let _ = std::fs::remove_dir_all(dir);
}
