//! A RoBERTa-style tokenizer learned from a corpus (`arl data tokenizer`): byte-level BPE with
//! `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` 4 and RoBERTa's `<s> … </s>` template,
//! saved as a Hugging Face `tokenizer.json`. The `tiny` preset's 1,000-token vocabulary comes
//! from here (the real RoBERTa files cannot be downloaded on an offline machine; with them,
//! point the config at their `tokenizer.json` instead).

use std::path::Path;

use anyhow::{Context, ensure};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

/// Learns a byte-level BPE tokenizer of `vocab_size` tokens from the text files `corpus` and
/// writes it to `output`.
///
/// # Errors
/// A vocabulary too small for the byte alphabet, or a corpus or output file that cannot be
/// read or written (named).
pub fn train_bpe(corpus: &[&Path], vocab_size: usize, output: &Path) -> anyhow::Result<()> {
    let alphabet = ByteLevel::alphabet();
    ensure!(
        vocab_size >= alphabet.len() + SPECIAL_TOKENS.len(),
        "a byte-level vocabulary needs at least {} tokens, not {vocab_size}",
        alphabet.len() + SPECIAL_TOKENS.len()
    );
    for file in corpus {
        ensure!(file.is_file(), "corpus file {} not found", file.display());
    }
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(alphabet.into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::default()))
        .with_post_processor(Some(RobertaProcessing::default()))
        .with_decoder(Some(ByteLevelDecoder::default()));
    let files = corpus.iter().map(|p| p.display().to_string()).collect();
    tokenizer
        .train_from_files(&mut trainer, files)
        .map_err(|e| anyhow::anyhow!("learning a tokenizer from {corpus:?}: {e}"))?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    tokenizer
        .save(output, false)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", output.display()))?;
    Ok(())
}
