//! Entity-linking quality on a MeSH gold set ([`super::mesh`]):
//!
//! - recall: the fraction of (report, gold HPO concept) pairs that the linker finds un-negated
//!   (uncertain mentions count) in the report's FINDINGS + IMPRESSION. A mention counts for a
//!   gold concept when its concept is that concept or a descendant of it (more specific is
//!   right, more general is not). A mention's concept is every HPO term whose concept
//!   ([`Ontology::concepts`]: the first UMLS CUI, else a phenotypic abnormality's own id) is the
//!   mention's.
//! - false-finding rate: the fraction of reports annotated only `normal` in which the linker
//!   finds any un-negated phenotypic abnormality (a descendant of HP:0000118).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::linker::Linker;
use super::mesh::GoldSet;
use super::obo::{Ontology, PHENOTYPIC_ABNORMALITY};

/// The measured quality.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkQuality {
    /// Found / gold pairs.
    pub recall: f64,
    /// Normal reports with a finding / normal reports.
    pub false_finding_rate: f64,
    /// All (report, concept) gold pairs.
    pub gold_pairs: usize,
    /// Gold pairs found.
    pub found_pairs: usize,
    /// Reports annotated only `normal`.
    pub normal_reports: usize,
    /// Normal reports with an un-negated abnormal finding.
    pub normal_with_finding: usize,
    /// (report, MeSH term) pairs without an HPO concept.
    pub unmapped_terms: usize,
    /// Headings the MeSH table does not list.
    pub unknown_headings: Vec<String>,
    /// Gold pairs not found: (report file, HPO id).
    pub missed: Vec<(PathBuf, String)>,
    /// Findings in normal reports: (report file, mention's concept name).
    pub false_findings: Vec<(PathBuf, String)>,
}

/// HPO's `is_a` hierarchy, as each term's ancestors (itself included).
struct Hierarchy {
    ancestors: HashMap<String, HashSet<String>>,
}

impl Hierarchy {
    fn new(ontology: &Ontology) -> Self {
        let parents: HashMap<&str, &[String]> = ontology
            .terms
            .iter()
            .map(|t| (t.id.as_str(), t.parents.as_slice()))
            .collect();
        let ancestors = ontology
            .terms
            .iter()
            .map(|term| {
                let mut seen = HashSet::new();
                let mut stack = vec![term.id.as_str()];
                while let Some(id) = stack.pop() {
                    if seen.insert(id.to_owned()) {
                        stack.extend(
                            parents
                                .get(id)
                                .into_iter()
                                .flat_map(|p| p.iter().map(String::as_str)),
                        );
                    }
                }
                (term.id.clone(), seen)
            })
            .collect();
        Self { ancestors }
    }

    /// Whether `id` is `ancestor` or below it.
    fn is_a(&self, id: &str, ancestor: &str) -> bool {
        self.ancestors.get(id).is_some_and(|a| a.contains(ancestor))
    }
}

