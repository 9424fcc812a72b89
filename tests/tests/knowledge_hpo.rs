//! The ontology readers on the real Human Phenotype Ontology release that `scripts/setup`
//! installs into data/hpo/ (hp.obo and phenotype.hpoa, release 2025-01-16).

use std::path::PathBuf;

use arl_tests::workspace_root;
use arl_worker::knowledge::obo::SynonymScope;
use arl_worker::knowledge::{hpoa, obo};

fn hpo_file(name: &str) -> PathBuf {
    let path = workspace_root().join("data/hpo").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup",
        path.display()
    );
    path
}

#[test]
fn hp_obo_has_its_live_terms_cuis_and_chest_findings() {
    let ontology = obo::read(&hpo_file("hp.obo")).unwrap();
    assert_eq!(ontology.version.as_deref(), Some("hp/releases/2025-01-16"));
    assert_eq!(ontology.terms.len(), 19_034);
    assert_eq!(
        ontology.terms.iter().filter(|t| !t.umls.is_empty()).count(),
        11_513
    );
    let cardiomegaly = ontology
        .terms
        .iter()
        .find(|t| t.id == "HP:0001640")
        .unwrap();
    assert_eq!(cardiomegaly.name, "Cardiomegaly");
    assert_eq!(cardiomegaly.umls, ["C0018800"]);
    assert!(
        cardiomegaly
            .synonyms
            .iter()
            .any(|s| s.text == "Enlarged heart"
                && s.scope == SynonymScope::Exact
                && s.kind.as_deref() == Some("layperson"))
    );
    let effusion = ontology
        .terms
        .iter()
        .find(|t| t.id == "HP:0002202")
        .unwrap();
    assert_eq!(
        (effusion.name.as_str(), effusion.umls.as_slice()),
        ("Pleural effusion", &["C0032227".to_owned()][..])
    );
}

#[test]
fn phenotype_hpoa_links_diseases_to_phenotypes() {
    let rows = hpoa::read(&hpo_file("phenotype.hpoa")).unwrap();
    assert_eq!(rows.len(), 271_702);
    assert!(rows.iter().any(|r| r.negated));
    assert!(rows.iter().all(|r| r.phenotype.starts_with("HP:")));
}
