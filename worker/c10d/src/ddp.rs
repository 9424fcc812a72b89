//! Gradient all-reduce overlapped with backward (`shim/ddp.cpp`), as PyTorch's DDP: each
//! parameter's gradient is a view into a flat bucket, and a bucket is reduced as soon as
//! backward has produced all of its gradients, in bucket order on every rank.
//!
//! A step with `k` micro-batches: [`DataParallel::zero_grad`], then for each micro-batch
//! [`DataParallel::arm`] (`sync` only for the last one) and backward, then
//! [`DataParallel::finish`]; the gradients are then the rank-mean.

use std::time::Duration;

use tch::Tensor;

use crate::error::Result;
use crate::ffi;
use crate::group::ProcessGroup;

/// What one synchronised backward left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    /// Whether this rank's gradients were all finite before the reduction.
    pub finite: bool,
    /// Per parameter: whether this rank's backward produced its gradient.
    pub fired: Vec<bool>,
    /// Parameter indices in the order their gradients were complete.
    pub order: Vec<usize>,
    /// Time spent after backward waiting for reductions it did not hide.
    pub exposed: Duration,
}

/// Overlapped gradient reduction over one process group.
pub struct DataParallel<'g> {
    raw: *mut ffi::RawDdp,
    group: &'g ProcessGroup,
    params: usize,
    /// Elements per bucket (what the observer is told).
    bucket_sizes: Vec<i64>,
}

impl<'g> DataParallel<'g> {
    /// Hooks `params` (leaves that require grad; the same list, in the same order, on every
    /// rank) and groups them into `buckets` of parameter indices; see
    /// [`DataParallel::set_buckets`].
    ///
    /// # Errors
    /// A parameter that is not a trainable leaf, or bad buckets.
    pub fn new(group: &'g ProcessGroup, params: &[Tensor], buckets: &[Vec<usize>]) -> Result<Self> {
        let ptrs: Vec<*mut torch_sys::C_tensor> =
            params.iter().map(|t| t.as_ptr() as *mut _).collect();
        let mut raw = std::ptr::null_mut();
        // SAFETY: the tensor handles are live for the call; the shim copies them.
        let status =
            unsafe { ffi::arl_ddp_create(group.raw(), ptrs.as_ptr(), ptrs.len(), &mut raw) };
        ffi::take_error(status).map_err(|reason| group.invalid("data parallel", reason))?;
        let mut ddp = Self {
            raw,
            group,
            params: params.len(),
            bucket_sizes: Vec::new(),
        };
        ddp.set_buckets(buckets, params)?;
        Ok(ddp)
    }

    /// Regroups the parameters into `buckets` (indices into the parameters; one dtype and
    /// device per bucket), launched in this order. Gradients keep their values; a parameter in
    /// no bucket loses its gradient and is left out of every later reduction. `params` are
    /// the hooked parameters (for the bucket sizes).
    ///
    /// # Errors
    /// An empty bucket, an index out of range or in two buckets, mixed dtypes, or a
    /// reduction still in flight.
    pub fn set_buckets(&mut self, buckets: &[Vec<usize>], params: &[Tensor]) -> Result<()> {
        if let Some(bad) = buckets.iter().flatten().find(|&&i| i >= self.params) {
            return Err(self.group.invalid(
                "data parallel",
                format!("parameter index {bad} is not below {}", self.params),
            ));
        }
        let members: Vec<i64> = buckets.iter().flatten().map(|&i| i as i64).collect();
        let sizes: Vec<i64> = buckets.iter().map(|b| b.len() as i64).collect();
        // SAFETY: both arrays are live for the call and `sizes` sums to `members.len()`.
        let status = unsafe {
            ffi::arl_ddp_set_buckets(self.raw, members.as_ptr(), sizes.as_ptr(), sizes.len())
        };
        ffi::take_error(status).map_err(|reason| self.group.invalid("data parallel", reason))?;
        self.bucket_sizes = buckets
            .iter()
            .map(|b| b.iter().map(|&i| params[i].numel() as i64).sum())
            .collect();
        Ok(())
    }

    /// Sets every bucketed gradient to zero (the start of a step).
    ///
    /// # Errors
    /// A reduction still in flight.
    pub fn zero_grad(&self) -> Result<()> {
        // SAFETY: the handle is live.
        self.simple("zero gradients", unsafe { ffi::arl_ddp_zero(self.raw) })
    }

    /// Prepares the next backward: with `sync`, it launches the reductions; without, its
    /// gradients only accumulate (DDP's `no_sync`).
    ///
    /// # Errors
    /// A reduction still in flight.
    pub fn arm(&self, sync: bool) -> Result<()> {
        // SAFETY: the handle is live.
        self.simple("arm backward", unsafe { ffi::arl_ddp_arm(self.raw, sync) })
    }

    /// Ends a synchronised backward: launches the buckets still waiting (gradients that did
    /// not come count as zeros), waits for all, and leaves the rank-mean in every gradient.
    ///
    /// # Errors
    /// A lost peer or timeout (c10d's message), or no armed backward.
    pub fn finish(&self) -> Result<Synced> {
        let mut finite = 0u8;
        let mut fired = vec![0u8; self.params];
        let mut order = vec![0i64; self.params];
        let mut wait = 0f64;
        self.group
            .observed("gradient all-reduce", &self.bucket_sizes, || unsafe {
                // SAFETY: the outputs have room for one entry per parameter.
                ffi::arl_ddp_finish(
                    self.raw,
                    &mut finite,
                    fired.as_mut_ptr(),
                    order.as_mut_ptr(),
                    &mut wait,
                )
            })?;
        Ok(Synced {
            finite: finite != 0,
            fired: fired.into_iter().map(|f| f != 0).collect(),
            order: order
                .into_iter()
                .take_while(|&i| i >= 0)
                .map(|i| i as usize)
                .collect(),
            exposed: Duration::from_secs_f64(wait),
        })
    }

    fn simple(&self, op: &str, status: *mut std::os::raw::c_char) -> Result<()> {
        ffi::take_error(status).map_err(|reason| self.group.invalid(op, reason))
    }
}

impl Drop for DataParallel<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from arl_ddp_create and is freed once; the hooks hold the state
        // weakly, so a later backward through the same parameters does nothing here.
        unsafe { ffi::arl_ddp_free(self.raw) };
    }
}
