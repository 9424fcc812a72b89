//! UMLS Rich Release Format: `MRCONSO.RRF` (names), `MRREL.RRF` (relations) and `MRSTY.RRF`
//! (semantic types); pipe-separated rows with a trailing pipe. UMLS needs a licence, so these
//! are tested on small files in the real column layout.

use std::path::Path;

use super::{ParseError, read_text};

/// A concept name from MRCONSO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptName {
    /// CUI.
    pub cui: String,
    /// Source vocabulary (SAB).
    pub source: String,
    /// Term type in the source (TTY).
    pub term_type: String,
    /// The string (STR).
    pub name: String,
    /// Whether this is the preferred atom (ISPREF = Y).
    pub preferred: bool,
}

/// A relation from MRREL: `cui1` has relation `rel`/`rela` to `cui2` (UMLS reads CUI2 → CUI1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// CUI1.
    pub cui1: String,
    /// REL (e.g. `PAR`, `RO`).
    pub rel: String,
    /// CUI2.
    pub cui2: String,
    /// RELA, if given (e.g. `finding_site_of`).
    pub rela: Option<String>,
    /// SAB.
    pub source: String,
}

/// A semantic type from MRSTY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticType {
    /// CUI.
    pub cui: String,
    /// TUI (e.g. `T047`).
    pub tui: String,
    /// STY (e.g. `Disease or Syndrome`).
    pub name: String,
}

/// Splits one RRF row into exactly `columns` fields (plus the trailing empty one).
fn fields<'a>(
    line: &'a str,
    columns: usize,
    path: &Path,
    line_no: usize,
) -> Result<Vec<&'a str>, ParseError> {
    let fields: Vec<&str> = line.strip_suffix('|').unwrap_or(line).split('|').collect();
    if fields.len() != columns {
        return Err(ParseError::new(
            path,
            line_no,
            format!("{} fields, expected {columns}", fields.len()),
        ));
    }
    Ok(fields)
}

/// Parses every non-empty row with `row`.
fn rows<T>(
    text: &str,
    path: &Path,
    columns: usize,
    mut row: impl FnMut(&[&str]) -> Option<T>,
) -> Result<Vec<T>, ParseError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        if let Some(item) = row(&fields(line, columns, path, index + 1)?) {
            out.push(item);
        }
    }
    Ok(out)
}

/// MRCONSO rows in `language` (LAT, e.g. `ENG`) that are not suppressed (SUPPRESS = N).
///
/// # Errors
/// An unreadable file or a row without the 18 MRCONSO columns (file and line named).
pub fn read_names(path: &Path, language: &str) -> anyhow::Result<Vec<ConceptName>> {
    Ok(parse_names(&read_text(path)?, path, language)?)
}

/// See [`read_names`].
///
/// # Errors
/// As [`read_names`].
pub fn parse_names(
    text: &str,
    path: &Path,
    language: &str,
) -> Result<Vec<ConceptName>, ParseError> {
    // CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|
    rows(text, path, 18, |f| {
        (f[1] == language && f[16] == "N").then(|| ConceptName {
            cui: f[0].to_owned(),
            source: f[11].to_owned(),
            term_type: f[12].to_owned(),
            name: f[14].to_owned(),
            preferred: f[6] == "Y",
        })
    })
}

/// MRREL rows that are not suppressed.
///
/// # Errors
/// An unreadable file or a row without the 16 MRREL columns (file and line named).
pub fn read_relations(path: &Path) -> anyhow::Result<Vec<Relation>> {
    Ok(parse_relations(&read_text(path)?, path)?)
}

/// See [`read_relations`].
///
/// # Errors
/// As [`read_relations`].
pub fn parse_relations(text: &str, path: &Path) -> Result<Vec<Relation>, ParseError> {
    // CUI1|AUI1|STYPE1|REL|CUI2|AUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|RG|DIR|SUPPRESS|CVF|
    rows(text, path, 16, |f| {
        (f[14] == "N").then(|| Relation {
            cui1: f[0].to_owned(),
            rel: f[3].to_owned(),
            cui2: f[4].to_owned(),
            rela: (!f[7].is_empty()).then(|| f[7].to_owned()),
            source: f[10].to_owned(),
        })
    })
}

/// MRSTY rows.
///
/// # Errors
/// An unreadable file or a row without the 6 MRSTY columns (file and line named).
pub fn read_semantic_types(path: &Path) -> anyhow::Result<Vec<SemanticType>> {
    Ok(parse_semantic_types(&read_text(path)?, path)?)
}

/// See [`read_semantic_types`].
///
/// # Errors
/// As [`read_semantic_types`].
pub fn parse_semantic_types(text: &str, path: &Path) -> Result<Vec<SemanticType>, ParseError> {
    // CUI|TUI|STN|STY|ATUI|CVF|
    rows(text, path, 6, |f| {
        Some(SemanticType {
            cui: f[0].to_owned(),
            tui: f[1].to_owned(),
            name: f[3].to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MRCONSO: &str = "\
C0018800|ENG|P|L0018800|PF|S0047194|Y|A0066369||M0003209|D006332|MSH|MH|D006332|Cardiomegaly|0|N|256|
C0018800|ENG|S|L0018801|PF|S0047195|N|A0066370||||MTH|SY|NOCODE|Enlarged heart|0|N||
C0018800|FRE|P|L1|PF|S1|Y|A1||||MSHFRE|MH|D006332|Cardiomégalie|3|N||
C0032326|ENG|P|L0032326|PF|S0077085|Y|A0104962||||MSH|MH|D011030|Pneumothorax|0|O||
";

    #[test]
    fn names_are_filtered_by_language_and_suppression() {
        let names = parse_names(MRCONSO, Path::new("MRCONSO.RRF"), "ENG").unwrap();
        let strings: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(strings, ["Cardiomegaly", "Enlarged heart"]);
        assert!(names[0].preferred && !names[1].preferred);
        assert_eq!(
            (names[0].source.as_str(), names[0].term_type.as_str()),
            ("MSH", "MH")
        );
    }

    #[test]
    fn relations_and_semantic_types_keep_their_columns() {
        let rel = "C0018800|A1|SCUI|RO|C0018787|A2|SCUI|finding_site_of|R1||SNOMEDCT_US|SNOMEDCT_US|0|Y|N||\n\
                   C0018800|A1|SCUI|PAR|C0018787|A2|SCUI||R2||MSH|MSH||Y|O||\n";
        let relations = parse_relations(rel, Path::new("MRREL.RRF")).unwrap();
        assert_eq!(relations.len(), 1);
        assert_eq!(relations[0].rela.as_deref(), Some("finding_site_of"));
        assert_eq!(
            (relations[0].cui1.as_str(), relations[0].cui2.as_str()),
            ("C0018800", "C0018787")
        );
        let sty = parse_semantic_types(
            "C0018800|T047|B2.2.1.2.1|Disease or Syndrome|AT1|256|\n",
            Path::new("MRSTY.RRF"),
        )
        .unwrap();
        assert_eq!(
            (sty[0].tui.as_str(), sty[0].name.as_str()),
            ("T047", "Disease or Syndrome")
        );
    }

    #[test]
    fn a_short_row_names_the_file_and_line() {
        let error = parse_semantic_types(
            "C1|T047|B|Disease|AT1|256|\nC2|T047|\n",
            Path::new("MRSTY.RRF"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("MRSTY.RRF:2: 2 fields, expected 6"),
            "{error}"
        );
    }
}
