//! Data commands: stream, convert, synthesise, tokenise and inspect datasets.

/// Data commands (for `arl data`).
#[derive(clap::Subcommand)]
pub(crate) enum DataCommand {
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
    /// Convert a published dataset to shards (for `arl data convert`, which passes its options
    /// on).
    #[command(
        override_usage = "arl data convert --dataset <DATASET> --input <INPUT> --output <OUTPUT> \
                          [OPTIONS]"
    )]
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
        /// MELINDA: the label column (i_meth, p_meth, i_meth_label, p_meth_label).
        #[arg(long, default_value = "p_meth_label")]
        melinda_label: String,
        /// ROCO: MedICaT's folder, for the inline references of ROCO images.
        #[arg(long)]
        medicat: Option<std::path::PathBuf>,
        /// Image bytes per shard, MiB.
        #[arg(long, default_value_t = 256)]
        shard_mb: usize,
        /// OBO ontology of the entity linker (`arl data convert`: data/hpo/hp.obo unless given).
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
        /// OBO ontology of the entity linker (`arl data convert`: data/hpo/hp.obo unless given).
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
    /// Check every sample of a dataset through a job's training path (for `arl data check`).
    #[command(
        override_usage = "arl data check DATASET [--config FILE] [--set KEY=VALUE]… [--job JOB]"
    )]
    CheckData {
        /// Dataset URL or local folder (a folder with index.json, or one ARL .arrow file).
        url: String,
        /// The job config (default: the embedded default, as `arl run` resolves it).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Override a config key (`--set data.max_bad_fraction=0.05`); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// The job whose training path to check: `pretrain` or a fine-tune job's name.
        #[arg(long, default_value = arl_contract::PRETRAIN_JOB)]
        job: String,
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
}

/// Runs `command`.
pub(crate) fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::StreamCheck {
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
                let step_samples = stream.next_batch()?;
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
        DataCommand::Convert {
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
        DataCommand::Synth {
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
        DataCommand::TrainTokenizer {
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
        DataCommand::CheckData {
            url,
            config,
            overrides,
            job,
        } => {
            let mut config = arl_contract::JobConfig::load(config.as_deref(), &overrides)?;
            config.point_at_prepared();
            let within = arl_worker::data_check::run(&config, &job, &url)?;
            anyhow::ensure!(
                within,
                "{url}: more bad samples than data.max_bad_fraction allows"
            );
        }
        DataCommand::Inspect {
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
