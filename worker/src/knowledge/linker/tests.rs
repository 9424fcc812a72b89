//! The linker on small dictionaries and on the real HPO.

use super::*;

fn linker() -> Linker {
    let entry = |cui: &str, name: &str, phrases: &[(&str, bool)]| {
        (
            cui.to_owned(),
            name.to_owned(),
            phrases.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect(),
        )
    };
    Linker::new(
        [
            entry("C0032326", "Pneumothorax", &[("Pneumothorax", false)]),
            entry(
                "C0018800",
                "Cardiomegaly",
                &[("Cardiomegaly", false), ("Enlarged heart", false)],
            ),
            entry(
                "C0032227",
                "Pleural effusion",
                &[("Pleural effusion", false)],
            ),
            entry(
                "C0018802",
                "Congestive heart failure",
                &[("Congestive heart failure", false), ("CHF", true)],
            ),
            entry("C0205082", "Severe", &[("Severe", false)]),
        ],
        LinkerConfig::default(),
    )
    .unwrap()
}

fn spans(text: &str) -> Vec<(String, &'static str, bool, bool)> {
    let cuis = ["C0032326", "C0018800", "C0032227", "C0018802", "C0205082"];
    linker()
        .link(text)
        .into_iter()
        .map(|m| {
            let cui = cuis.into_iter().find(|c| *c == m.cui).unwrap();
            (
                text.chars()
                    .skip(m.start_char)
                    .take(m.end_char - m.start_char)
                    .collect(),
                cui,
                m.negated,
                m.uncertain,
            )
        })
        .collect()
}

#[test]
fn negation_plurals_offsets_and_stop_terms() {
    let text = "No pneumothorax. Severe cardiomegaly with small bilateral pleural effusions.";
    assert_eq!(
        spans(text),
        [
            ("pneumothorax".to_owned(), "C0032326", true, false),
            ("cardiomegaly".to_owned(), "C0018800", false, false),
            ("pleural effusions".to_owned(), "C0032227", false, false),
        ]
    );
    let mentions = linker().link(text);
    assert_eq!((mentions[0].start_char, mentions[0].end_char), (3, 15));
    assert_eq!((mentions[2].start_char, mentions[2].end_char), (58, 75));
}

#[test]
fn synonyms_hyphens_uncertainty_and_terminators() {
    assert_eq!(
        spans("The heart is enlarged-heart like."),
        [("enlarged-heart".to_owned(), "C0018800", false, false)]
    );
    assert_eq!(
        spans("Possible small pleural effusion."),
        [("pleural effusion".to_owned(), "C0032227", false, true)]
    );
    assert_eq!(
        spans("No pneumothorax but new cardiomegaly."),
        [
            ("pneumothorax".to_owned(), "C0032326", true, false),
            ("cardiomegaly".to_owned(), "C0018800", false, false)
        ]
    );
    assert_eq!(
        spans("Pleural effusion has resolved."),
        [("Pleural effusion".to_owned(), "C0032227", true, false)]
    );
}

#[test]
fn umls_dictionaries_keep_the_configured_semantic_types() {
    let row = |cui: &str, tty: &str, name: &str, pref: bool| ConceptName {
        cui: cui.into(),
        source: "MSH".into(),
        term_type: tty.into(),
        name: name.into(),
        preferred: pref,
    };
    let names = [
        row("C0018800", "SY", "Enlarged heart", false),
        row("C0018800", "MH", "Cardiomegaly", true),
        row("C0018787", "MH", "Heart", true),
        row("C0024115", "ACR", "LUNG", false),
    ];
    let sty = |cui: &str, tui: &str, name: &str| SemanticType {
        cui: cui.into(),
        tui: tui.into(),
        name: name.into(),
    };
    let types = [
        sty("C0018800", "T047", "Disease or Syndrome"),
        sty("C0018787", "T023", "Body Part, Organ, or Organ Component"),
        sty("C0024115", "T023", "Body Part, Organ, or Organ Component"),
    ];
    let cfg = LinkerConfig {
        semantic_types: vec!["Disease or Syndrome".into()],
        ..LinkerConfig::default()
    };
    let text = "Enlarged heart; heart normal. LUNG clear, lung clear.";
    let diseases = Linker::from_umls(&names, &types, cfg).unwrap();
    let found: Vec<(usize, String, String)> = diseases
        .link(text)
        .into_iter()
        .map(|m| (m.start_char, m.cui, m.name))
        .collect();
    assert_eq!(found, [(0, "C0018800".into(), "Cardiomegaly".into())]);
    let all = Linker::from_umls(&names, &types, LinkerConfig::default()).unwrap();
    let starts: Vec<usize> = all.link(text).iter().map(|m| m.start_char).collect();
    assert_eq!(starts, [0, 16, 30], "the acronym matches only in capitals");
}

