//! Joining the process group from the standard rank environment, as the job config's
//! `[launch] backend` and `[dist]` say (benchmarks take the same settings as flags).

use std::time::Duration;

use anyhow::Context;
use arl_c10d::{GroupOptions, ProcessGroup, RankEnv};
use arl_contract::JobConfig;
use arl_contract::config::launch::{Backend, DistConfig};
use arl_contract::rank_env::{NODE_ADDR_VAR, RUN_TOKEN_VAR};
use tch::Device;

/// Joins the group of a job: `[launch] backend`, `[dist]`, and Gloo bound to the node's
/// address (`ARL_NODE_ADDR`, which the launcher sets; else `launch.master_addr`); picks this
/// rank's device (the GPU of its local rank with NCCL, the CPU with Gloo).
///
/// # Errors
/// A bad rank environment or a failed rendezvous, naming the variable or the rank.
pub fn join(config: &JobConfig) -> anyhow::Result<(ProcessGroup, Device)> {
    let node_addr = std::env::var(NODE_ADDR_VAR)
        .ok()
        .filter(|addr| !addr.is_empty())
        .unwrap_or_else(|| config.launch.master_addr.clone());
    let token = std::env::var(RUN_TOKEN_VAR).unwrap_or_default();
    join_with(config.launch.backend, &config.dist, &node_addr, &token)
}

fn join_with(
    backend: Backend,
    dist: &DistConfig,
    gloo_hostname: &str,
    run_token: &str,
) -> anyhow::Result<(ProcessGroup, Device)> {
    arl_c10d::init_logging()?;
    let env = RankEnv::from_env().context("reading the rank environment")?;
    let (backend, device) = match backend {
        Backend::Nccl => (arl_c10d::Backend::Nccl, Device::Cuda(env.local_rank)),
        Backend::Gloo => (arl_c10d::Backend::Gloo, Device::Cpu),
    };
    let options = GroupOptions {
        backend,
        init_timeout: Duration::from_secs_f64(dist.init_timeout_s),
        timeout: Duration::from_secs_f64(dist.timeout_s),
        bucket_cap_bytes: (dist.bucket_mb * 1024.0 * 1024.0) as usize,
        gloo_hostname: gloo_hostname.to_owned(),
        verify_layout: dist.verify_layout,
        run_token: run_token.to_owned(),
        ..GroupOptions::default()
    };
    let mut group = ProcessGroup::init(&env, &options)?;
    group.observe(Box::new(crate::heartbeat::collective));
    Ok((group, device))
}

/// The group settings of a benchmark, as flags (defaults: `[dist]`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct DistArgs {
    /// Collective backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Gloo)]
    pub backend: BackendArg,
    /// Seconds to wait for the store and for all ranks to join.
    #[arg(long, default_value_t = DistConfig::default().init_timeout_s)]
    pub init_timeout_s: f64,
    /// Seconds one collective may wait for a peer.
    #[arg(long, default_value_t = DistConfig::default().timeout_s)]
    pub timeout_s: f64,
    /// All-reduce bucket size in MiB.
    #[arg(long, default_value_t = DistConfig::default().bucket_mb)]
    pub bucket_mb: f64,
    /// Skip the cross-rank dtype/shape check before each collective.
    #[arg(long)]
    pub skip_layout_check: bool,
    /// Address Gloo binds to, as a hostname; default: this machine's hostname.
    #[arg(long, default_value = "")]
    pub gloo_hostname: String,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// CPU collectives over TCP.
    Gloo,
    /// GPU collectives (build with `--features nccl`).
    Nccl,
}

impl DistArgs {
    /// Joins the group these flags describe.
    ///
    /// # Errors
    /// As [`join`].
    pub fn join(&self) -> anyhow::Result<(ProcessGroup, Device)> {
        let backend = match self.backend {
            BackendArg::Gloo => Backend::Gloo,
            BackendArg::Nccl => Backend::Nccl,
        };
        let dist = DistConfig {
            init_timeout_s: self.init_timeout_s,
            timeout_s: self.timeout_s,
            bucket_mb: self.bucket_mb,
            verify_layout: !self.skip_layout_check,
        };
        join_with(backend, &dist, &self.gloo_hostname, "")
    }
}
