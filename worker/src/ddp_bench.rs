//! The rank side of `arl bench ddp`: a training step of a plain MLP (`depth` × Linear(width,
//! width) + GELU, loss = mean of the squared output) with its gradients reduced by
//! [`GradSync`], the path training uses, against the same step without reduction and the
//! reduction alone. The Python peer (`launcher/src/bench/torch_ddp.py`) times the same three
//! with PyTorch's `DistributedDataParallel`.

use std::time::Instant;

use anyhow::ensure;
use arl_c10d::ProcessGroup;
use tch::{Device, Kind, Tensor, nn, nn::Module};

use crate::bench::median;
use crate::train::grad_sync::GradSync;

/// The benchmark model and batch.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DdpBenchShape {
    /// Features of every layer.
    #[arg(long, default_value_t = 1024)]
    pub width: i64,
    /// Linear + GELU layers.
    #[arg(long, default_value_t = 8)]
    pub depth: i64,
    /// Samples per rank and step.
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
}

/// Median seconds of each measured variant (rank 0 prints it as a JSON line).
#[derive(Debug, serde::Serialize)]
pub struct DdpTiming {
    /// Zero, forward, backward with overlapped reduction, wait: one whole step.
    pub step_s: f64,
    /// The same step without any reduction (DDP's `no_sync`).
    pub local_s: f64,
    /// The reduction of every gradient bucket alone, with no backward to hide behind.
    pub comm_s: f64,
    /// Within `step_s`: the wait after backward for reductions it did not hide.
    pub exposed_s: f64,
}

/// Times `iters` rounds (after `warmup`) of the three variants, interleaved, on `device`.
///
/// # Errors
/// A failed collective, or gradients that differ from the local ones times the world size
/// divided by itself (every rank runs the same batch, so the mean is the local gradient).
pub fn time_ddp(
    group: &ProcessGroup,
    device: Device,
    shape: DdpBenchShape,
    warmup: usize,
    iters: usize,
) -> anyhow::Result<DdpTiming> {
    tch::manual_seed(0);
    let store = nn::VarStore::new(device);
    let root = store.root();
    let mut mlp = nn::seq();
    for layer in 0..shape.depth {
        mlp = mlp
            .add(nn::linear(
                &root / format!("layer{layer}"),
                shape.width,
                shape.width,
                Default::default(),
            ))
            .add_fn(|x| x.gelu("none"));
    }
    let mut named: Vec<(String, Tensor)> = store.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let input = Tensor::randn([shape.batch, shape.width], (Kind::Float, device));
    let mut sync = GradSync::new(group, &named)?;
    let backward = |sync: &GradSync, reduce: bool| -> anyhow::Result<()> {
        sync.zero_grad()?;
        sync.arm(reduce)?;
        mlp.forward(&input).square().mean(Kind::Float).backward();
        Ok(())
    };
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut step = 0;
    for round in 0..warmup + iters {
        let keep = round >= warmup;
        group.barrier()?;
        let start = Instant::now();
        backward(&sync, true)?;
        step += 1;
        let reduced = sync.finish(step)?;
        let step_s = start.elapsed().as_secs_f64();

        group.barrier()?;
        let start = Instant::now();
        backward(&sync, false)?;
        let local_s = start.elapsed().as_secs_f64();
        if round == 0 {
            // Every rank ran the same batch: the reduced mean must be the local gradient.
            let local: Vec<Tensor> = named.iter().map(|(_, p)| p.grad().copy()).collect();
            backward(&sync, true)?;
            step += 1;
            sync.finish(step)?;
            for ((name, param), local) in named.iter().zip(&local) {
                let diff = (param.grad() - local).abs().max().double_value(&[]);
                ensure!(
                    diff < 1e-5,
                    "gradient of {name} is off by {diff} after reduction"
                );
            }
        }

        sync.zero_grad()?;
        group.barrier()?;
        let start = Instant::now();
        sync.arm(true)?;
        step += 1;
        sync.finish(step)?;
        let comm_s = start.elapsed().as_secs_f64();
        if keep {
            for (slot, value) in
                times
                    .iter_mut()
                    .zip([step_s, local_s, comm_s, reduced.exposed.as_secs_f64()])
            {
                slot.push(value);
            }
        }
    }
    let [step_s, local_s, comm_s, exposed_s] = times.map(|mut t| median(&mut t));
    Ok(DdpTiming {
        step_s,
        local_s,
        comm_s,
        exposed_s,
    })
}
