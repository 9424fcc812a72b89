//! Data-parallel gradients with DDP's semantics, over [`DataParallel`]: every gradient is a
//! view into a flat bucket of `dist.bucket_mb` (the first bucket 1 MiB, so that communication
//! starts early), and each bucket is all-reduced while backward still runs.
//!
//! The first synchronised step runs with buckets in reverse name order and learns two things
//! from it, the same on every rank: the order in which gradients really arrive (rank 0's), which
//! the buckets then follow, and the parameters that no rank's backward reached. Those are left
//! out of every later reduction, named in the log, and keep no gradient (so AdamW leaves them
//! alone, as before); one that gets a gradient later stops the run with its name.

use std::time::Duration;

use anyhow::{Context, bail};
use arl_c10d::{DataParallel, ProcessGroup, ReduceOp, TensorSpec, plan_buckets_first};
use tch::{Device, Tensor};

use crate::train_state::Named;

/// DDP's cap on the first bucket.
const FIRST_BUCKET_BYTES: usize = 1024 * 1024;

/// What the ranks' backward left.
pub struct Reduced {
    /// Whether this rank's gradients were all finite before the reduction.
    pub finite: bool,
    /// Time after backward spent waiting for communication it did not hide.
    pub exposed: Duration,
}

/// The gradients of one job's trainable parameters, reduced across ranks during backward.
pub struct GradSync<'g> {
    ddp: DataParallel<'g>,
    group: &'g ProcessGroup,
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Parameters left out after the first step (no rank's backward reached them).
    unused: Option<Vec<bool>>,
}

impl<'g> GradSync<'g> {
    /// Hooks `params` (the same names, in the same order, on every rank).
    ///
    /// # Errors
    /// A parameter that is not a trainable leaf.
    pub fn new(group: &'g ProcessGroup, params: &[Named]) -> anyhow::Result<Self> {
        let (names, params): (Vec<String>, Vec<Tensor>) = params
            .iter()
            .map(|(name, t)| (name.clone(), t.shallow_clone()))
            .unzip();
        let reversed: Vec<usize> = (0..params.len()).rev().collect();
        let buckets = plan(group, &params, &reversed);
        let ddp = DataParallel::new(group, &params, &buckets)?;
        Ok(Self {
            ddp,
            group,
            names,
            params,
            unused: None,
        })
    }

    /// Zeroes the gradients (the start of a step).
    ///
    /// # Errors
    /// A reduction still in flight.
    pub fn zero_grad(&self) -> anyhow::Result<()> {
        Ok(self.ddp.zero_grad()?)
    }

    /// Prepares the next backward: `sync` for the step's last micro-batch, whose backward
    /// reduces; the others only accumulate.
    ///
    /// # Errors
    /// A reduction still in flight.
    pub fn arm(&self, sync: bool) -> anyhow::Result<()> {
        Ok(self.ddp.arm(sync)?)
    }

    /// Waits for the reductions of step `step`'s synchronised backward; the gradients are then
    /// the rank-mean. After the first step, regroups the buckets (see the module's doc).
    ///
    /// # Errors
    /// A lost peer, or a parameter left out after the first step that got a gradient.
    pub fn finish(&mut self, step: u64) -> anyhow::Result<Reduced> {
        let synced = self.ddp.finish()?;
        match &self.unused {
            Some(unused) => {
                if let Some(late) = (0..unused.len()).find(|&i| unused[i] && synced.fired[i]) {
                    bail!(
                        "parameter {} received a gradient at step {step} on rank {}, but none \
                         in the first step on any rank. Parameters unused in the first step are \
                         left out of gradient sync (as DDP does); a parameter must be used in \
                         every step or in none",
                        self.names[late],
                        self.group.rank()
                    );
                }
            }
            None => self.learn(&synced.fired, &synced.order)?,
        }
        Ok(Reduced {
            finite: synced.finite,
            exposed: synced.exposed,
        })
    }

    /// Agrees on the used parameters and on rank 0's gradient order, and regroups by them.
    fn learn(&mut self, fired: &[bool], order: &[usize]) -> anyhow::Result<()> {
        let count = self.params.len();
        let used = Tensor::from_slice(
            &fired
                .iter()
                .map(|&f| f64::from(u8::from(f)))
                .collect::<Vec<_>>(),
        );
        let mut rank0_order = vec![-1i64; count];
        for (slot, &index) in rank0_order.iter_mut().zip(order) {
            *slot = index as i64;
        }
        let rank0_order = Tensor::from_slice(&rank0_order);
        let device = self.params.first().map_or(Device::Cpu, Tensor::device);
        let (used, rank0_order) = (used.to_device(device), rank0_order.to_device(device));
        self.group
            .all_reduce(std::slice::from_ref(&used), ReduceOp::Sum)
            .context("agreeing on the parameters backward reached")?;
        self.group
            .broadcast(std::slice::from_ref(&rank0_order), 0)
            .context("sharing rank 0's gradient order")?;
        let used: Vec<f64> = Vec::try_from(used.to_device(Device::Cpu))?;
        let rank0_order: Vec<i64> = Vec::try_from(rank0_order.to_device(Device::Cpu))?;
        let unused: Vec<bool> = used.iter().map(|&u| u == 0.0).collect();
        // Rank 0's order, then what reached only other ranks (last first, as before).
        let mut sequence: Vec<usize> = rank0_order
            .iter()
            .take_while(|&&i| i >= 0)
            .map(|&i| i as usize)
            .collect();
        let mut placed = vec![false; count];
        sequence.iter().for_each(|&i| placed[i] = true);
        sequence.extend((0..count).rev().filter(|&i| !unused[i] && !placed[i]));
        let buckets = plan(self.group, &self.params, &sequence);
        self.ddp.set_buckets(&buckets, &self.params)?;
        let left_out: Vec<&str> = (0..count)
            .filter(|&i| unused[i])
            .map(|i| self.names[i].as_str())
            .collect();
        if !left_out.is_empty() && self.group.rank() == 0 {
            tracing::warn!(
                parameters = %left_out.join(", "),
                "no rank's backward reached these parameters in the first step: they are left \
                 out of gradient sync and not updated"
            );
        }
        self.unused = Some(unused);
        Ok(())
    }
}

/// Buckets over `sequence` (parameter indices in launch order), as the group's bucket cap says.
fn plan(group: &ProcessGroup, params: &[Tensor], sequence: &[usize]) -> Vec<Vec<usize>> {
    let specs: Vec<TensorSpec> = sequence
        .iter()
        .map(|&i| TensorSpec::of(&params[i]))
        .collect();
    let cap = group.bucket_cap_bytes();
    plan_buckets_first(&specs, FIRST_BUCKET_BYTES.min(cap), cap)
        .into_iter()
        .map(|bucket| bucket.into_iter().map(|k| sequence[k]).collect())
        .collect()
}
