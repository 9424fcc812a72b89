//! HPO's `phenotype.hpoa`: disease-to-phenotype annotations (tab-separated, `#` header lines,
//! then a column header). `NOT` annotations are kept and flagged.

use std::path::Path;

use super::{ParseError, read_text};

/// One annotation: a disease has (or, if `negated`, lacks) a phenotype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// `OMIM:619340`, `ORPHA:…`, `DECIPHER:…`.
    pub disease: String,
    /// The disease's name.
    pub disease_name: String,
    /// `HP:…`.
    pub phenotype: String,
    /// Qualifier `NOT`.
    pub negated: bool,
}

/// Reads `phenotype.hpoa`.
///
/// # Errors
/// An unreadable file, a missing column header, or a row with too few columns (line named).
pub fn read(path: &Path) -> anyhow::Result<Vec<Annotation>> {
    Ok(parse(&read_text(path)?, path)?)
}

/// Parses the text of a `phenotype.hpoa` file.
///
/// # Errors
/// As [`read`].
pub fn parse(text: &str, path: &Path) -> Result<Vec<Annotation>, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    let (header_no, header) = lines
        .next()
        .ok_or_else(|| ParseError::new(path, 1, "no column header"))?;
    let columns: Vec<&str> = header.split('\t').collect();
    let column = |name: &str| {
        columns.iter().position(|c| *c == name).ok_or_else(|| {
            ParseError::new(path, header_no + 1, format!("column header lacks {name:?}"))
        })
    };
    let (disease, disease_name, qualifier, phenotype) = (
        column("database_id")?,
        column("disease_name")?,
        column("qualifier")?,
        column("hpo_id")?,
    );
    let needed = disease.max(disease_name).max(qualifier).max(phenotype) + 1;
    lines
        .map(|(index, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < needed {
                return Err(ParseError::new(
                    path,
                    index + 1,
                    format!("{} columns, expected at least {needed}", fields.len()),
                ));
            }
            Ok(Annotation {
                disease: fields[disease].to_owned(),
                disease_name: fields[disease_name].to_owned(),
                phenotype: fields[phenotype].to_owned(),
                negated: fields[qualifier] == "NOT",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_by_column_name_and_not_is_flagged() {
        let text = "#version: x\ndatabase_id\tdisease_name\tqualifier\thpo_id\treference\n\
                    OMIM:1\tA disease\t\tHP:0001640\tPMID:1\nOMIM:1\tA disease\tNOT\tHP:0002202\tPMID:1\n";
        let rows = parse(text, Path::new("phenotype.hpoa")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].phenotype.as_str(), rows[0].negated),
            ("HP:0001640", false)
        );
        assert!(rows[1].negated);
        let error = parse(
            "database_id\tdisease_name\tqualifier\thpo_id\nOMIM:1\tx\n",
            Path::new("p.hpoa"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(error, "p.hpoa:2: 2 columns, expected at least 4");
    }
}
