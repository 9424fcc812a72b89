//! The rank side of `arl bench checkpoint`: the state of a model preset with AdamW's two
//! moments, saved several times through the asynchronous writer. Each save is let finish
//! before the next begins (as when checkpoints are further apart than a save takes), so the
//! stall is the snapshot itself: taking the staging memory, copying the state into it, handing
//! it over. Also timed: from the start of a save until its commit marker is durable, and, at
//! the end, loading the newest checkpoint back with full verification.

use std::time::Instant;

use anyhow::{Context, ensure};
use arl_checkpoints::{AsyncSaver, Checkpoints, Retention, SaverConfig, TrainingState};
use tch::{Device, Kind, Tensor, nn};

use crate::bench::median;
use crate::model::arl::ArlModel;
use arl_contract::config::model::ModelConfig;
use arl_contract::config::train::OptimConfig;

use crate::train::optim::AdamW;
use crate::train_state::{self, Named};

/// Per-save figures (medians and worst), printed as a JSON line.
#[derive(Debug, serde::Serialize)]
pub struct CheckpointTiming {
    /// Bytes of tensors per save.
    pub bytes: u64,
    /// Saves timed.
    pub saves: usize,
    /// Median training-thread stall, ms.
    pub stall_ms: f64,
    /// Worst stall, ms.
    pub stall_ms_max: f64,
    /// Median time from the start of a save to its durable commit marker, s.
    pub durable_s: f64,
    /// Loading the newest checkpoint with every hash verified, s.
    pub load_s: f64,
}

/// The model's variables and AdamW's `exp_avg` and `exp_avg_sq` of each trainable one: what
/// pretraining checkpoints.
fn adamw_state(cfg: &ModelConfig, entities: i64) -> (nn::VarStore, Vec<Named>, Vec<Named>) {
    let vs = nn::VarStore::new(Device::Cpu);
    let no_edges = Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu));
    let _model = ArlModel::new(&vs.root(), cfg, entities, &no_edges);
    let moments = AdamW::new(&vs, OptimConfig::default(), true).state();
    let variables = train_state::sorted_variables(&vs);
    (vs, variables, moments)
}

/// The state's tensors as `[name, shape]` pairs, model then optimizer (for the Python peer).
fn layout_json(params: &[Named], moments: &[Named]) -> serde_json::Value {
    params
        .iter()
        .chain(moments)
        .map(|(name, t)| serde_json::json!([name, t.size()]))
        .collect()
}

/// Saves the state of `cfg` `saves` times to `location` and times each save; writes the
/// state's layout to `layout_out` first if given.
///
/// # Errors
/// A save or the verification of the last one fails.
pub fn time_checkpoint(
    location: &str,
    cfg: &ModelConfig,
    entities: i64,
    saves: usize,
    layout_out: Option<&std::path::Path>,
) -> anyhow::Result<CheckpointTiming> {
    let (_vs, params, moments) = adamw_state(cfg, entities);
    if let Some(path) = layout_out {
        std::fs::write(path, layout_json(&params, &moments).to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let retention = Retention {
        keep_last: 1,
        keep_every: 0,
    };
    let mut saver = AsyncSaver::new(Checkpoints::open(location)?, SaverConfig { retention })?;
    let mut layout = train_state::layout("model", &params)?;
    layout.extend(train_state::layout("optim", &moments)?);
    saver.reserve(layout)?;
    saver.finish()?;
    let (mut stalls, mut durables, mut bytes) = (Vec::new(), Vec::new(), 0);
    for step in 1..=saves as u64 {
        tch::no_grad(|| {
            for (_, tensor) in params.iter().chain(&moments) {
                let _ = tensor.shallow_clone().g_add_scalar_(1e-3);
            }
        });
        let started = Instant::now();
        let mut begin = saver.begin()?;
        train_state::snapshot(&mut begin.staging, "model", &params)?;
        train_state::snapshot(&mut begin.staging, "optim", &moments)?;
        bytes = begin.staging.bytes();
        let state = TrainingState::new(step, 1);
        saver.submit(begin.staging, state)?;
        let stall = started.elapsed();
        stalls.push(stall.as_secs_f64() * 1e3);
        for outcome in saver.finish()? {
            durables.push((stall + outcome?.write_time).as_secs_f64());
        }
        eprintln!(
            "bench checkpoint: save {step}/{saves}: stall {:.0} ms, durable after {:.1} s",
            stalls.last().expect("pushed"),
            durables.last().expect("pushed")
        );
    }
    drop(saver);
    let started = Instant::now();
    let checkpoints = Checkpoints::open(location)?;
    let loaded = checkpoints.resume()?;
    let load_s = started.elapsed().as_secs_f64();
    ensure!(
        loaded.is_some_and(|l| l.manifest.state.step == saves as u64),
        "the newest checkpoint at {location} is not step {saves}"
    );
    let stall_ms_max = stalls.iter().copied().fold(0.0, f64::max);
    Ok(CheckpointTiming {
        bytes,
        saves,
        stall_ms: median(&mut stalls),
        stall_ms_max,
        durable_s: median(&mut durables),
        load_s,
    })
}
