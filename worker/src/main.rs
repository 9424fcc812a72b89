//! `arl-worker`: one rank of an arl job, started by the `arl` launcher with the standard rank
//! environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`; see cluster/README.md).

use anyhow::Context;
use std::process::ExitCode;

use arl_worker::{bench, dist::DistArgs, preflight};
use clap::{Parser, Subcommand};
use tch::{Device, Kind};

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

#[derive(Subcommand)]
enum Command {
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
    /// Time all-reduce for `arl bench allreduce`.
    BenchAllreduce {
        #[command(flatten)]
        dist: DistArgs,
        /// Sizes in MiB, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
        sizes_mb: Vec<usize>,
        /// Untimed iterations per size.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed iterations per size.
        #[arg(long, default_value_t = 20)]
        iters: usize,
    },
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
    /// Print a model preset's config as JSON (the Python side of `arl bench model` reads it).
    ModelConfig {
        /// Preset: tiny or base.
        #[arg(long, default_value = "tiny")]
        preset: String,
    },
    /// Time one pretraining step for `arl bench model` (forward + backward) or, with `--full`,
    /// `arl bench pretrain` (forward + backward, gradient clipping, AdamW).
    BenchModel {
        /// Preset: tiny or base.
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[command(flatten)]
        shape: bench::StepShape,
        /// Timed steps.
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Intra-op threads.
        #[arg(long, default_value_t = 2)]
        threads: i32,
        /// The whole training step.
        #[arg(long)]
        full: bool,
    },
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
    /// Stream a sharded dataset as rank RANK of WORLD and print each step's samples as a JSON
    /// line (`{"step", "samples": [[image_id, text], …], "state"}`), then the cache counters.
    StreamCheck {
        /// Dataset URL (a folder with index.json, or one ARL .arrow file).
        #[arg(long)]
        url: String,
        /// Local cache folder.
        #[arg(long)]
        cache: std::path::PathBuf,
        /// Cache size cap in MiB.
        #[arg(long, default_value_t = 1024)]
        cache_mb: u64,
        /// Samples per step over all ranks.
        #[arg(long)]
        global_batch: usize,
        /// Steps to draw.
        #[arg(long)]
        steps: usize,
        /// This rank.
        #[arg(long, default_value_t = 0)]
        rank: usize,
        /// Ranks.
        #[arg(long, default_value_t = 1)]
        world: usize,
        /// Sampler seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Resume: epoch.
        #[arg(long, default_value_t = 0)]
        epoch: u64,
        /// Resume: samples of the epoch consumed by all ranks.
        #[arg(long, default_value_t = 0)]
        consumed: u64,
    },
    /// Time decode + `clip` transform of image files on one thread (for `arl bench data`).
    BenchImages {
        /// Output side.
        #[arg(long, default_value_t = 288)]
        size: u32,
        /// Passes over the files; the median pass is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Image files.
        files: Vec<std::path::PathBuf>,
    },
    /// Convert a published dataset to shards (for `arl data convert`).
    Convert {
        /// Which dataset.
        #[arg(long, value_enum)]
        dataset: arl_worker::convert::Dataset,
        /// The dataset's folder, in its released layout.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Output: a local folder or an object-store URL; one dataset per split below it.
        #[arg(long)]
        output: String,
        /// VQA-RAD: hold out this fraction of the training images as validation instead of
        /// `valset.json` (a copy of the test set in the MEVF release).
        #[arg(long)]
        val_holdout: Option<f64>,
        /// Seed of the hold-out draw.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// MELINDA: the label column.
        #[arg(long, default_value = "p_meth_label")]
        melinda_label: String,
        /// ROCO: MedICaT's folder, for the inline references of ROCO images.
        #[arg(long)]
        medicat: Option<std::path::PathBuf>,
        /// Image bytes per shard, MiB.
        #[arg(long, default_value_t = 256)]
        shard_mb: usize,
        /// OBO ontology of the entity linker (data/hpo/hp.obo).
        #[arg(long)]
        ontology: std::path::PathBuf,
    },
    /// Write the synthetic chest-radiograph benchmark (for `arl data synth`).
    Synth {
        /// Output: a local folder, or an object-store URL (written through a local staging
        /// folder).
        #[arg(long)]
        output: String,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scenes (images).
        #[arg(long, default_value_t = 2000)]
        size: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 256)]
        image_size: u32,
        /// Image bytes per shard, MiB.
        #[arg(long, default_value_t = 16)]
        shard_mb: usize,
        /// Rendering threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// OBO ontology of the entity linker (data/hpo/hp.obo).
        #[arg(long)]
        ontology: std::path::PathBuf,
    },
    /// Learn a byte-level BPE tokenizer from text files (for `arl data tokenizer`).
    TrainTokenizer {
        /// Text files, one or more.
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<std::path::PathBuf>,
        /// Tokens in the vocabulary, the five special ones included.
        #[arg(long, default_value_t = 1000)]
        vocab_size: usize,
        /// The `tokenizer.json` to write.
        #[arg(long)]
        output: std::path::PathBuf,
    },
    /// Describe a dataset and write a contact sheet of its images (for `arl data inspect`).
    Inspect {
        /// Dataset URL or local folder.
        url: String,
        /// Rows to print.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Images on the contact sheet.
        #[arg(long, default_value_t = 16)]
        images: usize,
        /// Where to write the contact sheet PNG.
        #[arg(long, default_value = "contact-sheet.png")]
        sheet: std::path::PathBuf,
    },
    /// Write a dataset to an object-store URL and time streaming it (for `arl bench data`).
    BenchStream {
        /// Object-store folder to write the dataset into (credentials from the environment).
        #[arg(long)]
        url: String,
        /// Local scratch folder (the dataset before upload, the caches).
        #[arg(long)]
        work: std::path::PathBuf,
        /// Total image bytes, MiB.
        #[arg(long, default_value_t = 128)]
        total_mb: usize,
        /// One image, KiB.
        #[arg(long, default_value_t = 64)]
        image_kb: usize,
        /// Image bytes per shard, MiB.
        #[arg(long, default_value_t = 8)]
        shard_mb: usize,
        /// Rounds; the median counts.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Save a preset's state with AdamW moments several times and time each save (for `arl
    /// bench checkpoint`).
    BenchCheckpoint {
        /// Checkpoint location: a local folder or an object-store URL.
        #[arg(long)]
        location: String,
        /// Model preset: tiny or base.
        #[arg(long, default_value = "base")]
        preset: String,
        /// Entities in the knowledge graph.
        #[arg(long, default_value_t = 0)]
        entities: i64,
        /// Saves; the median counts.
        #[arg(long, default_value_t = 3)]
        saves: usize,
        /// Write the state's tensor names and shapes here as JSON (for the Python peer).
        #[arg(long)]
        layout_out: Option<std::path::PathBuf>,
    },
    /// Time entity linking over the Indiana University reports (for `arl bench link`).
    BenchLink {
        /// OBO ontology for the dictionary.
        #[arg(long)]
        ontology: std::path::PathBuf,
        /// Folder of report XML files.
        #[arg(long)]
        reports: std::path::PathBuf,
        /// Passes over all reports (the median is reported).
        #[arg(long, default_value_t = 5)]
        passes: usize,
    },
    /// Time a square matrix multiply (the GPU check's throughput figure).
    BenchMatmul {
        /// Element type.
        #[arg(long, value_enum, default_value_t = MatmulKind::Bf16)]
        kind: MatmulKind,
        /// Matrix size.
        #[arg(long, default_value_t = 8192)]
        size: i64,
        /// Timed iterations.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Device: `cuda` (GPU 0 when present, else CPU) or `cpu`.
        #[arg(long, default_value = "cuda")]
        device: String,
    },
}

