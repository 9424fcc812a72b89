//! VQA answers as ARL prepares them (ARL_SPEC.md §4.4): `str(answer).lower()`, then the VQA
//! `normalize_word` routine of ViLT/METER (punctuation removed or spaced out, periods not
//! followed by a digit stripped, number words to digits, articles dropped, contractions given
//! their apostrophes, commas deleted), then ids in first-seen order over train, val and test.

/// Punctuation that is spaced out, or removed when it touches a space or the answer has a
/// digit-comma-digit group.
const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// Number words the VQA evaluation maps to digits.
const NUMBERS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

/// The VQA evaluation's contractions written without apostrophes, with them restored.
const CONTRACTIONS: [(&str, &str); 60] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itll", "it'll"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("shant", "shan't"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("wont", "won't"),
    ("wouldnt", "wouldn't"),
    ("youre", "you're"),
];

/// Whether `text` has a digit, a comma and a digit in a row.
fn has_digit_comma_digit(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == ',' && w[2].is_ascii_digit())
}

/// ViLT's `normalize_word` on an already lower-cased answer.
pub fn normalize_word(token: &str) -> String {
    let remove_all = has_digit_comma_digit(token);
    let mut text = token.to_owned();
    for p in PUNCT {
        let touches_space = token.contains(&format!("{p} ")) || token.contains(&format!(" {p}"));
        let replacement = if touches_space || remove_all { "" } else { " " };
        text = text.replace(p, replacement);
    }
    // Periods not followed by a digit go (Python's `sub(..., re.UNICODE)` passes 32 as the
    // count, so at most 32 of them).
    let chars: Vec<char> = text.chars().collect();
    let mut stripped = String::with_capacity(text.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c == '.' && !next_digit && removed < 32 {
            removed += 1;
            continue;
        }
        stripped.push(c);
    }
    let words: Vec<String> = stripped
        .to_lowercase()
        .split_whitespace()
        .map(|w| NUMBERS.iter().find(|(k, _)| *k == w).map_or(w, |(_, v)| *v))
        .filter(|w| !["a", "an", "the"].contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
                .to_owned()
        })
        .collect();
    words.join(" ").replace(',', "")
}

/// Answer ids in first-seen order.
pub type AnswerVocabulary = crate::data::annotate::Numbering;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_normalise_as_the_vqa_routine_does() {
        let cases = [
            ("yes", "yes"),
            ("the left lung", "left lung"),
            ("two", "2"),
            ("ct/mri", "ct mri"),
            ("x-ray", "x ray"),
            ("right - upper lobe", "right upper lobe"),
            ("1,000", "1000"),
            ("t2 weighted.", "t2 weighted"),
            ("3.5 cm", "3.5 cm"),
            ("dont know", "don't know"),
            ("\"pa\"", "pa"),
            ("  an  axial  ", "axial"),
        ];
        for (raw, normal) in cases {
            assert_eq!(normalize_word(raw), normal, "{raw:?}");
        }
    }

    #[test]
    fn ids_follow_first_appearance() {
        let mut vocabulary = AnswerVocabulary::default();
        let ids: Vec<i64> = ["yes", "no", "yes", "left"]
            .iter()
            .map(|a| vocabulary.id(a))
            .collect();
        assert_eq!(ids, [0, 1, 0, 2]);
        assert_eq!(vocabulary.names(), ["yes", "no", "left"]);
    }
}
