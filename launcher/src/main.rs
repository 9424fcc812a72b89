//! `arl`: the command-line front of the launcher (see the `arl_launcher` library).

use arl_launcher::{bench, ckpt, config, finetune, run};

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
    /// Validate a config and print it fully resolved.
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
    /// Datasets: the synthetic benchmark, inspection, converters (issue 6).
    #[command(subcommand)]
    Data(DataCommand),
    /// Knowledge: link concepts in a text; build the graph and TransE embeddings (issue 4).
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
    /// Nodes in the job (`launch.nnodes`).
    #[arg(long)]
    nnodes: Option<usize>,
    /// This node's index (`launch.node_rank`).
    #[arg(long)]
    node_rank: Option<usize>,
    /// Host of node 0, which serves the rendezvous (`launch.master_addr`).
    #[arg(long)]
    master_addr: Option<String>,
    /// Rendezvous port (`launch.master_port`).
    #[arg(long)]
    master_port: Option<u16>,
}

impl ConfigArgs {
    /// The `--set` overrides followed by the launch flags, as overrides.
    fn overrides(&self) -> Vec<String> {
        let flags = [
            ("nproc_per_node", self.nproc_per_node.map(|v| v.to_string())),
            ("nnodes", self.nnodes.map(|v| v.to_string())),
            ("node_rank", self.node_rank.map(|v| v.to_string())),
            (
                "master_addr",
                self.master_addr.as_ref().map(|v| format!("{v:?}")),
            ),
            ("master_port", self.master_port.map(|v| v.to_string())),
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
    /// Forward + backward of the four pretraining objectives against the PyTorch reference.
    Model(bench::model::ModelArgs),
    /// The whole pretraining step (objectives, backward, clipping, AdamW) against the reference.
    Pretrain(bench::model::ModelArgs),
    /// Image decode + transform throughput on one core against PIL + torchvision.
    Data(bench::data::DataArgs),
    /// Checkpoint stall and time to durable, to local disk and to a local S3 server.
    Checkpoint(bench::checkpoint::CheckpointArgs),
    /// Entity-linking throughput over the Indiana University reports (one thread).
    Link {
        /// Passes over all reports; the median is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
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

#[derive(Subcommand)]
enum DataCommand {
    /// Write the synthetic chest-radiograph benchmark (pretraining pairs, VQA, classification,
    /// retrieval; train/val/test each) to a folder or object-store URL.
    Synth {
        /// Output folder or URL (s3://, gs://, az://, file://).
        #[arg(long)]
        output: String,
        /// Seed: the same seed gives byte-identical shards.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scenes (images).
        #[arg(long, default_value_t = 2000)]
        size: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 256)]
        image_size: u32,
        /// Rendering threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Learn a RoBERTa-style byte-level BPE tokenizer (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3,
    /// `<mask>` 4) from text files, such as the synthetic benchmark's corpus.txt.
    Tokenizer {
        /// Text files.
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        /// Vocabulary size (the `tiny` preset has 1000).
        #[arg(long, default_value_t = 1000)]
        vocab_size: usize,
        /// The `tokenizer.json` to write.
        #[arg(long)]
        output: PathBuf,
    },
    /// Print a dataset's manifest, counts and first samples with their entities, and write a
    /// contact sheet PNG of its images.
    Inspect {
        /// Dataset folder or URL.
        url: String,
        /// Samples to print.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Images on the contact sheet.
        #[arg(long, default_value_t = 16)]
        images: usize,
        /// Contact sheet file.
        #[arg(long, default_value = "contact-sheet.png")]
        sheet: PathBuf,
    },
    /// Convert a published dataset in its released layout to shards, one dataset per split
    /// (roco, roco-retrieval, medicat, mimic-cxr, vqa-rad, slake, vqa-med-2019, melinda,
    /// pydicom-data). The options are the worker's: `arl data convert --help` lists them;
    /// `--ontology` defaults to data/hpo/hp.obo.
    #[command(disable_help_flag = true)]
    Convert {
        /// --dataset, --input, --output and the dataset's options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("arl: error: {error:#}");
            ExitCode::FAILURE
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
    config: &config::Config,
    job: &str,
    mode: finetune::Mode,
) -> anyhow::Result<ExitCode> {
    let mut config = config.clone();
    if let Some(prepare) = config.prepare.clone().filter(|p| p.synthetic) {
        arl_launcher::prepare::prepare(&mut config, &prepare)?;
    }
    let finetuned = finetune::finetune(&config, job, mode)?;
    if let Some(code) = stopped("finetune", finetuned.stopped) {
        return Ok(code);
    }
    match finetune::read_result(&config, job)? {
        Some(result) => eprintln!(
            "arl finetune: {job} done: {}; {}",
            finetune::describe(&result["test"]),
            finetuned.dir.join("result.json").display()
        ),
        None => eprintln!("arl finetune: {job} stopped before its end"),
    }
    Ok(ExitCode::SUCCESS)
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let load = |args: &ConfigArgs| config::Config::load(args.config.as_deref(), &args.overrides());
    match command {
        Command::Run(args) => match run::run(&load(&args)?)? {
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
            print!("{}", arl_launcher::ablate::ablate(&load(&args)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            print!("{}", toml::to_string(&load(&args)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Allreduce(args)) => {
            bench::allreduce::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Data(args)) => {
            bench::data::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Checkpoint(args)) => {
            bench::checkpoint::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Link { passes }) => {
            bench::link::run(passes)?;
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
            let mut command = std::process::Command::new(arl_launcher::paths::worker_binary()?);
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
            let pretrained = arl_launcher::pretrain::pretrain(&load(&config)?, stop_at)?;
            if let Some(code) = stopped("pretrain", pretrained.stopped) {
                return Ok(code);
            }
            let dir = &pretrained.dir;
            eprintln!(
                "arl pretrain: done; step log {}, TensorBoard: tensorboard --logdir {}",
                dir.join("rank0.jsonl").display(),
                dir.join("tensorboard").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Finetune {
            config,
            job,
            stop_at,
        } => finetune_command(&load(&config)?, &job, finetune::Mode::Train(stop_at)),
        Command::Eval { config, job } => {
            finetune_command(&load(&config)?, &job, finetune::Mode::Evaluate)
        }

        Command::Data(DataCommand::Synth {
            output,
            seed,
            size,
            image_size,
            threads,
        }) => {
            let mut command = std::process::Command::new(arl_launcher::paths::worker_binary()?);
            command
                .args(["synth", "--output", &output, "--seed", &seed.to_string()])
                .args(["--size", &size.to_string()])
                .args(["--image-size", &image_size.to_string()])
                .arg("--ontology")
                .arg(arl_launcher::paths::project_file("data/hpo/hp.obo")?);
            if let Some(threads) = threads {
                command.args(["--threads", &threads.to_string()]);
            }
            Ok(exit_code(command.status()?))
        }
        Command::Data(DataCommand::Tokenizer {
            corpus,
            vocab_size,
            output,
        }) => {
            let status = std::process::Command::new(arl_launcher::paths::worker_binary()?)
                .arg("train-tokenizer")
                .arg("--corpus")
                .args(corpus)
                .args(["--vocab-size", &vocab_size.to_string()])
                .arg("--output")
                .arg(output)
                .status()?;
            Ok(exit_code(status))
        }
        Command::Data(DataCommand::Inspect {
            url,
            samples,
            images,
            sheet,
        }) => {
            let status = std::process::Command::new(arl_launcher::paths::worker_binary()?)
                .args(["inspect", &url, "--samples", &samples.to_string()])
                .args(["--images", &images.to_string()])
                .arg("--sheet")
                .arg(sheet)
                .status()?;
            Ok(exit_code(status))
        }
        Command::Data(DataCommand::Convert { args }) => {
            let mut command = std::process::Command::new(arl_launcher::paths::worker_binary()?);
            command.arg("convert").args(&args);
            if !args
                .iter()
                .any(|a| a.split('=').next() == Some("--ontology"))
            {
                command
                    .arg("--ontology")
                    .arg(arl_launcher::paths::project_file("data/hpo/hp.obo")?);
            }
            Ok(exit_code(command.status()?))
        }
        Command::Knowledge(KnowledgeCommand::Link { text, ontology }) => {
            let ontology = match ontology {
                Some(path) => path,
                None => arl_launcher::paths::project_file("data/hpo/hp.obo")?,
            };
            let status = std::process::Command::new(arl_launcher::paths::worker_binary()?)
                .arg("knowledge-link")
                .arg("--ontology")
                .arg(ontology)
                .arg(text)
                .status()?;
            Ok(exit_code(status))
        }
        Command::Knowledge(KnowledgeCommand::Build { config }) => {
            let status = std::process::Command::new(arl_launcher::paths::worker_binary()?)
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
