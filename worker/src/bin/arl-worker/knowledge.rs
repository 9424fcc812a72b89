//! Knowledge commands: entity linking and the knowledge graph build.

/// Knowledge commands (for `arl knowledge`).
#[derive(clap::Subcommand)]
pub(crate) enum KnowledgeCommand {
    /// Link the concepts of an ontology in a text (mentions with offsets, CUI and negation).
    KnowledgeLink {
        /// OBO ontology whose UMLS-keyed terms form the dictionary (e.g. data/hpo/hp.obo).
        #[arg(long)]
        ontology: std::path::PathBuf,
        /// The text.
        text: String,
    },
    /// Build the entity vocabulary, knowledge subgraph and TransE embeddings from the
    /// `[knowledge]` section of a config file.
    KnowledgeBuild {
        /// Config file with a `[knowledge]` section.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Intra-op threads for TransE.
        #[arg(long, default_value_t = 2)]
        threads: i32,
    },
}

/// Runs `command`.
pub(crate) fn run(command: KnowledgeCommand) -> anyhow::Result<()> {
    match command {
        KnowledgeCommand::KnowledgeLink { ontology, text } => {
            let linker = arl_worker::knowledge::linker::Linker::from_obo_file(&ontology)?;
            for m in linker.link(&text) {
                let surface: String = text
                    .chars()
                    .skip(m.start_char)
                    .take(m.end_char - m.start_char)
                    .collect();
                let flags = [(m.negated, " negated"), (m.uncertain, " uncertain")]
                    .iter()
                    .filter_map(|(on, word)| on.then_some(*word))
                    .collect::<String>();
                println!(
                    "{}-{}\t{}\t{}\t{surface:?}{flags}",
                    m.start_char, m.end_char, m.cui, m.name
                );
            }
        }
        KnowledgeCommand::KnowledgeBuild { config, threads } => {
            use arl_worker::knowledge::build;
            tch::set_num_threads(threads);
            let cfg = build::BuildConfig::from_toml_file(&config)?;
            let r = build::build(&cfg)?;
            println!(
                "knowledge texts={} mentions={} frequent={} entities={} relations={} triples={}",
                r.texts, r.mentions, r.frequent, r.entities, r.relations, r.triples
            );
            if let (Some(before), Some(after)) = (r.untrained, r.trained) {
                println!(
                    "transe held_out={} untrained_mrr={:.4} untrained_hits10={:.4} mrr={:.4} hits10={:.4}",
                    r.held_out, before.mrr, before.hits_at_10, after.mrr, after.hits_at_10
                );
            }
            println!("wrote {}", cfg.output.display());
        }
    }
    Ok(())
}
