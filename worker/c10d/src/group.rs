//! A c10d process group (Gloo on CPU, NCCL on GPU) and the collectives the trainer uses.

use std::cell::Cell;
use std::ffi::CString;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::bucket::{FlatBucket, TensorSpec, plan_buckets};
use crate::env::RankEnv;
use crate::error::{C10dError, Result};
use crate::ffi;
use crate::layout;
use crate::store::{StoreOptions, TcpStore, millis};

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors, TCP.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors, one GPU per rank (cargo feature `nccl`).
    Nccl,
}

/// How a list of tensors is combined across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean over ranks (floating-point tensors only).
    Avg,
}

/// Settings of a process group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The backend.
    pub backend: Backend,
    /// Rendezvous: how long to wait for the store and for every rank to join.
    pub init_timeout: Duration,
    /// How long one collective may wait for a peer before failing.
    pub timeout: Duration,
    /// Flat bucket size for [`ProcessGroup::all_reduce`], in bytes (DDP's default is 25 MB).
    pub bucket_cap_bytes: usize,
    /// Gloo: the address to bind, as a hostname; empty means this machine's hostname.
    pub gloo_hostname: String,
    /// Gloo: worker threads per group.
    pub gloo_threads: usize,
    /// Compare dtypes and shapes across ranks before each collective (one 16-byte
    /// all-reduce). Without it, ranks that disagree make Gloo abort the process.
    pub verify_layout: bool,
    /// The run's token: rank 0 publishes it in the store and every rank checks it before it
    /// joins, so a process of another run that reaches this store (or this rank another run's)
    /// fails with both tokens named; the group's keys live under it. Empty: no check.
    pub run_token: String,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Gloo,
            init_timeout: Duration::from_secs(300),
            timeout: Duration::from_secs(100),
            bucket_cap_bytes: 25 * 1024 * 1024,
            gloo_hostname: String::new(),
            gloo_threads: 2,
            verify_layout: true,
            run_token: String::new(),
        }
    }
}

/// A collective as an observer sees it ([`ProcessGroup::observe`]).
#[derive(Debug, Clone, Copy)]
pub enum Collective<'a> {
    /// About to enter collective `seq` (from 1; the same on every rank for the same call).
    Enter {
        /// Sequence number.
        seq: u64,
        /// The operation.
        op: &'a str,
        /// Elements of each tensor.
        sizes: &'a [i64],
    },
    /// Left collective `seq` successfully.
    Leave {
        /// Sequence number.
        seq: u64,
    },
}