/// `--kind` values of `bench-matmul`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum MatmulKind {
    Bf16,
    F16,
    F32,
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
            let rank = std::env::var("RANK").unwrap_or_else(|_| "?".into());
            eprintln!("arl-worker rank {rank}: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Preflight { dist } => {
            let (group, device) = dist.join()?;
            let report = preflight::run(&group, device)?;
            if group.rank() == 0 {
                println!("{}", serde_json::to_string(&report)?);
            }
            group.shutdown()?;
        }
        Command::Pretrain {
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
        Command::Finetune {
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
        Command::CheckFinetune { config, job } => {
            let table = read_config(&config)?;
            arl_worker::finetune::config::FinetuneConfig::from_table(&table, &job)
                .and_then(|_| arl_worker::train::config::PretrainConfig::from_table(&table))
                .with_context(|| format!("config {}", config.display()))?;
        }
        Command::CheckPretrain { config } => {
            let table = read_config(&config)?;
            arl_worker::train::config::PretrainConfig::from_table(&table)
                .with_context(|| format!("config {}", config.display()))?;
        }
        Command::BenchAllreduce {
            dist,
            sizes_mb,
            warmup,
            iters,
        } => {
            let (group, device) = dist.join()?;
            for size_mb in sizes_mb {
                let timing = bench::time_allreduce(&group, device, size_mb, warmup, iters)?;
                if group.rank() == 0 {
                    println!("{}", serde_json::to_string(&timing)?);
                }
            }
            group.shutdown()?;
        }
        Command::ModelSummary {
            preset,
            config,
            entities,
        } => {
            use arl_worker::model::config::ModelConfig;
            let (cfg, source) = match config {
                Some(path) => (
                    ModelConfig::from_toml_file(&path)?,
                    format!("config={}", path.display()),
                ),
                None => (ModelConfig::preset(&preset)?, format!("preset={preset}")),
            };
            println!("model {source} entities={entities}");
            println!("{}", arl_worker::model::summary::summarize(&cfg, entities));
        }
        Command::ModelConfig { preset } => {
            let cfg = arl_worker::model::config::ModelConfig::preset(&preset)?;
            println!("{}", serde_json::to_string(&cfg)?);
        }
        Command::BenchModel {
            preset,
            shape,
            iters,
            threads,
            full,
        } => {
            let cfg = arl_worker::model::config::ModelConfig::preset(&preset)?;
            tch::set_num_threads(threads);
            if full {
                let timing = bench::time_full_step(&cfg, shape, iters.max(1));
                println!("{}", serde_json::to_string(&timing)?);
            } else {
                let median_s = bench::time_pretrain_step(&cfg, shape, iters.max(1));
                println!(
                    "{}",
                    serde_json::json!({ "median_s": median_s, "batch": shape.batch })
                );
            }
        }
        Command::KnowledgeBuild { config, threads } => {
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
        Command::KnowledgeLink { ontology, text } => {
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
        Command::StreamCheck {
            url,
            cache,
            cache_mb,
            global_batch,
            steps,
            rank,
            world,
            seed,
            epoch,
            consumed,
        } => {
            use arl_worker::data::{sampler, stream};
            use std::sync::atomic::Ordering::Relaxed;
            let source = stream::ShardSource::open(&url, &cache, cache_mb << 20)?;
            let cfg = sampler::SamplerConfig {
                seed,
                ..sampler::SamplerConfig::default()
            };
            let state = sampler::SamplerState { epoch, consumed };
            let items = source.manifest().items_per_shard();
            let order = sampler::Sampler::new(items, cfg, global_batch, (rank, world), state)?;
            let mut stream = stream::RankStream::new(source, order, 2);
            for step in 0..steps {
                let step_samples = stream.next_batch();
                for bad in &step_samples.bad {
                    eprintln!("skipped a sample: {}", bad.reason);
                }
                let samples: Vec<(String, usize)> = step_samples
                    .samples
                    .into_iter()
                    .map(|s| (s.row.image_id, s.text))
                    .collect();
                let state = stream.sampler().state();
                println!(
                    "{}",
                    serde_json::json!({"step": step, "samples": samples,
                        "state": {"epoch": state.epoch, "consumed": state.consumed}})
                );
            }
            let stats = stream.source().stats();
            println!(
                "{}",
                serde_json::json!({"hits": stats.hits.load(Relaxed),
                    "prefetched": stats.prefetched.load(Relaxed),
                    "downloads": stats.downloads.load(Relaxed),
                    "downloaded_bytes": stats.downloaded_bytes.load(Relaxed),
                    "corrupt": stats.corrupt.load(Relaxed)})
            );
        }
        Command::Convert {
            dataset,
            input,
            output,
            val_holdout,
            seed,
            melinda_label,
            medicat,
            shard_mb,
            ontology,
        } => {
            use arl_worker::convert;
            let linker = arl_worker::knowledge::linker::Linker::from_obo_file(&ontology)?;
            let rad_validation = match val_holdout {
                Some(fraction) => {
                    anyhow::ensure!(
                        (0.0..1.0).contains(&fraction),
                        "--val-holdout {fraction}: need a fraction in [0, 1)"
                    );
                    convert::vqa::RadValidation::Holdout { fraction, seed }
                }
                None => convert::vqa::RadValidation::Valset,
            };
            let options = convert::ConvertOptions {
                rad_validation,
                melinda_label,
                shard_mb,
                medicat,
            };
            let summary = to_output(&output, |dir| {
                convert::convert(dataset, &input, dir, &linker, &options)
            })?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Synth {
            output,
            seed,
            size,
            image_size,
            shard_mb,
            threads,
            ontology,
        } => {
            let linker = arl_worker::knowledge::linker::Linker::from_obo_file(&ontology)?;
            let cfg = arl_worker::synth::SynthConfig {
                seed,
                scenes: size,
                image_size,
                shard_mb,
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            };
            let summary = to_output(&output, |dir| {
                arl_worker::synth::generate(&cfg, &linker, dir)
            })?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::TrainTokenizer {
            corpus,
            vocab_size,
            output,
        } => {
            let files: Vec<&std::path::Path> = corpus.iter().map(|p| p.as_path()).collect();
            arl_worker::data::tokenizer_train::train_bpe(&files, vocab_size, &output)?;
            println!(
                "tokenizer with {vocab_size} tokens written to {}",
                output.display()
            );
        }
        Command::Inspect {
            url,
            samples,
            images,
            sheet,
        } => {
            let cache = std::env::temp_dir().join(format!("arl-inspect-{}", std::process::id()));
            let text = arl_worker::data::inspect::inspect(&url, &cache, samples, images, &sheet);
            let _ = std::fs::remove_dir_all(&cache);
            print!("{}", text?);
            println!("contact sheet: {}", sheet.display());
        }
        Command::BenchStream {
            url,
            work,
            total_mb,
            image_kb,
            shard_mb,
            rounds,
        } => {
            let size = arl_worker::stream_bench::StreamBenchSize {
                total_mb,
                image_kb,
                shard_mb,
            };
            let timing = arl_worker::stream_bench::time_stream(&url, &work, size, rounds)?;
            println!("{}", serde_json::to_string(&timing)?);
        }
        Command::BenchCheckpoint {
            location,
            preset,
            entities,
            saves,
            layout_out,
        } => {
            let cfg = arl_worker::model::config::ModelConfig::preset(&preset)?;
            let timing = arl_worker::checkpoint_bench::time_checkpoint(
                &location,
                &cfg,
                entities,
                saves.max(1),
                layout_out.as_deref(),
            )?;
            println!("{}", serde_json::to_string(&timing)?);
        }
        Command::BenchImages {
            size,
            passes,
            files,
        } => {
            tch::set_num_threads(1);
            let rate = bench::time_images(&files, size, passes)?;
            println!("{}", serde_json::json!({ "images_per_s": rate }));
        }
        Command::BenchLink {
            ontology,
            reports,
            passes,
        } => {
            use arl_worker::knowledge::{linker, obo, reports as iu};
            let dictionary = obo::read(&ontology)?;
            let linker =
                linker::Linker::from_ontology(&dictionary, linker::LinkerConfig::default())?;
            let texts: Vec<String> = iu::read_dir(&reports)?
                .iter()
                .map(iu::Report::text)
                .collect();
            anyhow::ensure!(
                !texts.is_empty(),
                "no *.xml reports under {}",
                reports.display()
            );
            println!(
                "{}",
                serde_json::to_string(&bench::time_linking(&linker, &texts, passes))?
            );
        }
        Command::BenchMatmul {
            kind,
            size,
            iters,
            device,
        } => {
            let device = match device.as_str() {
                "cuda" => Device::cuda_if_available(),
                "cpu" => Device::Cpu,
                other => anyhow::bail!("--device must be cuda or cpu, not {other:?}"),
            };
            let kind = match kind {
                MatmulKind::Bf16 => Kind::BFloat16,
                MatmulKind::F16 => Kind::Half,
                MatmulKind::F32 => Kind::Float,
            };
            let result = bench::time_matmul(device, kind, size, iters.max(1));
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}

/// Runs `make` on the local folder named by `output`, or, for an object-store URL, on a staging
/// folder whose files are then uploaded under the URL.
fn to_output(
    output: &str,
    make: impl FnOnce(&std::path::Path) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let local = output.strip_prefix("file://").unwrap_or(output);
    if !local.contains("://") {
        return make(std::path::Path::new(local));
    }
    let staging = std::env::temp_dir().join(format!("arl-output-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let summary = make(&staging)?;
    let remote = arl_worker::data::remote::Remote::open(output)?;
    tokio::runtime::Runtime::new()?.block_on(remote.upload_tree(&staging))?;
    std::fs::remove_dir_all(&staging)?;
    Ok(summary)
}

/// A TOML job config as a table.
fn read_config(path: &std::path::Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}
