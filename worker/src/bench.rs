//! Timing kernels run by one rank: the rank side of `arl bench allreduce` (in-place
//! all-reduce of one f32 tensor per size, the same protocol as the Python peer
//! `launcher/src/bench/torch_allreduce.py`), the pretraining step of `arl bench model` and `arl bench pretrain`, and the
//! matrix-multiply throughput check of `scripts/gpu-check.sh`.

use std::time::Instant;

use anyhow::ensure;
use arl_c10d::{ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor, nn};

use crate::knowledge::linker::Linker;
use crate::model::arl::ArlModel;
use crate::model::flops::{PretrainFlops, PretrainShape};
use crate::model::pretext::{PretrainBatch, pretrain_losses};
use arl_contract::config::model::ModelConfig;
use arl_contract::config::train::OptimConfig;

use crate::train::optim::{AdamW, GROUPS, group_of};

/// The upper median (the middle value; the higher of the middle pair for an even count), as
/// every worker-side benchmark reports it.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One size's result (printed by rank 0 as a JSON line).
#[derive(Debug, serde::Serialize)]
pub struct AllreduceTiming {
    /// Tensor size in MiB.
    pub size_mb: usize,
    /// Median seconds of one all-reduce.
    pub median_s: f64,
}

/// Times `iters` all-reduces (after `warmup`) of a `size_mb` MiB f32 tensor on `device`.
///
/// # Errors
/// A failed collective, or a result that is not `world_size^(warmup + iters)` everywhere.
pub fn time_allreduce(
    group: &ProcessGroup,
    device: Device,
    size_mb: usize,
    warmup: usize,
    iters: usize,
) -> anyhow::Result<AllreduceTiming> {
    let numel = (size_mb * 1024 * 1024 / 4) as i64;
    let tensor = Tensor::ones([numel], (Kind::Float, device));
    let one = std::slice::from_ref(&tensor);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        group.barrier()?;
        let start = Instant::now();
        group.all_reduce(one, ReduceOp::Sum)?;
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let expected = (group.world_size() as f64).powi((warmup + iters) as i32);
    let (lo, hi) = (
        tensor.min().double_value(&[]),
        tensor.max().double_value(&[]),
    );
    ensure!(
        lo == expected && hi == expected,
        "rank {}: all-reduce result in [{lo}, {hi}], expected {expected}",
        group.rank()
    );
    times.sort_by(f64::total_cmp);
    Ok(AllreduceTiming {
        size_mb,
        median_s: times[times.len() / 2],
    })
}

/// One matrix-multiply throughput result (printed as a JSON line).
#[derive(Debug, serde::Serialize)]
pub struct MatmulThroughput {
    /// Element type.
    pub kind: String,
    /// Square matrix size.
    pub size: i64,
    /// Device, e.g. `Cuda(0)`.
    pub device: String,
    /// Median seconds of one multiply.
    pub median_s: f64,
    /// `2·size³ / median_s`, in 10^12 FLOP/s.
    pub tflops: f64,
}