/// Called around every collective of the group.
pub type Observer = Box<dyn Fn(Collective<'_>) + Send>;

/// A joined process group. Collectives are blocking and work in place.
pub struct ProcessGroup {
    raw: *mut ffi::RawGroup,
    rank: usize,
    world_size: usize,
    bucket_cap_bytes: usize,
    verify_layout: bool,
    /// Where small bookkeeping tensors (layout probes) live: the CPU for Gloo, the rank's GPU
    /// for NCCL.
    probe_device: Device,
    /// Collectives entered so far.
    seq: Cell<u64>,
    observer: Option<Observer>,
    // Kept alive for as long as the group: the group holds the store's connection.
    _store: TcpStore,
}

// SAFETY: a c10d backend may be driven from any thread. The type is not `Sync`, so its
// collectives are issued from one thread at a time, in the same order on every rank.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Rendezvous at `env.master_addr:env.master_port` (rank 0 hosts the store) and join.
    ///
    /// # Errors
    /// No master, port in use, a rank that never joins within `init_timeout`, or a backend that
    /// this build or machine lacks: c10d's message, with the rank.
    pub fn init(env: &RankEnv, opts: &GroupOptions) -> Result<Self> {
        let rank = env.rank as i64;
        let store = TcpStore::connect(
            &StoreOptions {
                host: env.master_addr.clone(),
                port: env.master_port,
                world_size: env.world_size,
                is_server: env.rank == 0,
                timeout: opts.init_timeout,
            },
            rank,
        )?;
        if !opts.run_token.is_empty() {
            store.check_token(&opts.run_token, env.rank == 0, rank)?;
        }
        let prefix = match opts.run_token.as_str() {
            "" => "arl/default_pg".to_owned(),
            token => format!("arl/{token}/default_pg"),
        };
        let prefix = CString::new(prefix).map_err(|_| C10dError::Invalid {
            op: "rendezvous".into(),
            rank,
            reason: "the run token contains a NUL byte".into(),
        })?;
        let (rank_i32, size_i32) = (env.rank as i32, env.world_size as i32);
        let host = CString::new(opts.gloo_hostname.as_str()).map_err(|_| C10dError::Invalid {
            op: "gloo init".into(),
            rank,
            reason: "hostname contains a NUL byte".into(),
        })?;
        let timeout_ms = millis(opts.timeout);
        let mut raw = std::ptr::null_mut();
        // SAFETY: the store is live; strings outlive the calls; `raw` is written only on success.
        let status = match opts.backend {
            Backend::Gloo => unsafe {
                ffi::arl_pg_gloo_create(
                    store.raw(),
                    prefix.as_ptr(),
                    rank_i32,
                    size_i32,
                    host.as_ptr(),
                    timeout_ms,
                    opts.gloo_threads.max(1) as i32,
                    &mut raw,
                )
            },
            Backend::Nccl => unsafe {
                ffi::arl_pg_nccl_create(
                    store.raw(),
                    prefix.as_ptr(),
                    rank_i32,
                    size_i32,
                    timeout_ms,
                    &mut raw,
                )
            },
        };
        ffi::take_error(status).map_err(|message| C10dError::Op {
            op: format!("{:?} init (world size {})", opts.backend, env.world_size),
            rank,
            message,
        })?;
        Ok(Self {
            raw,
            rank: env.rank,
            world_size: env.world_size,
            bucket_cap_bytes: opts.bucket_cap_bytes.max(1),
            verify_layout: opts.verify_layout,
            probe_device: match opts.backend {
                Backend::Gloo => Device::Cpu,
                Backend::Nccl => Device::Cuda(env.local_rank),
            },
            seq: Cell::new(0),
            observer: None,
            _store: store,
        })
    }

    /// Calls `observer` as each collective is entered and left (a flight recorder).
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The bucket size of [`ProcessGroup::all_reduce`] and of gradient reduction, in bytes.
    pub fn bucket_cap_bytes(&self) -> usize {
        self.bucket_cap_bytes
    }

    /// Reduces every tensor across ranks, in place, through flat buckets of at most
    /// `bucket_cap_bytes` (one dtype per bucket; tensors may have any shapes and dtypes).
    ///
    /// # Errors
    /// A peer that died or stayed silent past the timeout, shapes that differ between ranks,
    /// or `Avg` on a non-floating tensor.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        if op == ReduceOp::Avg
            && let Some(t) = tensors.iter().find(|t| !t.is_floating_point())
        {
            return Err(self.invalid(
                "allreduce",
                format!("Avg needs floating tensors, got {:?}", t.kind()),
            ));
        }
        self.verify_layout("allreduce", tensors)?;
        let specs: Vec<TensorSpec> = tensors.iter().map(TensorSpec::of).collect();
        let buckets: Vec<FlatBucket> = plan_buckets(&specs, self.bucket_cap_bytes)
            .into_iter()
            .map(|members| {
                FlatBucket::pack(
                    members
                        .iter()
                        .map(|&i| tensors[i].shallow_clone())
                        .collect(),
                )
            })
            .collect();
        let flats: Vec<Tensor> = buckets.iter().map(|b| b.flat.shallow_clone()).collect();
        self.reduce_raw("allreduce", &flats, ffi::OP_SUM)?;
        if op == ReduceOp::Avg {
            for flat in &flats {
                let _ = flat.shallow_clone().g_div_scalar_(self.world_size as i64);
            }
        }
        buckets.into_iter().for_each(FlatBucket::unpack);
        Ok(())
    }

    /// Overwrites every tensor with `root`'s values.
    ///
    /// # Errors
    /// A root outside the group, a lost peer, or shapes that differ between ranks.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        if root >= self.world_size {
            return Err(self.invalid(
                "broadcast",
                format!("root {root} is not below world size {}", self.world_size),
            ));
        }
        self.verify_layout("broadcast", tensors)?;
        self.call("broadcast", tensors, |raw, ptrs, count| unsafe {
            ffi::arl_pg_broadcast(raw, ptrs, count, root as i32)
        })
    }

    /// Returns once every rank has reached the barrier.
    ///
    /// # Errors
    /// A lost peer, or the timeout.
    pub fn barrier(&self) -> Result<()> {
        self.call("barrier", &[], |raw, _, _| unsafe {
            ffi::arl_pg_barrier(raw)
        })
    }

    /// Shuts the backend down cleanly (flushes NCCL communicators, stops Gloo threads).
    ///
    /// # Errors
    /// c10d's message if the backend could not shut down.
    pub fn shutdown(self) -> Result<()> {
        self.call("shutdown", &[], |raw, _, _| unsafe {
            ffi::arl_pg_shutdown(raw)
        })
    }

    /// Fails on every rank, naming this rank's tensors, unless all ranks pass tensors of the
    /// same dtypes and shapes to `op`.
    fn verify_layout(&self, op: &str, tensors: &[Tensor]) -> Result<()> {
        if !self.verify_layout {
            return Ok(());
        }
        let fingerprint = layout::fingerprint(op, tensors);
        let probe = Tensor::from_slice(&layout::probe(fingerprint)).to_device(self.probe_device);
        self.reduce_raw(op, std::slice::from_ref(&probe), ffi::OP_MAX)?;
        let reduced: Vec<i64> = Vec::try_from(probe.to_device(Device::Cpu)).expect("int64 probe");
        if layout::all_agree(fingerprint, [reduced[0], reduced[1]]) {
            return Ok(());
        }
        Err(self.invalid(
            op,
            format!(
                "tensor dtypes or shapes differ between ranks (this rank has {})",
                layout::describe(tensors)
            ),
        ))
    }

    fn reduce_raw(&self, op: &str, tensors: &[Tensor], reduce: i32) -> Result<()> {
        self.call(op, tensors, |raw, ptrs, count| unsafe {
            ffi::arl_pg_allreduce(raw, ptrs, count, reduce)
        })
    }

    fn call(
        &self,
        op: &str,
        tensors: &[Tensor],
        f: impl FnOnce(
            *mut ffi::RawGroup,
            *const *mut torch_sys::C_tensor,
            usize,
        ) -> *mut std::os::raw::c_char,
    ) -> Result<()> {
        let ptrs: Vec<*mut torch_sys::C_tensor> =
            tensors.iter().map(|t| t.as_ptr() as *mut _).collect();
        let sizes: Vec<i64> = tensors.iter().map(|t| t.numel() as i64).collect();
        self.observed(op, &sizes, || f(self.raw, ptrs.as_ptr(), ptrs.len()))
    }

    /// Runs the shim call `f`, a collective over tensors of `sizes` elements, between the
    /// observer's enter and leave, and turns its status into this rank's error.
    pub(crate) fn observed(
        &self,
        op: &str,
        sizes: &[i64],
        f: impl FnOnce() -> *mut std::os::raw::c_char,
    ) -> Result<()> {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        if let Some(observer) = &self.observer {
            observer(Collective::Enter { seq, op, sizes });
        }
        ffi::take_error(f()).map_err(|message| C10dError::Op {
            op: op.to_owned(),
            rank: self.rank as i64,
            message,
        })?;
        if let Some(observer) = &self.observer {
            observer(Collective::Leave { seq });
        }
        Ok(())
    }

    /// The shim's handle.
    pub(crate) fn raw(&self) -> *mut ffi::RawGroup {
        self.raw
    }

    /// `reason` as this rank's error in `op`.
    pub(crate) fn invalid(&self, op: &str, reason: String) -> C10dError {
        C10dError::Invalid {
            op: op.to_owned(),
            rank: self.rank as i64,
            reason,
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a create call and is freed once.
        unsafe { ffi::arl_pg_free(self.raw) };
    }
}
