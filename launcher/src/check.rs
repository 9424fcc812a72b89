//! `arl check` and the check every command runs first, in this process, before any rank
//! starts or any file is written: the config validated for the jobs to run (every section and
//! the inputs of those jobs), the topology resolved, and every job's batch split over the
//! world.

use anyhow::Context;
use arl_contract::JobConfig;

use crate::topology::Topology;

/// Checks `config` for running `jobs` on this node's topology.
///
/// # Errors
/// The first key that breaks a rule (named), or a topology that cannot be resolved.
pub fn check(config: &JobConfig, jobs: &[String]) -> anyhow::Result<Topology> {
    let topology = config
        .validate(jobs)
        .and_then(|()| Topology::layout(&config.launch))
        .and_then(|topology| {
            config.validate_world(jobs, topology.world_size())?;
            Ok(topology)
        })
        .with_context(|| format!("config {}", config.source))?;
    Ok(topology)
}
