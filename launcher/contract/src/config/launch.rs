//! `[launch]` and `[dist]`: how the ranks are started and how they talk.

use serde::{Deserialize, Serialize};

/// `[launch]`: processes and rendezvous.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LaunchConfig {
    /// Worker processes on each node (one per GPU, or CPU slots in debug mode); 0 = one per
    /// GPU of the node.
    pub nproc_per_node: usize,
    /// Nodes in the job (each runs one `arl` with the same config).
    pub nnodes: usize,
    /// The fewest nodes the job goes on with when nodes are lost (`--nnodes MIN:MAX`); 0: all
    /// `nnodes`, always (a lost node is waited for).
    pub min_nnodes: usize,
    /// Seconds a lost node gets to return before the others go on without it (with
    /// `min_nnodes` below `nnodes`).
    pub rejoin_timeout_s: f64,
    /// This node's index; node 0 hosts rank 0 and the rendezvous.
    pub node_rank: usize,
    /// Inside a SLURM allocation, take nodes, node index, rendezvous host and port from it.
    pub slurm: bool,
    /// `gloo` (CPU) or `nccl` (GPU).
    pub backend: Backend,
    /// Rendezvous host; rank 0 serves the store there.
    pub master_addr: String,
    /// Rendezvous port; 0 picks a free one.
    pub master_port: u16,
    /// This node's address, which its ranks bind and advertise to the other nodes; empty: the
    /// local address through which `master_addr` is reached.
    pub node_addr: String,
    /// The run's name at the rendezvous, the same on every node; empty: `SLURM_JOB_ID` in a
    /// SLURM job, else the location of the job's shared state.
    pub run_id: String,
    /// Restarts of the world after a rank fails, counted over every node of one launch of the
    /// job (0: the first failure ends it). A failure before the first completed step is never
    /// retried.
    pub max_restarts: u32,
    /// Seconds before a restart; it doubles with each world in a row that failed before
    /// completing a step (a crash loop), up to [`MAX_BACKOFF_S`].
    pub restart_backoff_s: f64,
    /// The hang watchdog's margin: in steady state a rank that reports no progress for twice
    /// the step time plus this many seconds is stalled.
    pub hang_margin_s: f64,
    /// The watchdog's limit, in seconds, at start-up, in a checkpoint and in an evaluation
    /// (and before the step time is known).
    pub hang_slow_s: f64,
    /// After a second SIGINT or SIGTERM, seconds the ranks get to finish (a checkpoint commit in
    /// flight among them) before they are killed; a third kills at once. Longer than a commit
    /// of the model's checkpoint (BENCHMARKS.md: 37 s for the base model to S3).
    pub kill_grace_s: f64,
}

/// The longest wait between restarts, in seconds.
pub const MAX_BACKOFF_S: f64 = 60.0;

impl LaunchConfig {
    /// The fewest nodes a world may have.
    pub fn min_nodes(&self) -> usize {
        match self.min_nnodes {
            0 => self.nnodes,
            min => min,
        }
    }

    /// Seconds to wait before a restart after `barren` worlds in a row failed without
    /// completing a step (0: the last world made progress).
    pub fn backoff_s(&self, barren: u32) -> f64 {
        (self.restart_backoff_s * f64::from(1u32 << barren.min(16))).min(MAX_BACKOFF_S)
    }
}

impl Default for LaunchConfig {
    fn default() -> Self {
        Self {
            nproc_per_node: 1,
            nnodes: 1,
            min_nnodes: 0,
            rejoin_timeout_s: 60.0,
            node_rank: 0,
            slurm: true,
            backend: Backend::Gloo,
            master_addr: "127.0.0.1".to_owned(),
            master_port: 0,
            node_addr: String::new(),
            run_id: String::new(),
            max_restarts: 3,
            restart_backoff_s: 1.0,
            hang_margin_s: 30.0,
            hang_slow_s: 600.0,
            kill_grace_s: 60.0,
        }
    }
}

/// The collective backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// CPU collectives over TCP.
    Gloo,
    /// GPU collectives (a build with the `nccl` feature).
    Nccl,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gloo => "gloo",
            Self::Nccl => "nccl",
        })
    }
}

/// `[dist]`: collectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// Seconds to wait for the store and for every rank to join.
    pub init_timeout_s: f64,
    /// Seconds one collective may wait for a peer.
    pub timeout_s: f64,
    /// All-reduce bucket size in MiB.
    pub bucket_mb: f64,
    /// Compare dtypes and shapes across ranks before each collective (one 16-byte
    /// all-reduce per call); ranks that disagree otherwise make Gloo abort.
    pub verify_layout: bool,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            init_timeout_s: 300.0,
            timeout_s: 100.0,
            bucket_mb: 25.0,
            verify_layout: true,
        }
    }
}