#[test]
fn abbreviations_match_only_with_their_case() {
    assert_eq!(
        spans("History of CHF."),
        [("CHF".to_owned(), "C0018802", false, false)]
    );
    assert!(spans("chf").is_empty());
}

/// The HPO dictionary of data/hpo/hp.obo (installed by scripts/setup).
fn hpo() -> &'static Linker {
    static HPO: std::sync::OnceLock<Linker> = std::sync::OnceLock::new();
    HPO.get_or_init(|| {
        let obo = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/hpo/hp.obo");
        Linker::from_obo_file(std::path::Path::new(obo)).unwrap()
    })
}

/// (surface, CUI, negated) of every mention.
fn hpo_spans(text: &str) -> Vec<(String, String, bool)> {
    hpo()
        .link(text)
        .into_iter()
        .map(|m| {
            let surface = text
                .chars()
                .skip(m.start_char)
                .take(m.end_char - m.start_char)
                .collect();
            (surface, m.cui, m.negated)
        })
        .collect()
}

fn span(surface: &str, cui: &str, negated: bool) -> (String, String, bool) {
    (surface.to_owned(), cui.to_owned(), negated)
}

const CALCINOSIS: &str = "C0006663";
const EFFUSION: &str = "C0032227";
const CARDIOMEGALY: &str = "C0018800";
/// HPO gives Granuloma no CUI: it is keyed by its own id.
const GRANULOMA: &str = "HP:0032252";

#[test]
fn derived_forms_link_to_their_hpo_concept() {
    assert_eq!(
        hpo_spans("Calcified granuloma. Scattered calcifications."),
        [
            span("Calcified", CALCINOSIS, false),
            span("granuloma", GRANULOMA, false),
            span("calcifications", CALCINOSIS, false)
        ]
    );
    assert_eq!(
        hpo_spans("Atherosclerotic aorta."),
        [span("Atherosclerotic", "C0004153", false)]
    );
    assert_eq!(
        hpo_spans("Mild dextroscoliosis of the thoracic spine."),
        [span("dextroscoliosis", "C0037932", false)]
    );
}

#[test]
fn paraphrases_link_and_negate() {
    assert_eq!(
        hpo_spans("The cardiac silhouette is enlarged."),
        [span("cardiac silhouette is enlarged", CARDIOMEGALY, false)]
    );
    assert_eq!(
        hpo_spans("The cardiac silhouette is not enlarged."),
        [span(
            "cardiac silhouette is not enlarged",
            CARDIOMEGALY,
            true
        )]
    );
    assert_eq!(
        hpo_spans("Blunting of the costophrenic angle."),
        [span("Blunting of the costophrenic angle", EFFUSION, false)]
    );
    assert_eq!(
        hpo_spans("No blunting of the costophrenic angle."),
        [span("blunting of the costophrenic angle", EFFUSION, true)]
    );
}

#[test]
fn negation_reaches_across_lists_but_not_past_change() {
    let spans = hpo_spans("No focal airspace consolidation, pleural effusion or pneumothorax.");
    assert!(spans.iter().all(|s| s.2), "{spans:?}");
    let cuis: Vec<&str> = spans.iter().map(|s| s.1.as_str()).collect();
    assert!(cuis.ends_with(&[EFFUSION, "C0032326"]), "{spans:?}");
    let spans = hpo_spans("No pneumothorax, and there is a small pleural effusion.");
    assert_eq!(
        spans.last().unwrap(),
        &span("pleural effusion", EFFUSION, false)
    );
    assert_eq!(
        hpo_spans("No change in the calcified granuloma."),
        [
            span("calcified", CALCINOSIS, false),
            span("granuloma", GRANULOMA, false)
        ]
    );
    assert_eq!(
        hpo_spans("No pneumothorax. Severe cardiomegaly with small bilateral pleural effusions."),
        [
            span("pneumothorax", "C0032326", true),
            span("cardiomegaly", CARDIOMEGALY, false),
            span("pleural effusions", EFFUSION, false)
        ]
    );
}

#[test]
fn misspellings_are_corrected_and_other_words_left_alone() {
    assert_eq!(
        hpo_spans("Small left pneumothoraxes."),
        [span("pneumothoraxes", "C0032326", false)]
    );
    assert_eq!(
        hpo_spans("Western blot, showing cardiomegaly."),
        [span("cardiomegaly", CARDIOMEGALY, false)]
    );
    assert!(hpo_spans("The silhouette is unremarkable.").is_empty());
}

#[test]
fn terms_without_a_cui_link_by_their_id() {
    assert_eq!(
        hpo_spans("Bibasilar airspace disease. Elevation of the right hemidiaphragm."),
        [
            span("airspace disease", "HP:0031457", false),
            span("Elevation of the right hemidiaphragm", "HP:6000008", false)
        ]
    );
    assert_eq!(
        hpo_spans("No pleural thickening or nodules."),
        [
            span("pleural thickening", "HP:0031944", true),
            span("nodules", "HP:0033608", true)
        ]
    );
}
