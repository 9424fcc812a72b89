//! Process-group settings as command-line arguments (the launcher fills them from the TOML
//! config), and joining the group from the standard rank environment.

use std::time::Duration;

use anyhow::Context;
use arl_c10d::{Backend, GroupOptions, ProcessGroup, RankEnv};
use tch::Device;

/// How this rank joins the job.
#[derive(Debug, Clone, clap::Args)]
pub struct DistArgs {
    /// Collective backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Gloo)]
    pub backend: BackendArg,
    /// Seconds to wait for the store and for all ranks to join.
    #[arg(long, default_value_t = 300.0)]
    pub init_timeout_s: f64,
    /// Seconds one collective may wait for a peer.
    #[arg(long, default_value_t = 100.0)]
    pub timeout_s: f64,
    /// All-reduce bucket size in MiB.
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
    /// Skip the cross-rank dtype/shape check before each collective (saves one 16-byte
    /// all-reduce per call; ranks that disagree then make Gloo abort).
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
    /// The group options these arguments describe.
    pub fn group_options(&self) -> GroupOptions {
        GroupOptions {
            backend: match self.backend {
                BackendArg::Gloo => Backend::Gloo,
                BackendArg::Nccl => Backend::Nccl,
            },
            init_timeout: Duration::from_secs_f64(self.init_timeout_s),
            timeout: Duration::from_secs_f64(self.timeout_s),
            bucket_cap_bytes: (self.bucket_mb * 1024.0 * 1024.0) as usize,
            gloo_hostname: self.gloo_hostname.clone(),
            verify_layout: !self.skip_layout_check,
            ..GroupOptions::default()
        }
    }

    /// Reads the rank environment, joins the group, and picks this rank's device: the GPU of
    /// its local rank with NCCL, the CPU with Gloo.
    ///
    /// # Errors
    /// A bad rank environment or a failed rendezvous, naming the variable or the rank.
    pub fn join(&self) -> anyhow::Result<(ProcessGroup, Device)> {
        arl_c10d::init_logging()?;
        let env = RankEnv::from_env().context("reading the rank environment")?;
        let device = match self.backend {
            BackendArg::Nccl => Device::Cuda(env.local_rank),
            BackendArg::Gloo => Device::Cpu,
        };
        Ok((ProcessGroup::init(&env, &self.group_options())?, device))
    }
}
