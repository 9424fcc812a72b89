//! `arl`: the command-line front of the launcher (see the `arl_launcher` library).

use anyhow::Context;
use arl_contract::{JobConfig, PRETRAIN_JOB};
use arl_launcher::failure::Failure;
use arl_launcher::{bench, ckpt, finetune, run};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arl",
    version,
    about = "Train ARL: pretraining, fine-tunes and a results table"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole job from one config (default: the embedded CPU demo).
    Run(ConfigArgs),
    /// The paper's ablation (Table 4): the pipeline for every AK/RK/LK combination and from
    /// scratch, then one table (`<run_dir>/ablation.md`).
    Ablate(ConfigArgs),
    /// Validate the whole config (every section, every job of the pipeline) and print it fully
    /// resolved.
    Check(ConfigArgs),
    /// Side-by-side benchmarks against the Python reference.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Inspect the model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Pretraining only: one worker per rank, resuming from the newest committed checkpoint.
    Pretrain {
        #[command(flatten)]
        config: ConfigArgs,
        /// Stop after this step (with a checkpoint), as if preempted there.
        #[arg(long)]
        stop_at: Option<u64>,
    },
    /// One fine-tune job of the config (`[finetune.NAME]`) from the pretrained weights:
    /// one worker per rank, resuming from its newest committed checkpoint.
    Finetune {
        #[command(flatten)]
        config: ConfigArgs,
        /// The job's name.
        #[arg(long)]
        job: String,
        /// Stop after this step (with a checkpoint), as if preempted there.
        #[arg(long)]
        stop_at: Option<u64>,
    },
    /// Evaluate a finished fine-tune job's selected weights on its test split again (one
    /// worker per rank; rewrites its result.json).
    Eval {
        #[command(flatten)]
        config: ConfigArgs,
        /// The job's name.
        #[arg(long)]
        job: String,
    },
    /// Datasets: the synthetic benchmark, tokenizers, inspection, converters.
    #[command(subcommand)]
    Data(DataCommand),
    /// Knowledge: link concepts in a text; build the graph and TransE embeddings.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// Checkpoints: list, verify, export weights.
    #[command(subcommand)]
    Ckpt(ckpt::CkptCommand),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML config; omit for the embedded default (configs/demo.toml).
    config: Option<PathBuf>,
    /// Override one key: `--set section.key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Workers on this node (`launch.nproc_per_node`; 0 = one per GPU).
    #[arg(long)]
    nproc_per_node: Option<usize>,
    /// Nodes in the job (`launch.nnodes`), or `MIN:MAX` to go on with at least MIN nodes
    /// when nodes are lost (`launch.min_nnodes`).
    #[arg(long, value_parser = parse_nnodes)]
    nnodes: Option<(usize, usize)>,
    /// This node's index (`launch.node_rank`).
    #[arg(long)]
    node_rank: Option<usize>,
    /// Host of node 0, which serves the rendezvous (`launch.master_addr`).
    #[arg(long)]
    master_addr: Option<String>,
    /// Rendezvous port (`launch.master_port`).
    #[arg(long)]
    master_port: Option<u16>,
    /// This node's address, bound and advertised to the other nodes (`launch.node_addr`;
    /// default: the local address through which the master is reached).
    #[arg(long)]
    node_addr: Option<String>,
}

impl ConfigArgs {
    /// The `--set` overrides followed by the launch flags, as overrides.
    fn overrides(&self) -> Vec<String> {
        let flags = [
            ("nproc_per_node", self.nproc_per_node.map(|v| v.to_string())),
            ("nnodes", self.nnodes.map(|(_, max)| max.to_string())),
            ("min_nnodes", self.nnodes.map(|(min, _)| min.to_string())),
            ("node_rank", self.node_rank.map(|v| v.to_string())),
            (
                "master_addr",
                self.master_addr.as_ref().map(|v| format!("{v:?}")),
            ),
            ("master_port", self.master_port.map(|v| v.to_string())),
            (
                "node_addr",
                self.node_addr.as_ref().map(|v| format!("{v:?}")),
            ),
        ];
        let mut overrides = self.overrides.clone();
        overrides.extend(
            flags
                .into_iter()
                .filter_map(|(key, value)| Some(format!("launch.{key}={}", value?))),
        );
        overrides
    }
}

