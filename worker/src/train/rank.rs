//! One rank's view of a data-parallel run and the collectives every training loop shares:
//! small host-side reductions, the per-step agreement on non-finite gradients and stop
//! signals, and the cross-rank parameter checksum.

use anyhow::bail;
use arl_c10d::{ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor};

use crate::train_state::Named;

/// One rank of the process group.
pub struct Rank<'a> {
    /// The group.
    pub group: &'a ProcessGroup,
    /// This rank.
    pub rank: usize,
    /// Ranks in the world.
    pub world: usize,
    /// Where collectives run (NCCL reduces only GPU tensors).
    pub device: Device,
}

/// What the ranks agreed on after a backward pass.
pub struct GradientSync {
    /// Ranks whose gradients were not finite (the step was skipped when any).
    pub bad_ranks: Vec<usize>,
    /// The stop signal some rank received (the largest number, if several).
    pub stop: Option<i32>,
}

impl<'a> Rank<'a> {
    /// This process's rank of `group`, reducing on `device`.
    pub fn new(group: &'a ProcessGroup, device: Device) -> Self {
        Self {
            group,
            rank: group.rank(),
            world: group.world_size(),
            device,
        }
    }

    /// The rank-sum of `values` (on the host before and after).
    pub fn sum(&self, values: &Tensor) -> anyhow::Result<Vec<f64>> {
        let tensor = values.to_kind(Kind::Double).to_device(self.device);
        self.group
            .all_reduce(std::slice::from_ref(&tensor), ReduceOp::Sum)?;
        Ok(Vec::try_from(&tensor.to_device(Device::Cpu))?)
    }

    /// Every rank's `value`, by rank (an all-gather of one number).
    pub fn gather(&self, value: f64) -> anyhow::Result<Vec<f64>> {
        let mut slots = vec![0f64; self.world];
        slots[self.rank] = value;
        self.sum(&Tensor::from_slice(&slots))
    }

    /// One reduction for the step's two decisions: which ranks' gradients were not finite
    /// (`finite` is this rank's answer) and whether some rank was asked to stop.
    pub fn decide(&self, finite: bool, stop: Option<i32>) -> anyhow::Result<GradientSync> {
        let mut slots = vec![0f64; 2 * self.world];
        slots[self.rank] = f64::from(u8::from(!finite));
        slots[self.world + self.rank] = f64::from(stop.unwrap_or(0));
        let all = self.sum(&Tensor::from_slice(&slots))?;
        let bad_ranks: Vec<usize> = (0..self.world).filter(|&r| all[r] > 0.0).collect();
        let signal = all[self.world..].iter().fold(0f64, |a, &b| a.max(b)) as i32;
        Ok(GradientSync {
            bad_ranks,
            stop: (signal > 0).then_some(signal),
        })
    }

    /// Stops the run, before anything is written, unless every rank resumes job `job` from the
    /// same step under the same config: `resumed` is the step and config hash of the checkpoint
    /// this rank loaded from `location` (none: it starts afresh).
    ///
    /// # Errors
    /// Ranks that disagree (each one's step and config named), or a failed collective.
    pub fn agree_on_resume(
        &self,
        job: &str,
        location: &str,
        resumed: Option<(u64, &str)>,
    ) -> anyhow::Result<()> {
        // Step + 1 (0: no checkpoint) and the config hash's first 48 bits, exact as f64.
        let mut slots = vec![0f64; 2 * self.world];
        if let Some((step, hash)) = resumed {
            slots[self.rank] = (step + 1) as f64;
            slots[self.world + self.rank] =
                u64::from_str_radix(hash.get(..12).unwrap_or(hash), 16).unwrap_or(0) as f64;
        }
        let all = self.sum(&Tensor::from_slice(&slots))?;
        let (steps, hashes) = all.split_at(self.world);
        let agree = |values: &[f64]| values.iter().all(|&v| v.to_bits() == values[0].to_bits());
        if agree(steps) && agree(hashes) {
            return Ok(());
        }
        let each: Vec<String> = (0..self.world)
            .map(|rank| match steps[rank] as u64 {
                0 => format!("rank {rank} from the start"),
                step => format!(
                    "rank {rank} from step {} (config {:012x})",
                    step - 1,
                    hashes[rank] as u64
                ),
            })
            .collect();
        bail!(
            "the ranks do not resume job {job} from the same checkpoint: {}. Each rank resumes \
             from the newest committed checkpoint it sees in {location}; every node must see \
             the same one",
            each.join(", ")
        )
    }

    /// Stops the run if the ranks' parameters differ (a checksum per rank, compared everywhere).
    ///
    /// # Errors
    /// A rank whose parameters differ from rank 0's (named), or a failed collective.
    pub fn check_replicas(&self, variables: &[Named], step: u64) -> anyhow::Result<()> {
        let checksum = tch::no_grad(|| {
            variables
                .iter()
                .map(|(_, t)| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]))
                .sum::<f64>()
        });
        let all = self.gather(checksum)?;
        if let Some(other) = all.iter().position(|&c| c.to_bits() != all[0].to_bits()) {
            bail!("at step {step} the parameters of rank {other} differ from rank 0's ({all:?})");
        }
        Ok(())
    }
}
