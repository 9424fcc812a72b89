//! Job commands: one rank of a pretraining or fine-tune job, the preflight check, and config checks.

use anyhow::Context;

use arl_worker::{dist::DistArgs, preflight};

/// Job commands (started by the launcher).
#[derive(clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Join the group and check that an all-reduce of the ranks gives the right sum.
    Preflight {
        #[command(flatten)]
        dist: DistArgs,
    },
    /// Pretrain as one rank of the world (for `arl pretrain`): the resolved job config's
    /// `[model]`, `[data]`, `[knowledge]`, `[train]`, `[optim]` and `[checkpoint]`.
    Pretrain {
        #[command(flatten)]
        dist: DistArgs,
        /// The resolved job config (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Stop after this step (with a checkpoint), as if preempted there.
        #[arg(long)]
        stop_at: Option<u64>,
    },
    /// Fine-tune as one rank of the world (for `arl finetune` and `arl run`): job NAME of the
    /// resolved config (`[finetune.NAME]`), from the pipeline's pretrained weights.
    Finetune {
        #[command(flatten)]
        dist: DistArgs,
        /// The resolved job config (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
        /// The job (`[finetune.NAME]`).
        #[arg(long)]
        job: String,
        /// Stop after this step (with a checkpoint), as if preempted there.
        #[arg(long)]
        stop_at: Option<u64>,
        /// Do not train: evaluate the selected weights of the finished job again.
        #[arg(long, conflicts_with = "stop_at")]
        evaluate: bool,
    },
    /// Check a fine-tune job's section of a job config without starting anything.
    CheckFinetune {
        /// The resolved job config (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
        /// The job (`[finetune.NAME]`).
        #[arg(long)]
        job: String,
    },
    /// Check the pretraining sections of a job config without starting anything.
    CheckPretrain {
        /// The resolved job config (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// Runs `command`.
pub(crate) fn run(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Preflight { dist } => {
            let (group, device) = dist.join()?;
            let report = preflight::run(&group, device)?;
            if group.rank() == 0 {
                println!("{}", serde_json::to_string(&report)?);
            }
            group.shutdown()?;
        }
        JobCommand::Pretrain {
            dist,
            config,
            stop_at,
        } => {
            let table = read_config(&config)?;
            // Stop signals are caught from here on: one during the rendezvous or the set-up
            // stops the run at its first step boundary instead of killing the rank.
            let stop = arl_worker::train::stop::StopRequest::install()?;
            let (group, device) = dist.join()?;
            arl_worker::train::pretrain::pretrain(&table, &group, device, stop_at, &stop)?;
            group.shutdown()?;
        }
        JobCommand::Finetune {
            dist,
            config,
            job,
            stop_at,
            evaluate,
        } => {
            use arl_worker::finetune::run::{Mode, finetune};
            let table = read_config(&config)?;
            let stop = arl_worker::train::stop::StopRequest::install()?;
            let (group, device) = dist.join()?;
            let mode = if evaluate {
                Mode::Evaluate
            } else {
                Mode::Train(stop_at)
            };
            finetune(&table, &group, device, &job, mode, &stop)?;
            group.shutdown()?;
        }
        JobCommand::CheckFinetune { config, job } => {
            let table = read_config(&config)?;
            arl_worker::finetune::config::FinetuneConfig::from_table(&table, &job)
                .and_then(|_| arl_worker::train::config::PretrainConfig::from_table(&table))
                .with_context(|| format!("config {}", config.display()))?;
        }
        JobCommand::CheckPretrain { config } => {
            let table = read_config(&config)?;
            arl_worker::train::config::PretrainConfig::from_table(&table)
                .with_context(|| format!("config {}", config.display()))?;
        }
    }
    Ok(())
}

/// A TOML job config as a table.
fn read_config(path: &std::path::Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}
