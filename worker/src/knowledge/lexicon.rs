//! The radiology lexicon (`radiology_lexicon.tsv`, compiled in): wordings of HPO concepts that
//! chest radiograph reports use and HPO's names and synonyms miss, each row with its reason.
//! Aliases are extra synonyms; frames pair a subject with a state ("cardiac silhouette" …
//! "enlarged").

use std::path::Path;

use super::ParseError;

/// The compiled-in lexicon file.
const RADIOLOGY: &str = include_str!("radiology_lexicon.tsv");

/// A subject and a state that, named close together, mean a concept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The concept's ontology id (`HP:0001640`).
    pub id: String,
    /// Subject phrases ("cardiac silhouette").
    pub subjects: Vec<String>,
    /// State phrases ("enlarged").
    pub states: Vec<String>,
}

/// Aliases and frames keyed by ontology id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lexicon {
    /// (ontology id, phrase).
    pub aliases: Vec<(String, String)>,
    /// Frames.
    pub frames: Vec<Frame>,
}

impl Lexicon {
    /// The compiled-in radiology lexicon.
    ///
    /// # Errors
    /// A malformed row (a bug caught by the unit tests).
    pub fn radiology() -> Result<Self, ParseError> {
        parse(
            RADIOLOGY,
            Path::new("worker/src/knowledge/radiology_lexicon.tsv"),
        )
    }
}

/// Parses lexicon rows: `alias|frame`, id, phrases (`|`-separated), states (`-` for an alias),
/// reason; `#` lines are comments.
///
/// # Errors
/// A row with another kind, a missing field or an empty reason.
pub fn parse(text: &str, path: &Path) -> Result<Lexicon, ParseError> {
    let mut lexicon = Lexicon::default();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = |why: &str| ParseError::new(path, index + 1, why);
        let [kind, id, phrases, states, reason] = fields[..] else {
            return Err(bad("expected 5 tab-separated fields"));
        };
        if reason.trim().is_empty() || id.is_empty() || phrases.is_empty() {
            return Err(bad("empty id, phrase or reason"));
        }
        let split = |s: &str| s.split('|').map(str::to_owned).collect::<Vec<_>>();
        match (kind, states) {
            ("alias", "-") => lexicon.aliases.push((id.to_owned(), phrases.to_owned())),
            ("frame", states) if states != "-" => lexicon.frames.push(Frame {
                id: id.to_owned(),
                subjects: split(phrases),
                states: split(states),
            }),
            _ => {
                return Err(bad(
                    "expected `alias ID PHRASE - WHY` or `frame ID SUBJECTS STATES WHY`",
                ));
            }
        }
    }
    Ok(lexicon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_radiology_lexicon_parses() {
        let lexicon = Lexicon::radiology().unwrap();
        assert!(
            lexicon
                .aliases
                .contains(&("HP:0003761".into(), "calcification".into()))
        );
        let heart = lexicon
            .frames
            .iter()
            .find(|f| f.id == "HP:0001640")
            .unwrap();
        assert!(heart.subjects.contains(&"cardiac silhouette".to_owned()));
        assert!(heart.states.contains(&"enlarged".to_owned()));
    }

    #[test]
    fn malformed_rows_are_named() {
        let error = parse("alias\tHP:1\tx\tstate\twhy\n", Path::new("l.tsv")).unwrap_err();
        assert_eq!(error.line, 1);
        let error = parse("# c\nframe\tHP:1\tx\t-\t\n", Path::new("l.tsv")).unwrap_err();
        assert_eq!(error.line, 2);
    }
}