/// Times `iters` products of two `size`×`size` matrices of `kind` on `device` (after two
/// untimed ones), synchronising CUDA before each clock read.
pub fn time_matmul(device: Device, kind: Kind, size: i64, iters: usize) -> MatmulThroughput {
    let a = Tensor::randn([size, size], (kind, device));
    let b = Tensor::randn([size, size], (kind, device));
    let sync = || {
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters + 2 {
        sync();
        let start = Instant::now();
        let _product = a.matmul(&b);
        sync();
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    MatmulThroughput {
        kind: format!("{kind:?}"),
        size,
        device: format!("{device:?}"),
        median_s,
        tflops: 2.0 * (size as f64).powi(3) / median_s / 1e12,
    }
}

/// What one timed pretraining step covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// Forward + backward of the four objectives.
    ForwardBackward,
    /// Forward + backward, clipping and the optimiser step.
    Full,
}

/// The gradient-norm clip of [`time_full_step`] (`OptimConfig`'s default, 0, only computes the
/// norm, as the trainer logs it; the benchmark clips so that the scaling pass is timed too).
pub const BENCH_MAX_GRAD_NORM: f64 = 1.0;

/// Median seconds of forward + backward of the four pretraining objectives on one random
/// batch (see `model::pretext`), after one untimed step.
pub fn time_pretrain_step(cfg: &ModelConfig, shape: StepShape, iters: usize) -> f64 {
    time_step(cfg, shape, iters, StepKind::ForwardBackward).0
}

/// Result of [`time_full_step`] (printed as a JSON line).
#[derive(Debug, serde::Serialize)]
pub struct FullStepTiming {
    /// Median seconds of one step.
    pub median_s: f64,
    /// Samples per batch.
    pub batch: i64,
    /// Parameter elements in each of the optimiser's groups (in `optim::GROUPS` order), so that
    /// a peer can check it updates the same parameters with the same settings.
    pub group_numels: Vec<i64>,
    /// This process's peak resident memory (`VmHWM`), bytes; none where the system does not
    /// say.
    pub peak_rss_bytes: Option<u64>,
    /// The model's training FLOPs per sample of this step (3 × forward,
    /// [`crate::model::flops`]).
    pub train_flops_per_sample: f64,
}

/// Times the trainer's whole step on one random batch, after one untimed step: zero the
/// gradients, forward + backward of the four objectives, clip the global gradient norm to
/// [`BENCH_MAX_GRAD_NORM`], and the AdamW step over the six parameter groups at their peak
/// learning rates (`OptimConfig`'s defaults otherwise).
pub fn time_full_step(cfg: &ModelConfig, shape: StepShape, iters: usize) -> FullStepTiming {
    let (median_s, optimizer) = time_step(cfg, shape, iters, StepKind::Full);
    let mut group_numels = vec![0; GROUPS.len()];
    for (name, value) in optimizer.map(|o| o.parameters()).unwrap_or_default() {
        group_numels[group_of(&name, true)] += value.numel() as i64;
    }
    let flops = PretrainFlops::new(
        cfg,
        PretrainShape {
            batch: shape.batch,
            text_len: shape.text_len,
            slots: shape.slots,
            entities: shape.entities,
            align: true,
        },
    );
    FullStepTiming {
        median_s,
        batch: shape.batch,
        group_numels,
        peak_rss_bytes: peak_rss_bytes(),
        train_flops_per_sample: flops.training_per_sample(),
    }
}

/// This process's peak resident set size (`VmHWM` of `/proc/self/status`), bytes: what
/// Python's `resource.getrusage(RUSAGE_SELF).ru_maxrss` reports on Linux, in KiB.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The median seconds of a step of `kind`, and the optimiser of a full step.
fn time_step(
    cfg: &ModelConfig,
    shape: StepShape,
    iters: usize,
    kind: StepKind,
) -> (f64, Option<AdamW>) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let ring = Tensor::arange(shape.entities, (Kind::Int64, Device::Cpu));
    let edges = Tensor::stack(
        &[ring.shallow_clone(), (&ring + 1).remainder(shape.entities)],
        0,
    );
    let model = ArlModel::new(&vs.root(), cfg, shape.entities, &edges);
    let batch = PretrainBatch::random(
        cfg,
        shape.batch,
        shape.text_len,
        shape.slots,
        shape.entities,
    );
    let mut optimizer =
        (kind == StepKind::Full).then(|| AdamW::new(&vs, OptimConfig::default(), true));
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        if optimizer.is_none() {
            for mut var in vs.trainable_variables() {
                var.zero_grad();
            }
        }
        let start = Instant::now();
        if let Some(optimizer) = optimizer.as_mut() {
            optimizer.zero_grad();
        }
        arl_c10d::autocast_bf16(Device::Cpu, shape.bf16, || {
            pretrain_losses(&model, cfg, &batch, true)
        })
        .expect("CPU autocast")
        .total
        .backward();
        if let Some(optimizer) = optimizer.as_mut() {
            optimizer.clip_grad_norm(BENCH_MAX_GRAD_NORM);
            optimizer.step(1.0);
        }
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], optimizer)
}

/// Batch shape of [`time_pretrain_step`] and [`time_full_step`].
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StepShape {
    /// Samples per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: i64,
    /// Text positions.
    #[arg(long, default_value_t = 32)]
    pub text_len: i64,
    /// Entity slots per text.
    #[arg(long, default_value_t = 8)]
    pub slots: i64,
    /// Entities in the graph.
    #[arg(long, default_value_t = 64)]
    pub entities: i64,
    /// The forward passes under bfloat16 CPU autocast (`train.precision = "bf16"`).
    #[arg(long)]
    pub bf16: bool,
}

/// Result of [`time_linking`].
#[derive(Debug, serde::Serialize)]
pub struct LinkThroughput {
    /// Reports linked per second on one thread (median pass).
    pub reports_per_s: f64,
    /// Mentions per report.
    pub mentions_per_report: f64,
    /// Reports with at least one mention.
    pub reports_with_mention: usize,
    /// Reports read.
    pub reports: usize,
}

/// Links every text `passes` times on this thread and reports the median pass's throughput.
pub fn time_linking(linker: &Linker, texts: &[String], passes: usize) -> LinkThroughput {
    let mut times = Vec::with_capacity(passes);
    let mut counts = Vec::new();
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        counts = texts.iter().map(|t| linker.link(t).len()).collect();
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let total: usize = counts.iter().sum();
    LinkThroughput {
        reports_per_s: texts.len() as f64 / times[times.len() / 2],
        mentions_per_report: total as f64 / texts.len().max(1) as f64,
        reports_with_mention: counts.iter().filter(|&&c| c > 0).count(),
        reports: texts.len(),
    }
}

/// Decodes and `clip`-transforms every file (into a normalised tensor) `passes` times on this
/// thread; returns the median pass's images per second.
///
/// # Errors
/// A file that cannot be read or decoded (named).
pub fn time_images(files: &[std::path::PathBuf], size: u32, passes: usize) -> anyhow::Result<f64> {
    use crate::data::image;
    use anyhow::Context;
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<_>>()?;
    let mut times = Vec::with_capacity(passes);
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        for (bytes, file) in data.iter().zip(files) {
            let decoded = image::decode(bytes).with_context(|| file.display().to_string())?;
            let _ = image::normalized_tensor(&image::clip(&decoded, size)?);
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(data.len() as f64 / times[times.len() / 2])
}
