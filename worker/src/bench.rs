//! The rank side of `arl bench allreduce`: times in-place all-reduce of one f32 tensor per
//! size and reports the median, the same protocol as the Python peer
//! (`launcher/src/bench/torch_allreduce.py`).

use std::time::Instant;

use anyhow::ensure;
use arl_c10d::{ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor};

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
        if device.is_cuda() {
            tch::Cuda::synchronize(device_index(device));
        }
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let expected = (group.world_size() as f64).powi((warmup + iters) as i32);
    let (lo, hi) = (tensor.min().double_value(&[]), tensor.max().double_value(&[]));
    ensure!(
        lo == expected && hi == expected,
        "rank {}: all-reduce result in [{lo}, {hi}], expected {expected}",
        group.rank()
    );
    times.sort_by(f64::total_cmp);
    Ok(AllreduceTiming { size_mb, median_s: times[times.len() / 2] })
}

fn device_index(device: Device) -> i64 {
    match device {
        Device::Cuda(index) => index as i64,
        _ => 0,
    }
}
