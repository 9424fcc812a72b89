//! The Indiana University chest X-ray reports (OpenI `ecgen-radiology/*.xml`, as shipped in
//! torchxrayvision's `NLMCXR_reports.tgz`): the FINDINGS and IMPRESSION sections of each report.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// One report's text sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The XML file.
    pub file: PathBuf,
    /// FINDINGS (empty if absent).
    pub findings: String,
    /// IMPRESSION (empty if absent).
    pub impression: String,
}

impl Report {
    /// Findings and impression joined by a space.
    pub fn text(&self) -> String {
        format!("{} {}", self.findings, self.impression)
            .trim()
            .to_owned()
    }
}

/// Reads every `*.xml` report under `dir` (recursively), sorted by path.
///
/// # Errors
/// An unreadable folder or file (named).
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Report>> {
    let mut files = Vec::new();
    collect_xml(dir, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let xml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            Ok(Report {
                findings: section(&xml, "FINDINGS"),
                impression: section(&xml, "IMPRESSION"),
                file,
            })
        })
        .collect()
}

fn collect_xml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_xml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The unescaped text of `<AbstractText Label="LABEL">…</AbstractText>`, or "".
fn section(xml: &str, label: &str) -> String {
    let open = format!("<AbstractText Label=\"{label}\">");
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else {
        return String::new();
    };
    let end = xml[start..]
        .find("</AbstractText>")
        .map_or(xml.len(), |i| start + i);
    unescape(&xml[start..end])
}

/// XML's five predefined entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_extracted_and_unescaped() {
        let xml = r#"<Abstract><AbstractText Label="FINDINGS">Heart size &amp; contour normal.</AbstractText>
            <AbstractText Label="IMPRESSION">No acute disease.</AbstractText></Abstract>"#;
        assert_eq!(section(xml, "FINDINGS"), "Heart size & contour normal.");
        assert_eq!(section(xml, "IMPRESSION"), "No acute disease.");
        assert_eq!(section(xml, "COMPARISON"), "");
    }
}
