//! `arl-worker`: one rank of an arl job, started by the `arl` launcher with the standard rank
//! environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`; see cluster/README.md), and the tools behind `arl data`, `arl knowledge`,
//! `arl model` and `arl bench`.

mod benches;
mod data;
mod jobs;
mod knowledge;
mod model;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arl-worker",
    version,
    about = "One rank of an arl job (started by `arl`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every subcommand, grouped by concern (the groups are flattened: `arl-worker pretrain`).
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Jobs(jobs::JobCommand),
    #[command(flatten)]
    Data(data::DataCommand),
    #[command(flatten)]
    Knowledge(knowledge::KnowledgeCommand),
    #[command(flatten)]
    Model(model::ModelCommand),
    #[command(flatten)]
    Bench(benches::BenchCommand),
}

fn main() -> ExitCode {
    // Warnings (skipped samples, re-fetched shards, missing images) go to stderr; RUST_LOG
    // overrides the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,arl_worker=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A rank of a job says which; a tool run by hand has none.
            match std::env::var("RANK") {
                Ok(rank) => eprintln!("arl-worker rank {rank}: error: {error:#}"),
                Err(_) => eprintln!("arl-worker: error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Jobs(command) => jobs::run(command),
        Command::Data(command) => data::run(command),
        Command::Knowledge(command) => knowledge::run(command),
        Command::Model(command) => model::run(command),
        Command::Bench(command) => benches::run(command),
    }
}
