//! `arl pretrain CONFIG`: the resolved config written into the run folder, then one
//! `arl-worker pretrain` per local rank; rank 0's events drive the progress bar and the
//! messages about checkpoints. Workers resume from the newest committed checkpoint by
//! themselves.

use anyhow::Context;
use arl_contract::{JobConfig, PRETRAIN_JOB};

use crate::console;
use crate::job::{self, JobOutput};
use crate::topology::Topology;

/// Runs this node's ranks of pretraining to the end (or `stop_at`, or a stop signal), on a
/// validated config.
///
/// # Errors
/// A rank that fails (named, with the tail of its log).
pub fn pretrain(config: &JobConfig, stop_at: Option<u64>) -> anyhow::Result<JobOutput> {
    let topology = Topology::layout(&config.launch)?;
    let at = config.locations();
    let resolved = job::write_resolved(config)?;
    let mut args = job::worker_args("pretrain", &resolved);
    if let Some(step) = stop_at {
        args.extend(["--stop-at".to_owned(), step.to_string()]);
    }
    console::line(&format!(
        "arl pretrain: {} {} ranks on this node (node {} of {}, world {}), run folder {}, \
         TensorBoard logs {}",
        topology.nproc_per_node,
        config.launch.backend,
        topology.node_rank,
        topology.nnodes,
        topology.world_size(),
        at.run_dir().display(),
        arl_contract::locations::tensorboard_dir(at.run_dir()).display()
    ));
    job::run_job(config, PRETRAIN_JOB, args, at.run_dir()).context("pretraining")
}
