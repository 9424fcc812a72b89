//! libtorch's distributed engine, c10d, for Rust: `TCPStore` rendezvous, `ProcessGroupGloo`
//! (CPU) and `ProcessGroupNCCL` (GPU, feature `nccl`), with bucketed all-reduce, broadcast,
//! barrier and shutdown, and gradient all-reduce overlapped with backward ([`DataParallel`]). Every failure is a [`C10dError`] carrying c10d's own message; nothing
//! aborts or panics across the FFI boundary.

mod autocast;
mod bucket;
mod ddp;
mod env;
mod error;
mod ffi;
mod group;
mod layout;
mod store;

pub use autocast::autocast_bf16;
pub use bucket::{TensorSpec, plan_buckets, plan_buckets_first};
pub use ddp::{DataParallel, Synced};
pub use env::RankEnv;
pub use error::{C10dError, Result};
pub use group::{Backend, Collective, GroupOptions, Observer, ProcessGroup, ReduceOp};

/// Routes libtorch's C++ logging through `TORCH_CPP_LOG_LEVEL` (call once, early).
///
/// # Errors
/// If c10's logging could not be initialised.
pub fn init_logging() -> Result<()> {
    // SAFETY: no arguments; the shim catches every exception.
    ffi::take_error(unsafe { ffi::arl_c10d_init_logging() }).map_err(|message| C10dError::Op {
        op: "init logging".into(),
        rank: -1,
        message,
    })
}