/// Links every gold report and measures recall and the false-finding rate.
pub fn evaluate(linker: &Linker, ontology: &Ontology, gold: &GoldSet) -> LinkQuality {
    let hierarchy = Hierarchy::new(ontology);
    let mut terms_of_concept: HashMap<&str, Vec<&str>> = HashMap::new();
    for (term, concept) in ontology.terms.iter().zip(ontology.concepts()) {
        if let Some(concept) = concept {
            terms_of_concept.entry(concept).or_default().push(&term.id);
        }
    }
    let mut q = LinkQuality {
        recall: 0.0,
        false_finding_rate: 0.0,
        gold_pairs: 0,
        found_pairs: 0,
        normal_reports: 0,
        normal_with_finding: 0,
        unmapped_terms: gold.unmapped_terms,
        unknown_headings: gold.unknown_headings.iter().cloned().collect(),
        missed: Vec::new(),
        false_findings: Vec::new(),
    };
    for report in &gold.reports {
        let found: Vec<(&str, String)> = linker
            .link(&report.text)
            .into_iter()
            .filter(|m| !m.negated)
            .flat_map(|m| {
                let ids = terms_of_concept
                    .get(m.cui.as_str())
                    .cloned()
                    .unwrap_or_default();
                ids.into_iter().map(move |id| (id, m.name.clone()))
            })
            .collect();
        for concept in &report.concepts {
            q.gold_pairs += 1;
            if found.iter().any(|(id, _)| hierarchy.is_a(id, concept)) {
                q.found_pairs += 1;
            } else {
                q.missed.push((report.file.clone(), concept.clone()));
            }
        }
        if report.normal {
            q.normal_reports += 1;
            let abnormal: Vec<&String> = found
                .iter()
                .filter(|(id, _)| hierarchy.is_a(id, PHENOTYPIC_ABNORMALITY))
                .map(|(_, name)| name)
                .collect();
            if let Some(name) = abnormal.first() {
                q.normal_with_finding += 1;
                q.false_findings
                    .push((report.file.clone(), (*name).clone()));
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    q.recall = ratio(q.found_pairs, q.gold_pairs);
    q.false_finding_rate = ratio(q.normal_with_finding, q.normal_reports);
    q
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::linker::LinkerConfig;
    use super::super::mesh::{MeshTable, gold_set};
    use super::super::{obo, reports};
    use super::*;

    const OBO: &str = "format-version: 1.2

[Term]
id: HP:0000118
name: Phenotypic abnormality

[Term]
id: HP:0001640
name: Cardiomegaly
xref: UMLS:C0018800
is_a: HP:0000118

[Term]
id: HP:0002202
name: Pleural effusion
xref: UMLS:C0032227
is_a: HP:0000118

[Term]
id: HP:0031457
name: Pulmonary opacity
is_a: HP:0000118
";

    fn report(findings: &str, mesh: &[&str]) -> String {
        let terms: String = mesh.iter().map(|t| format!("<major>{t}</major>")).collect();
        format!(
            "<eCitation><Abstract><AbstractText Label=\"FINDINGS\">{findings}</AbstractText>\
             <AbstractText Label=\"IMPRESSION\">Stable.</AbstractText></Abstract>\
             <MeSH>{terms}</MeSH></eCitation>"
        )
    }

    #[test]
    fn recall_and_false_findings_on_small_reports() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, xml: String| std::fs::write(dir.path().join(name), xml).unwrap();
        // Found: the enlarged cardiac silhouette, and the opacity (Pulmonary opacity has no CUI:
        // keyed by its id). Missed: the effusion (negated). Unmapped: the lung and the device.
        write(
            "1.xml",
            report(
                "The cardiac silhouette is enlarged. No pleural effusion. Opacity at the base.",
                &[
                    "Cardiac Shadow/enlarged",
                    "Pleural Effusion/right",
                    "Opacity/lung",
                    "Lung/hypoinflation",
                ],
            ),
        );
        write(
            "3.xml",
            report("Clear lungs. No pleural effusion.", &["normal"]),
        );
        write(
            "5.xml",
            report("Small right pleural effusion.", &["normal"]),
        );
        write(
            "7.xml",
            report(
                "Catheter.",
                &["Catheters, Indwelling", "Unlisted Heading/x"],
            ),
        );
        write("4.xml", report("Cardiomegaly.", &["Cardiomegaly"])); // held out: never read
        let ontology = obo::parse(OBO, Path::new("t.obo")).unwrap();
        let linker = Linker::from_ontology(&ontology, LinkerConfig::default()).unwrap();
        let gold = gold_set(
            &reports::read_dir(dir.path()).unwrap(),
            &MeshTable::indiana().unwrap(),
        );
        assert_eq!(gold.reports.len(), 3);
        assert_eq!(gold.unmapped_terms, 3);
        let q = evaluate(&linker, &ontology, &gold);
        assert_eq!((q.gold_pairs, q.found_pairs), (3, 2), "{q:?}");
        assert!((q.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((q.normal_reports, q.normal_with_finding), (2, 1));
        assert_eq!(q.false_finding_rate, 0.5);
        assert_eq!(
            q.missed,
            [(dir.path().join("1.xml"), "HP:0002202".to_owned())]
        );
        assert_eq!(q.false_findings[0].1, "Pleural effusion");
        assert_eq!(q.unknown_headings, ["Unlisted Heading"]);
    }
}
