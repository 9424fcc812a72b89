//! The Indiana University chest X-ray reports (OpenI `ecgen-radiology/*.xml`, as shipped in
//! torchxrayvision's `NLMCXR_reports.tgz`): the FINDINGS and IMPRESSION sections of each report
//! and its MeSH annotation.
//!
//! Held-out rule: the even-numbered reports (`2.xml`, `10.xml`, …) are the linker's test set.
//! Nothing in this project reads them or tunes to them; [`read_dir`] skips them by name.

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
    /// MeSH terms (`<major>` then `<minor>` entries of `<MeSH>`, such as
    /// `Calcified Granuloma/lung/upper lobe/right`, or `normal`), unescaped.
    pub mesh: Vec<String>,
}

impl Report {
    /// Findings and impression joined by a space.
    pub fn text(&self) -> String {
        format!("{} {}", self.findings, self.impression)
            .trim()
            .to_owned()
    }
}

/// Reads every `*.xml` report under `dir` (recursively), sorted by path, except the held-out
/// even-numbered ones (see [`is_held_out`]), which are never opened.
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
                mesh: mesh_terms(&xml),
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
        } else if path.extension().is_some_and(|e| e == "xml") && !is_held_out(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether `path` is a held-out Indiana University report: its file name is an even number
/// (`2.xml`, `10.xml`). These are the test set of the linker's quality (`arl bench link
/// --quality`), so nothing may read them or tune to them; the decision uses the name alone.
pub fn is_held_out(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|n| n.is_multiple_of(2))
}

/// The unescaped `<major>` and `<minor>` entries of the `<MeSH>` element.
fn mesh_terms(xml: &str) -> Vec<String> {
    let Some(start) = xml.find("<MeSH>") else {
        return Vec::new();
    };
    let end = xml[start..]
        .find("</MeSH>")
        .map_or(xml.len(), |i| start + i);
    let mesh = &xml[start..end];
    let mut terms = Vec::new();
    for tag in ["major", "minor"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut rest = mesh;
        while let Some(at) = rest.find(&open) {
            rest = &rest[at + open.len()..];
            let stop = rest.find(&close).unwrap_or(rest.len());
            terms.push(unescape(rest[..stop].trim()));
            rest = &rest[stop..];
        }
    }
    terms
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

    #[test]
    fn mesh_terms_are_read_major_then_minor() {
        let xml = "<MeSH>\n <major>Opacity/lung/base/left</major>\n <minor>Calcinosis/aorta &amp; x</minor>\n\
                   <major>Cardiomegaly</major></MeSH><automatic>effusion</automatic>";
        assert_eq!(
            mesh_terms(xml),
            [
                "Opacity/lung/base/left",
                "Cardiomegaly",
                "Calcinosis/aorta & x"
            ]
        );
        assert!(mesh_terms("<x/>").is_empty());
    }

    #[test]
    fn even_numbered_reports_are_skipped_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let xml = |label: &str| {
            format!(
                "<AbstractText Label=\"FINDINGS\">{label}</AbstractText><MeSH><major>normal</major></MeSH>"
            )
        };
        std::fs::write(dir.path().join("1.xml"), xml("one")).unwrap();
        std::fs::write(dir.path().join("notes.xml"), xml("notes")).unwrap();
        // An even-numbered file that cannot be opened: reading it would fail the call.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("sub/10.xml")).unwrap();
        std::fs::write(dir.path().join("sub/2.xml"), xml("two")).unwrap();
        let reports = read_dir(dir.path()).unwrap();
        let findings: Vec<&str> = reports.iter().map(|r| r.findings.as_str()).collect();
        assert_eq!(findings, ["one", "notes"]);
        assert_eq!(reports[0].mesh, ["normal"]);
        assert!(is_held_out(Path::new("a/3954.xml")) && !is_held_out(Path::new("3955.xml")));
    }
}
