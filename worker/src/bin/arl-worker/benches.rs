//! Benchmark commands behind `arl bench`.

use arl_worker::{bench, dist::DistArgs};
use tch::{Device, Kind};

/// Benchmark commands (for `arl bench`).
#[derive(clap::Subcommand)]
#[allow(clippy::enum_variant_names)] // the variants name the subcommands: bench-allreduce, …
pub(crate) enum BenchCommand {
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
    /// Time a data-parallel MLP step with overlapped gradient reduction (for `arl bench ddp`).
    BenchDdp {
        #[command(flatten)]
        dist: DistArgs,
        #[command(flatten)]
        shape: arl_worker::ddp_bench::DdpBenchShape,
        /// Intra-op threads.
        #[arg(long, default_value_t = 1)]
        threads: i32,
        /// Untimed steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        iters: usize,
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
    /// Time entity linking over the Indiana University reports, or with `--quality` measure it
    /// against their MeSH annotations (for `arl bench link`). Even-numbered reports are held
    /// out and never read.
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
        /// Print recall and the false-finding rate (with the missed pairs) instead of the
        /// throughput.
        #[arg(long)]
        quality: bool,
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

/// Runs `command`.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::BenchAllreduce {
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
        BenchCommand::BenchDdp {
            dist,
            shape,
            threads,
            warmup,
            iters,
        } => {
            tch::set_num_threads(threads);
            let (group, device) = dist.join()?;
            let timing = arl_worker::ddp_bench::time_ddp(&group, device, shape, warmup, iters)?;
            if group.rank() == 0 {
                println!("{}", serde_json::to_string(&timing)?);
            }
            group.shutdown()?;
        }
        BenchCommand::BenchModel {
            preset,
            shape,
            iters,
            threads,
            full,
        } => {
            let cfg = arl_contract::config::model::ModelConfig::preset(&preset)?;
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
        BenchCommand::BenchImages {
            size,
            passes,
            files,
        } => {
            tch::set_num_threads(1);
            let rate = bench::time_images(&files, size, passes)?;
            println!("{}", serde_json::json!({ "images_per_s": rate }));
        }
        BenchCommand::BenchStream {
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
        BenchCommand::BenchCheckpoint {
            location,
            preset,
            entities,
            saves,
            layout_out,
        } => {
            let cfg = arl_contract::config::model::ModelConfig::preset(&preset)?;
            let timing = arl_worker::checkpoint_bench::time_checkpoint(
                &location,
                &cfg,
                entities,
                saves.max(1),
                layout_out.as_deref(),
            )?;
            println!("{}", serde_json::to_string(&timing)?);
        }
        BenchCommand::BenchLink {
            ontology,
            reports,
            passes,
            quality,
        } => {
            use arl_worker::knowledge::{linker, mesh, obo, quality as q, reports as iu};
            let dictionary = obo::read(&ontology)?;
            let linker =
                linker::Linker::from_ontology(&dictionary, linker::LinkerConfig::default())?;
            let found = iu::read_dir(&reports)?;
            anyhow::ensure!(
                !found.is_empty(),
                "no *.xml reports under {}",
                reports.display()
            );
            if quality {
                let gold = mesh::gold_set(&found, &mesh::MeshTable::indiana()?);
                let result = q::evaluate(&linker, &dictionary, &gold);
                println!("{}", serde_json::to_string(&result)?);
                return Ok(());
            }
            let texts: Vec<String> = found.iter().map(iu::Report::text).collect();
            println!(
                "{}",
                serde_json::to_string(&bench::time_linking(&linker, &texts, passes))?
            );
        }
        BenchCommand::BenchMatmul {
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

/// `--kind` values of `bench-matmul`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum MatmulKind {
    Bf16,
    F16,
    F32,
}
