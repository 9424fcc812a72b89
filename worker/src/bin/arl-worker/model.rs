//! Model commands: a preset's parameters and config.

/// Model commands (for `arl model`).
#[derive(clap::Subcommand)]
pub(crate) enum ModelCommand {
    /// Print the parameters per module of a model preset.
    ModelSummary {
        /// Preset: tiny or base.
        #[arg(long, default_value = "base")]
        preset: String,
        /// A job config whose `[model]` section to use instead of `--preset`.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Entities in the knowledge graph (data-dependent; the table is entities × width).
        #[arg(long, default_value_t = 0)]
        entities: i64,
    },
    /// Check that the `[model.init]` files of a resolved job config fit its model (for `arl
    /// check`): each loaded as the start of training loads it.
    CheckInit {
        /// The resolved job config.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Print a model preset's config as JSON (the Python side of `arl bench model` reads it).
    ModelConfig {
        /// Preset: tiny or base.
        #[arg(long, default_value = "tiny")]
        preset: String,
    },
}

/// Runs `command`.
pub(crate) fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::ModelSummary {
            preset,
            config,
            entities,
        } => {
            use arl_contract::config::model::ModelConfig;
            let (cfg, source) = match config {
                Some(path) => (
                    arl_contract::JobConfig::from_file(&path)?.model,
                    format!("config={}", path.display()),
                ),
                None => (ModelConfig::preset(&preset)?, format!("preset={preset}")),
            };
            println!("model {source} entities={entities}");
            println!("{}", arl_worker::model::summary::summarize(&cfg, entities));
        }
        ModelCommand::CheckInit { config } => {
            let config = arl_contract::JobConfig::from_file(&config)?;
            for file in arl_worker::model::init_weights::check(&config)? {
                println!(
                    "model.init.{} fits the model: {} ({}, {} tensors)",
                    file.key, file.path, file.format, file.tensors
                );
            }
        }
        ModelCommand::ModelConfig { preset } => {
            let cfg = arl_contract::config::model::ModelConfig::preset(&preset)?;
            println!("{}", serde_json::to_string(&cfg)?);
        }
    }
    Ok(())
}