/// `--nnodes N` (N to N) or `MIN:MAX`.
fn parse_nnodes(value: &str) -> Result<(usize, usize), String> {
    let number = |s: &str| s.trim().parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    match value.split_once(':') {
        Some((min, max)) => Ok((number(min)?, number(max)?)),
        None => number(value).map(|n| (n, n)),
    }
}

/// The exit code of a run stopped by `signal` after a clean checkpoint (128 + the signal, as
/// shells report it), with what to do next.
fn stopped(command: &str, stopped: Option<(i32, Option<u64>)>) -> Option<ExitCode> {
    let (signal, step) = stopped?;
    let at = step.map_or_else(String::new, |step| {
        format!(" with a checkpoint at step {step}")
    });
    eprintln!("arl {command}: stopped by signal {signal}{at}; run the same command to resume");
    Some(ExitCode::from(128 + signal as u8))
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Our c10d all-reduce against Python torch.distributed (Gloo), in the same run.
    Allreduce(bench::allreduce::AllreduceArgs),
    /// Gradient reduction overlapped with backward against PyTorch's DistributedDataParallel.
    Ddp(bench::ddp::DdpArgs),
    /// Forward + backward of the four pretraining objectives against the PyTorch reference.
    Model(bench::model::ModelArgs),
    /// The whole pretraining step (objectives, backward, clipping, AdamW) against the reference.
    Pretrain(bench::model::ModelArgs),
    /// Image decode + transform throughput on one core against PIL + torchvision.
    Data(bench::data::DataArgs),
    /// Checkpoint stall and time to durable, to local disk and to a local S3 server.
    Checkpoint(bench::checkpoint::CheckpointArgs),
    /// Pretraining under killed and stopped ranks: recovered, and bit-identical to a run
    /// without faults?
    Chaos(bench::chaos::ChaosArgs),
    /// Entity-linking throughput over the odd-numbered Indiana University reports (one thread),
    /// or with `--quality` recall and false-finding rate against their MeSH annotations.
    Link {
        /// Passes over all reports; the median is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Measure linking quality instead of throughput.
        #[arg(long)]
        quality: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Parameters per module and the total, for a preset.
    Summary {
        /// Preset: tiny or base.
        #[arg(long, default_value = "base")]
        preset: String,
        /// A job config whose `[model]` section to use instead of `--preset`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Entities in the knowledge graph (data-dependent: the table is entities × width).
        #[arg(long, default_value_t = 0)]
        entities: i64,
    },
}

#[derive(Subcommand)]
enum KnowledgeCommand {
    /// Print the concepts linked in TEXT: offsets, CUI, name, and negation.
    Link {
        /// The text to link.
        text: String,
        /// OBO ontology (default: data/hpo/hp.obo, installed by scripts/setup).
        #[arg(long)]
        ontology: Option<PathBuf>,
    },
    /// Vocabulary, subgraph and TransE embeddings from an ontology and a corpus, as the
    /// `[knowledge]` section of FILE says (e.g. configs/knowledge-hpo.toml).
    Build {
        /// Config file with a `[knowledge]` section.
        #[arg(long)]
        config: PathBuf,
    },
}

/// The data tools are the worker's: `arl data COMMAND --help` lists each one's options.
#[derive(Subcommand)]
enum DataCommand {
    /// Write the synthetic chest-radiograph benchmark (pretraining pairs, VQA, classification,
    /// retrieval; train/val/test each) to a folder or object-store URL; `--ontology` defaults to
    /// data/hpo/hp.obo.
    #[command(disable_help_flag = true)]
    Synth(Forwarded),
    /// Learn a RoBERTa-style byte-level BPE tokenizer from text files, such as the synthetic
    /// benchmark's corpus.txt.
    #[command(disable_help_flag = true)]
    Tokenizer(Forwarded),
    /// Print a dataset's manifest, counts and first samples with their entities, and write a
    /// contact sheet PNG of its images.
    #[command(disable_help_flag = true)]
    Inspect(Forwarded),
    /// Check every sample of a dataset through a job's training path (decode, transforms,
    /// tokenizer, entities, label ranges): each bad sample named by shard, row and reason;
    /// exits non-zero above data.max_bad_fraction.
    #[command(disable_help_flag = true)]
    Check(Forwarded),
    /// Convert a published dataset in its released layout to shards, one dataset per split
    /// (roco, roco-retrieval, medicat, mimic-cxr, vqa-rad, slake, vqa-med-2019, melinda,
    /// pydicom-data); `--ontology` defaults to data/hpo/hp.obo.
    #[command(disable_help_flag = true)]
    Convert(Forwarded),
}

/// A worker tool's arguments, passed on as they are.
#[derive(clap::Args)]
struct Forwarded {
    /// The tool's options (`--help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl DataCommand {
    /// The worker subcommand, its arguments, and whether it takes the ontology.
    fn worker_command(self) -> (&'static str, Vec<String>, bool) {
        match self {
            Self::Synth(f) => ("synth", f.args, true),
            Self::Tokenizer(f) => ("train-tokenizer", f.args, false),
            Self::Inspect(f) => ("inspect", f.args, false),
            Self::Check(f) => ("check-data", f.args, false),
            Self::Convert(f) => ("convert", f.args, true),
        }
    }
}

/// Runs worker tool `subcommand` with `args` (and data/hpo/hp.obo as `--ontology` when the tool
/// takes one and none is given, unless asking for help).
fn worker_tool(subcommand: &str, args: &[String], ontology: bool) -> anyhow::Result<ExitCode> {
    let mut command = std::process::Command::new(arl_launcher::spawn::worker_binary()?);
    command.arg(subcommand).args(args);
    let given = |flag: &str| args.iter().any(|a| a.split('=').next() == Some(flag));
    if ontology && !given("--ontology") && !given("--help") && !given("-h") {
        command
            .arg("--ontology")
            .arg(arl_launcher::paths::project_file("data/hpo/hp.obo")?);
    }
    Ok(exit_code(command.status()?))
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("arl: error: {error:#}");
            ExitCode::from(arl_launcher::failure::exit_code(&error))
        }
    }
}

