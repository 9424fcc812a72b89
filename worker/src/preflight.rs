//! A quick all-rank check that the group works: every rank contributes its rank number and
//! must see the sum `0 + 1 + … + (n-1)`.

use arl_c10d::{ProcessGroup, ReduceOp};
use tch::{Device, Tensor};

/// What rank 0 reports after a successful preflight.
#[derive(Debug)]
pub struct PreflightReport {
    /// Ranks that took part.
    pub world_size: usize,
    /// The all-reduced sum of ranks.
    pub rank_sum: i64,
}

/// Runs the check on `device`.
///
/// # Errors
/// A failed collective, or a sum that is not the expected one.
pub fn run(group: &ProcessGroup, device: Device) -> anyhow::Result<PreflightReport> {
    let n = group.world_size() as i64;
    let value = Tensor::from_slice(&[group.rank() as i64]).to_device(device);
    group.all_reduce(std::slice::from_ref(&value), ReduceOp::Sum)?;
    group.barrier()?;
    let rank_sum = value.int64_value(&[0]);
    anyhow::ensure!(
        rank_sum == n * (n - 1) / 2,
        "rank {}: all-reduced rank sum is {rank_sum}, expected {}",
        group.rank(),
        n * (n - 1) / 2
    );
    Ok(PreflightReport {
        world_size: group.world_size(),
        rank_sum,
    })
}
