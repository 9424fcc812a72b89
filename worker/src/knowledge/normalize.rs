//! Text normalisation for dictionary matching, keeping a map back to the original characters:
//! lower case, every run of non-alphanumeric characters (hyphens, punctuation, spaces) becomes
//! one space. Inflection and derivation are matched by keys, see [`super::morphology`].

/// Normalised text and, per byte of it, the index of the original character it came from.
#[derive(Debug)]
pub struct Normalized {
    /// The normalised text.
    pub text: String,
    /// `origin[b]`: original character index of normalised byte `b`.
    pub origin: Vec<usize>,
}

/// Normalises `text` (see the module doc); leading and trailing separators are dropped.
pub fn normalize(text: &str) -> Normalized {
    let mut out = Normalized {
        text: String::with_capacity(text.len()),
        origin: Vec::with_capacity(text.len()),
    };
    let mut pending_space: Option<usize> = None;
    for (index, c) in text.chars().enumerate() {
        if c.is_alphanumeric() {
            if let Some(space_at) = pending_space.take()
                && !out.text.is_empty()
            {
                out.text.push(' ');
                out.origin.push(space_at);
            }
            for lower in c.to_lowercase() {
                let before = out.text.len();
                out.text.push(lower);
                out.origin
                    .extend(std::iter::repeat_n(index, out.text.len() - before));
            }
        } else if pending_space.is_none() {
            pending_space = Some(index);
        }
    }
    out
}

/// Normalises a dictionary phrase (no offsets needed).
pub fn normalize_phrase(text: &str) -> String {
    normalize(text).text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_collapse_and_offsets_point_at_the_original() {
        let n = normalize("  Small, bilateral pleural-effusions.");
        assert_eq!(n.text, "small bilateral pleural effusions");
        let at = n.text.find("pleural").unwrap();
        assert_eq!(n.origin[at], 19);
        assert_eq!(n.origin[n.text.len() - 1], 35);
    }
}
