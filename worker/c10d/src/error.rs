//! The one error type of this crate: which operation failed, and c10d's own message.

/// A failed c10d operation. `message` is c10d's text (without the C++ backtrace).
#[derive(Debug, thiserror::Error)]
pub enum C10dError {
    /// An operation inside libtorch's c10d failed (rendezvous, collective, timeout, peer loss).
    #[error("c10d {op} failed on rank {rank}: {message}")]
    Op {
        /// What was being done, e.g. `allreduce` or `store connect to 10.0.0.1:29500`.
        op: String,
        /// The rank that saw the failure (`-1` before a rank is known).
        rank: i64,
        /// c10d's message.
        message: String,
    },
    /// The call was refused before reaching c10d (bad argument, closed group).
    #[error("c10d {op} refused on rank {rank}: {reason}")]
    Invalid {
        /// What was being attempted.
        op: String,
        /// The rank that refused.
        rank: i64,
        /// Why.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, C10dError>;
