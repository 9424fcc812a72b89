//! The words of a normalised text (with their original character spans and sentences) and the
//! key text the dictionary automata run over: each word's morphological key, separated by
//! single spaces, with a map from key-text bytes back to words.

/// A word of the normalised text: its text, character span and sentence.
pub(super) struct Word<'a> {
    pub(super) text: &'a str,
    pub(super) start_char: usize,
    pub(super) end_char: usize,
    pub(super) sentence: usize,
}

/// Sentence number of every character: a new sentence after `.`, `!`, `?`, `;` or a newline.
pub(super) fn sentence_ids(text: &str) -> Vec<usize> {
    let mut sentence = 0;
    text.chars()
        .map(|c| {
            let id = sentence;
            if matches!(c, '.' | '!' | '?' | ';' | '\n') {
                sentence += 1;
            }
            id
        })
        .collect()
}

/// The words of the normalised text with their original spans and sentences.
pub(super) fn words<'a>(normal: &'a str, origin: &[usize], sentences: &[usize]) -> Vec<Word<'a>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for text in normal.split(' ') {
        let (start, end) = (offset, offset + text.len());
        offset = end + 1;
        if text.is_empty() {
            continue;
        }
        let start_char = origin[start];
        out.push(Word {
            text,
            start_char,
            end_char: origin[end - 1] + 1,
            sentence: sentences[start_char],
        });
    }
    out
}

/// Word keys joined by spaces.
#[derive(Default)]
pub(super) struct KeyText {
    pub(super) text: String,
    /// Byte offset of each word's key.
    starts: Vec<usize>,
}

impl KeyText {
    /// Appends the next word's key (not empty, without spaces).
    pub(super) fn push(&mut self, key: &str) {
        if !self.starts.is_empty() {
            self.text.push(' ');
        }
        self.starts.push(self.text.len());
        self.text.push_str(key);
    }

    /// The words `first..=last` that a match over bytes `start..end` covers, if it starts and
    /// ends on word boundaries.
    pub(super) fn words_of(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        let on_boundary =
            (start == 0 || bytes[start - 1] == b' ') && (end == bytes.len() || bytes[end] == b' ');
        on_boundary.then(|| {
            let first = self.starts.partition_point(|&s| s <= start) - 1;
            let last = self.starts.partition_point(|&s| s < end) - 1;
            (first, last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_map_back_to_whole_words() {
        let mut keys = KeyText::default();
        for key in ["no", "pleural", "effus"] {
            keys.push(key);
        }
        assert_eq!(keys.text, "no pleural effus");
        assert_eq!(keys.words_of(3, 16), Some((1, 2)));
        assert_eq!(keys.words_of(0, 2), Some((0, 0)));
        assert_eq!(keys.words_of(4, 10), None);
    }
}
