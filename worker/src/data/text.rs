//! Text tokenisation with a Hugging Face `tokenizer.json` (the `tokenizers` crate): token ids,
//! attention mask and character offsets, truncated and padded to a fixed length as ARL's
//! `tokenizer(text, padding="max_length", truncation=True, max_length=L)`.

use std::path::Path;

use anyhow::Context;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::loader::contained;
use crate::knowledge::inputs::CharToToken;

/// A tokenizer with a fixed sequence length.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

/// One tokenised text, `max_len` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids.
    pub ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention: Vec<i64>,
    /// Character span of each token in the text (`(0, 0)` for added tokens).
    pub offsets: Vec<(usize, usize)>,
    /// Special tokens (`[CLS]`, `<s>`, padding, …).
    pub special: Vec<bool>,
}

impl TokenizedText {
    /// The character → token lookup of this text.
    pub fn char_to_token(&self) -> CharToToken {
        CharToToken::new(&self.offsets, &self.special)
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and fixes the length (truncation and padding to `max_len`, with the
    /// tokenizer's `<pad>` or `[PAD]` token).
    ///
    /// # Errors
    /// An unreadable or malformed file, or one without a padding token (named).
    pub fn from_file(path: &Path, max_len: usize) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading tokenizer {}: {e}", path.display()))?;
        Self::from_bytes(&bytes, &path.display().to_string(), max_len)
    }

    /// [`TextTokenizer::from_file`] of a `tokenizer.json` already in memory; `name` names it in
    /// errors.
    ///
    /// # Errors
    /// As [`TextTokenizer::from_file`], less the reading.
    pub fn from_bytes(bytes: &[u8], name: &str, max_len: usize) -> anyhow::Result<Self> {
        // tokenizers 0.23 panics on some malformed files (a decoder without its fields, merges
        // shorter than the model's prefix; RELIABILITY.md): the file's error, not the rank's.
        let mut inner =
            contained(|| Tokenizer::from_bytes(bytes).map_err(|e| anyhow::anyhow!("{e}")))
                .with_context(|| format!("reading tokenizer {name}"))?;
        let (pad_token, pad_id) = ["<pad>", "[PAD]"]
            .into_iter()
            .find_map(|t| inner.token_to_id(t).map(|id| (t.to_owned(), id)))
            .ok_or_else(|| anyhow::anyhow!("{name}: no <pad> or [PAD] token"))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
            .with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::Fixed(max_len),
                pad_id,
                pad_token,
                ..PaddingParams::default()
            }));
        let tokenizer = Self { inner, max_len };
        // A tokenizer that cannot encode a word fails here, named, rather than on every sample.
        tokenizer
            .encode("probe")
            .with_context(|| format!("tokenizer {name}"))?;
        Ok(tokenizer)
    }

    /// The fixed length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id of `token` (such as `<mask>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The id of the mask token: RoBERTa's `<mask>` or BERT's `[MASK]`.
    pub fn mask_id(&self) -> Option<i64> {
        self.token_id("<mask>").or_else(|| self.token_id("[MASK]"))
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises one text with its special tokens.
    ///
    /// # Errors
    /// The tokenizer fails on the text.
    pub fn encode(&self, text: &str) -> anyhow::Result<TokenizedText> {
        // tokenizers 0.23 panics on a post-processor template that names a special token it
        // lacks (RELIABILITY.md): that text's error, not the rank's.
        let encoding = contained(|| {
            self.inner
                .encode_char_offsets(text, true)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .with_context(|| format!("tokenizing {text:?}"))?;
        Ok(TokenizedText {
            ids: encoding.get_ids().iter().map(|&i| i64::from(i)).collect(),
            attention: encoding
                .get_attention_mask()
                .iter()
                .map(|&m| i64::from(m))
                .collect(),
            offsets: encoding.get_offsets().to_vec(),
            special: encoding
                .get_special_tokens_mask()
                .iter()
                .map(|&s| s == 1)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_files_that_make_tokenizers_panic_are_named_errors() {
        // Found by fuzzing (RELIABILITY.md).
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz/regressions/tokenizer"
        );
        for (file, words) in [
            ("decoder_without_fields.json", "reading tokenizer"),
            ("bpe_merge_shorter_than_prefix.json", "reading tokenizer"),
            (
                "template_without_its_special_token.json",
                "tokenizing \"probe\"",
            ),
        ] {
            let bytes = std::fs::read(format!("{dir}/{file}")).unwrap();
            let error = TextTokenizer::from_bytes(&bytes, file, 16).unwrap_err();
            let message = format!("{error:#}");
            assert!(
                message.contains(file) && message.contains(words),
                "{message}"
            );
            assert!(message.contains("panicked while reading"), "{message}");
        }
    }
}
