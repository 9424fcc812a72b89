//! `arl ckpt …`: list, verify and export the checkpoints at a local folder or object-store URL.

use anyhow::{Context, bail};
use arl_checkpoints::export::export_weights;
use arl_checkpoints::{Checkpoints, Status};

/// The checkpoint commands.
#[derive(Debug, clap::Subcommand)]
pub enum CkptCommand {
    /// Every checkpoint folder with its status (committed, partial, invalid), size and
    /// training state; reads only markers and manifests.
    List {
        /// Checkpoint location (folder or URL).
        location: String,
    },
    /// Reads checkpoints and checks every file's size and sha256 against the manifest.
    Verify {
        /// Checkpoint location (folder or URL).
        location: String,
        /// The step to verify (default: the newest committed; with --all, every one).
        #[arg(long)]
        step: Option<u64>,
        /// Verify every committed checkpoint.
        #[arg(long, conflicts_with = "step")]
        all: bool,
    },
    /// Writes one tensor group of a verified checkpoint (default: the model's weights, in ARL
    /// parameter names) as a single safetensors file.
    Export {
        /// Checkpoint location (folder or URL).
        location: String,
        /// The file to write (path or URL).
        #[arg(long)]
        output: String,
        /// The step (default: the newest committed).
        #[arg(long)]
        step: Option<u64>,
        /// The tensor group.
        #[arg(long, default_value = "model")]
        group: String,
    },
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.3} GB", bytes as f64 / 1e9)
}

fn newest(checkpoints: &Checkpoints) -> anyhow::Result<u64> {
    Ok(checkpoints
        .latest()?
        .with_context(|| format!("{}: no committed checkpoint", checkpoints.location()))?
        .state
        .step)
}

/// Runs one command, printing its report.
///
/// # Errors
/// The location cannot be read, a checkpoint fails verification (named), or the export fails.
pub fn run(command: &CkptCommand) -> anyhow::Result<()> {
    match command {
        CkptCommand::List { location } => {
            let checkpoints = Checkpoints::open(location)?;
            let listed = checkpoints.list()?;
            if listed.is_empty() {
                println!("{location}: no checkpoints");
            }
            for entry in listed {
                match entry.status {
                    Status::Committed(manifest) => println!(
                        "step {:>10}  committed  {} files  {}  epoch {}  world {}  config {}",
                        entry.step,
                        manifest.files.len(),
                        gigabytes(manifest.tensor_bytes()),
                        manifest.state.epoch,
                        manifest.state.world_size,
                        manifest.state.config_hash.get(..12).unwrap_or("-"),
                    ),
                    Status::Partial => {
                        println!("step {:>10}  partial (no commit marker)", entry.step)
                    }
                    Status::Invalid(reason) => {
                        println!("step {:>10}  invalid: {reason}", entry.step)
                    }
                }
            }
        }
        CkptCommand::Verify {
            location,
            step,
            all,
        } => {
            let checkpoints = Checkpoints::open(location)?;
            let steps = match (step, all) {
                (Some(step), _) => vec![*step],
                (None, true) => checkpoints
                    .committed()?
                    .iter()
                    .map(|m| m.state.step)
                    .collect(),
                (None, false) => vec![newest(&checkpoints)?],
            };
            if steps.is_empty() {
                bail!("{location}: no committed checkpoint");
            }
            for step in steps {
                let loaded = checkpoints.load(step)?;
                println!(
                    "step {step} verified: {} files, {}, every sha256 as recorded",
                    loaded.manifest.files.len(),
                    gigabytes(loaded.manifest.tensor_bytes())
                );
            }
        }
        CkptCommand::Export {
            location,
            output,
            step,
            group,
        } => {
            let checkpoints = Checkpoints::open(location)?;
            let step = match step {
                Some(step) => *step,
                None => newest(&checkpoints)?,
            };
            let loaded = checkpoints.load(step)?;
            let written = export_weights(&loaded, group, output, &[])?;
            println!(
                "exported {group} of step {step} to {output}: {}, sha256 {}",
                gigabytes(written.bytes),
                written.sha256
            );
        }
    }
    Ok(())
}
