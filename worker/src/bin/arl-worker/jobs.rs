//! Job commands, started by the launcher: the preflight check and one rank of a pretraining or
//! fine-tune job. Each reads the resolved job config the launcher wrote (`config.toml`), once.

use std::path::PathBuf;

use arl_contract::{Event, JobConfig};
use arl_worker::train::report::emit;
use arl_worker::train::stop::StopRequest;
use arl_worker::{dist, preflight};

/// Job commands (started by the launcher).
#[derive(clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Join the group and check that an all-reduce of the ranks gives the right sum.
    Preflight {
        /// The resolved job config (TOML; `arl check` prints one).
        #[arg(long)]
        config: PathBuf,
    },
    /// Pretrain as one rank of the world (for `arl pretrain` and `arl run`).
    Pretrain {
        /// The resolved job config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Stop after this step (with a checkpoint), as if preempted there.
        #[arg(long)]
        stop_at: Option<u64>,
    },
    /// Fine-tune as one rank of the world (for `arl finetune` and `arl run`): job NAME of the
    /// resolved config (`[finetune.NAME]`), from the pipeline's pretrained weights.
    Finetune {
        /// The resolved job config (TOML).
        #[arg(long)]
        config: PathBuf,
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
}

/// Runs `command`.
pub(crate) fn run(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Preflight { config } => {
            let (group, device) = dist::join(&JobConfig::from_file(&config)?)?;
            let report = preflight::run(&group, device)?;
            if group.rank() == 0 {
                emit(Event::Preflight {
                    world_size: report.world_size,
                    rank_sum: report.rank_sum,
                });
            }
            group.shutdown()?;
        }
        JobCommand::Pretrain { config, stop_at } => {
            let config = JobConfig::from_file(&config)?;
            // Stop signals are caught from here on: one during the rendezvous or the set-up
            // stops the run at its first step boundary instead of killing the rank.
            let stop = StopRequest::install()?;
            let (group, device) = dist::join(&config)?;
            arl_worker::train::pretrain::pretrain(&config, &group, device, stop_at, &stop)?;
            group.shutdown()?;
        }
        JobCommand::Finetune {
            config,
            job,
            stop_at,
            evaluate,
        } => {
            use arl_worker::finetune::run::{Mode, finetune};
            let config = JobConfig::from_file(&config)?;
            let stop = StopRequest::install()?;
            let (group, device) = dist::join(&config)?;
            let mode = if evaluate {
                Mode::Evaluate
            } else {
                Mode::Train(stop_at)
            };
            finetune(&config, &group, device, &job, mode, &stop)?;
            group.shutdown()?;
        }
    }
    Ok(())
}