/// Success or failure of a worker process.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `arl finetune` and `arl eval`: one job, then its result.
fn finetune_command(
    mut config: JobConfig,
    job: &str,
    mode: finetune::Mode,
) -> anyhow::Result<ExitCode> {
    check(&mut config, &[job.to_owned()])?;
    let config = &config;
    if config.prepare.as_ref().is_some_and(|p| p.synthetic) {
        arl_launcher::prepare::prepare(config)?;
    }
    let finetuned = finetune::finetune(config, job, mode)?;
    if let Some(code) = stopped("finetune", finetuned.stopped()) {
        return Ok(code);
    }
    match finetune::read_result(config, job)? {
        Some(result) => eprintln!(
            "arl finetune: {job} done: {}; {}",
            result.test.describe(),
            config
                .locations()
                .finetune_dir(job)
                .join("result.json")
                .display()
        ),
        None => eprintln!("arl finetune: {job} stopped before its end"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `config` after the check of its pipeline ([`check()`]).
fn checked(mut config: JobConfig) -> anyhow::Result<JobConfig> {
    let jobs = config.jobs();
    check(&mut config, &jobs)?;
    Ok(config)
}

/// The check of `config` for `jobs`; a refusal is a start-up failure.
fn check(config: &mut JobConfig, jobs: &[String]) -> anyhow::Result<()> {
    arl_launcher::check::check(config, jobs).map_err(Failure::start_up)?;
    arl_launcher::model_init::seal(config, jobs)
        .with_context(|| format!("config {}", config.source))
        .map_err(Failure::start_up)?;
    Ok(())
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let load = |args: &ConfigArgs| {
        JobConfig::load(args.config.as_deref(), &args.overrides()).map_err(Failure::start_up)
    };
    match command {
        Command::Run(args) => match run::run(&checked(load(&args)?)?)? {
            run::Outcome::Stopped { job, stopped: at } => {
                eprintln!("arl run: job {job} was stopped");
                Ok(stopped("run", Some(at)).unwrap_or(ExitCode::FAILURE))
            }
            run::Outcome::Done(table) => {
                if let Some(table) = table {
                    print!("{table}");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Ablate(args) => {
            print!("{}", arl_launcher::ablate::ablate(&checked(load(&args)?)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            print!("{}", checked(load(&args)?)?.resolved_toml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Allreduce(args)) => {
            bench::allreduce::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ddp(args)) => {
            bench::ddp::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Data(args)) => {
            bench::data::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Chaos(args)) => {
            bench::chaos::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Checkpoint(args)) => {
            bench::checkpoint::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Link { passes, quality }) => {
            bench::link::run(passes, quality)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Model(args)) => {
            bench::model::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Pretrain(args)) => {
            bench::model::run_pretrain(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Model(ModelCommand::Summary {
            preset,
            config,
            entities,
        }) => {
            let mut command = std::process::Command::new(arl_launcher::spawn::worker_binary()?);
            command.args([
                "model-summary",
                "--preset",
                &preset,
                "--entities",
                &entities.to_string(),
            ]);
            if let Some(path) = config {
                command.arg("--config").arg(path);
            }
            Ok(exit_code(command.status()?))
        }
        Command::Pretrain { config, stop_at } => {
            let mut config = load(&config)?;
            check(&mut config, &[PRETRAIN_JOB.to_owned()])?;
            let pretrained = arl_launcher::pretrain::pretrain(&config, stop_at)?;
            if let Some(code) = stopped("pretrain", pretrained.stopped()) {
                return Ok(code);
            }
            let dir = config.locations().run_dir().to_owned();
            eprintln!(
                "arl pretrain: done; step log {}, TensorBoard: tensorboard --logdir {}",
                arl_contract::locations::events_log(&dir).display(),
                arl_contract::locations::tensorboard_dir(&dir).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Finetune {
            config,
            job,
            stop_at,
        } => finetune_command(load(&config)?, &job, finetune::Mode::Train(stop_at)),
        Command::Eval { config, job } => {
            finetune_command(load(&config)?, &job, finetune::Mode::Evaluate)
        }

        Command::Data(command) => {
            let (subcommand, args, ontology) = command.worker_command();
            worker_tool(subcommand, &args, ontology)
        }
        Command::Knowledge(KnowledgeCommand::Link { text, ontology }) => {
            let ontology = match ontology {
                Some(path) => path,
                None => arl_launcher::paths::project_file("data/hpo/hp.obo")?,
            };
            let status = std::process::Command::new(arl_launcher::spawn::worker_binary()?)
                .arg("knowledge-link")
                .arg("--ontology")
                .arg(ontology)
                .arg(text)
                .status()?;
            Ok(exit_code(status))
        }
        Command::Knowledge(KnowledgeCommand::Build { config }) => {
            let status = std::process::Command::new(arl_launcher::spawn::worker_binary()?)
                .arg("knowledge-build")
                .arg("--config")
                .arg(config)
                .status()?;
            Ok(exit_code(status))
        }
        Command::Ckpt(command) => {
            ckpt::run(&command)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
