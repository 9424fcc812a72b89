//! `arl knowledge build` end to end: the real HPO graph and IU reports (installed by
//! scripts/setup), a UMLS release in miniature (RRF files in the real column layout), both output
//! layouts, determinism, and inputs that fail.

use std::path::Path;
use std::process::Command;

use arl_tests::{release_binary, scratch_dir, workspace_root};
use arl_worker::knowledge::build::{BuildConfig, build};
use arl_worker::knowledge::transe::TransEConfig;
use arl_worker::knowledge::{openke, store};

/// A quick TransE: small width, few epochs.
fn quick_transe() -> TransEConfig {
    TransEConfig {
        dim: 32,
        epochs: 6,
        batches: 20,
        negatives: 5,
        ..TransEConfig::default()
    }
}

fn hpo_config(output: &Path) -> BuildConfig {
    BuildConfig {
        ontology: workspace_root().join("data/hpo/hp.obo"),
        holdout: 0.05,
        output: output.to_owned(),
        transe: quick_transe(),
        ..BuildConfig::default()
    }
}

#[test]
fn the_whole_hpo_graph_trains_transe_well_above_untrained_and_writes_both_layouts() {
    let dir = scratch_dir("kb-hpo");
    let report = build(&hpo_config(&dir)).unwrap();
    assert_eq!(
        (report.entities, report.relations, report.triples),
        (18_393, 1, 22_801)
    );
    assert_eq!(report.held_out, 1_139);
    let (before, after) = (report.untrained.unwrap(), report.trained.unwrap());
    assert!(
        after.mrr > 10.0 * before.mrr && after.hits_at_10 > 10.0 * before.hits_at_10,
        "{before:?} -> {after:?}"
    );
    let (ours, provenance) = store::read(&dir).unwrap();
    let provenance = provenance.unwrap();
    assert_eq!(provenance.ontology, "hp/releases/2025-01-16");
    assert_eq!(provenance.held_out.len(), 1_139);
    std::fs::remove_file(dir.join(store::META_FILE)).unwrap();
    let (openke_graph, none) = store::read(&dir).unwrap();
    assert!(none.is_none());
    assert_eq!(ours, openke_graph, "the two layouts hold the same graph");
    assert_eq!(ours, openke::read(&dir).unwrap());
    let cardiomegaly = ours.entities.iter().find(|e| e.cui == "C0018800").unwrap();
    assert_eq!(cardiomegaly.name, "Cardiomegaly");
    let table = store::read_embeddings(&dir, ours.entities.len()).unwrap();
    assert_eq!(table.size(), [18_393, 32]);
    let error = store::read_embeddings(&dir, 5).unwrap_err().to_string();
    assert!(error.contains("expected 5 rows"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_iu_corpus_bounds_the_vocabulary_and_a_seed_fixes_every_byte() {
    let config = |output: &Path| BuildConfig {
        corpus: vec![workspace_root().join("data/iu_reports/ecgen-radiology")],
        expand_hops: 2,
        holdout: 0.0,
        ..hpo_config(output)
    };
    let (a, b) = (scratch_dir("kb-iu-a"), scratch_dir("kb-iu-b"));
    let report = build(&config(&a)).unwrap();
    assert_eq!(
        report.texts, 1_979,
        "the odd-numbered reports; the even ones are held out"
    );
    assert!(
        report.entities > 20 && report.entities <= report.frequent,
        "{report:?}"
    );
    assert!(
        report.untrained.is_none(),
        "no held-out triples, no metrics"
    );
    let (graph, provenance) = store::read(&a).unwrap();
    let mentions = provenance.unwrap().mentions;
    assert_eq!(mentions.len(), graph.entities.len());
    assert!(
        mentions.iter().filter(|n| **n > 20).count() >= 10,
        "most mentioned findings are in: {mentions:?}"
    );
    build(&config(&b)).unwrap();
    for file in [
        store::EMBEDDING_FILE,
        openke::TRIPLE_FILE,
        openke::ENTITY_FILE,
    ] {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
    // A failing build leaves the previous output as it was.
    let before = std::fs::read(a.join(store::EMBEDDING_FILE)).unwrap();
    let missing = workspace_root().join("data/no-such-corpus.txt");
    let error = build(&BuildConfig {
        corpus: vec![missing.clone()],
        ..config(&a)
    })
    .unwrap_err();
    assert!(
        format!("{error:#}").contains(&missing.display().to_string()),
        "{error:#}"
    );
    let error = build(&BuildConfig {
        min_count: 1_000_000,
        ..config(&a)
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("empty knowledge graph: 1979 texts gave"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(a.join(store::EMBEDDING_FILE)).unwrap(),
        before
    );
    for dir in [a, b] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A UMLS release in miniature: four concepts, one of another semantic type.
fn write_umls(dir: &Path) {
    let conso = "\
C0018800|ENG|P|L1|PF|S1|Y|A1||||MSH|MH|D006332|Cardiomegaly|0|N||
C0018800|ENG|S|L2|PF|S2|N|A2||||MTH|SY|NOCODE|Enlarged heart|0|N||
C0032227|ENG|P|L3|PF|S3|Y|A3||||MSH|MH|D010996|Pleural effusion|0|N||
C0018787|ENG|P|L4|PF|S4|Y|A4||||MSH|MH|D006321|Heart|0|N||
C0034063|ENG|P|L5|PF|S5|Y|A5||||MSH|MH|D011654|Pulmonary edema|0|N||
";
    let rel = "\
C0018800|A1|SCUI|RO|C0032227|A3|SCUI|associated_with|R1||SNOMEDCT_US|SNOMEDCT_US|0|Y|N||
C0034063|A5|SCUI|RO|C0018800|A1|SCUI|associated_with|R2||SNOMEDCT_US|SNOMEDCT_US|0|Y|N||
C0034063|A5|SCUI|RB|C0032227|A3|SCUI||R3||MSH|MSH|0|Y|N||
C0018800|A1|SCUI|RO|C0018787|A4|SCUI|finding_site_of|R4||SNOMEDCT_US|SNOMEDCT_US|0|Y|N||
";
    let sty = "\
C0018800|T047|B2.2.1.2.1|Disease or Syndrome|AT1|256|
C0032227|T047|B2.2.1.2.1|Disease or Syndrome|AT2|256|
C0034063|T047|B2.2.1.2.1|Disease or Syndrome|AT3|256|
C0018787|T023|A1.2.3.1|Body Part, Organ, or Organ Component|AT4|256|
";
    for (name, text) in [
        ("MRCONSO.RRF", conso),
        ("MRREL.RRF", rel),
        ("MRSTY.RRF", sty),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn a_umls_release_builds_with_semantic_type_filters_and_rela_names() {
    let dir = scratch_dir("kb-umls");
    let meta = dir.join("META");
    std::fs::create_dir_all(&meta).unwrap();
    write_umls(&meta);
    let corpus = dir.join("reports.txt");
    std::fs::write(
        &corpus,
        "Enlarged heart. Heart size normal.\nCardiomegaly with pleural effusion.\n\
         Pulmonary edema and effusion. Pleural effusion.\n",
    )
    .unwrap();
    let text = format!(
        "[knowledge]\nontology = {meta:?}\ncorpus = [{corpus:?}]\nmin_count = 1\n\
         output = {:?}\n[knowledge.linker]\nsemantic_types = [\"T047\"]\n\
         [knowledge.transe]\ndim = 8\nepochs = 2\nbatches = 1\n",
        dir.join("out")
    );
    let config_path = dir.join("umls.toml");
    std::fs::write(&config_path, text).unwrap();
    let report = build(&BuildConfig::from_toml_file(&config_path).unwrap()).unwrap();
    // Mentions: cardiomegaly 2, pleural effusion 2, pulmonary edema 1; "heart" is T023.
    assert_eq!((report.mentions, report.frequent), (5, 2));
    let (graph, _) = store::read(&dir.join("out")).unwrap();
    let names: Vec<(&str, &str)> = graph
        .entities
        .iter()
        .map(|e| (e.cui.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("C0032227", "Pleural effusion"),
            ("C0018800", "Cardiomegaly")
        ]
    );
    assert_eq!(graph.relations, ["associated_with"]);
    assert_eq!(graph.triples, [[1, 0, 0]]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = scratch_dir("kb-config");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[knowledge]\n[knowledge.transe]\nepochz = 3\n").unwrap();
    let error = format!("{:#}", BuildConfig::from_toml_file(&path).unwrap_err());
    assert!(
        error.contains("bad.toml") && error.contains("epochz"),
        "{error}"
    );
    std::fs::write(&path, "[knowledge.transe]\np_norm = 3\n").unwrap();
    let error = format!("{:#}", BuildConfig::from_toml_file(&path).unwrap_err());
    assert!(error.contains("p_norm must be 1 or 2"), "{error}");
    std::fs::write(&path, "[model]\npreset = \"tiny\"\n").unwrap();
    let error = format!("{:#}", BuildConfig::from_toml_file(&path).unwrap_err());
    assert!(
        error.ends_with("bad.toml: no [knowledge] section"),
        "{error}"
    );
    for shipped in ["configs/knowledge-hpo.toml", "configs/knowledge-iu.toml"] {
        BuildConfig::from_toml_file(&workspace_root().join(shipped)).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_cli_prints_sizes_and_link_prediction() {
    let dir = scratch_dir("kb-cli");
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        format!(
            "[knowledge]\nontology = {:?}\nholdout = 0.05\noutput = {:?}\n\
             [knowledge.transe]\ndim = 16\nepochs = 1\nbatches = 10\nnegatives = 2\n",
            workspace_root().join("data/hpo/hp.obo"),
            dir.join("out")
        ),
    )
    .unwrap();
    let out = Command::new(release_binary("arl"))
        .args(["knowledge", "build", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("knowledge texts=0 mentions=0 frequent=18393 entities=18393"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("transe held_out=1139 untrained_mrr="),
        "{stdout}"
    );
    assert!(lines[1].contains(" mrr=") && lines[1].contains(" hits10="));
    assert!(dir.join("out").join(store::EMBEDDING_FILE).exists());
    std::fs::remove_dir_all(dir).unwrap();
}
