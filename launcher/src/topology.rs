//! Where this launcher sits in the job: nodes, this node's index, workers per node and the
//! rendezvous address, from `[launch]` (and its command-line flags) or, inside a SLURM
//! allocation, from the `SLURM_*` variables.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use anyhow::{Context, bail, ensure};

use arl_contract::config::launch::LaunchConfig;

/// The resolved layout of the job as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Nodes in the job.
    pub nnodes: usize,
    /// This node's index, `0 .. nnodes`.
    pub node_rank: usize,
    /// Workers on each node.
    pub nproc_per_node: usize,
    /// Host of global rank 0 (it serves the rendezvous store).
    pub master_addr: String,
    /// Port of the store; 0 = a free one (single node only).
    pub master_port: u16,
    /// This node's address, which its ranks bind and advertise.
    pub node_addr: String,
}

impl Topology {
    /// `nproc` local workers, alone in the job, with the store on a free local port.
    pub fn single_node(nproc: usize) -> Self {
        Self {
            nnodes: 1,
            node_rank: 0,
            nproc_per_node: nproc,
            master_addr: "127.0.0.1".to_owned(),
            master_port: 0,
            node_addr: "127.0.0.1".to_owned(),
        }
    }

    /// Ranks in the whole job.
    pub fn world_size(&self) -> usize {
        self.nnodes * self.nproc_per_node
    }

    /// The global rank of local worker `local`.
    pub fn global_rank(&self, local: usize) -> usize {
        self.node_rank * self.nproc_per_node + local
    }

    /// The layout `launch` and this process's environment describe (see [`Topology::resolve`]),
    /// with this node's address found when `launch.node_addr` is empty ([`route_to`]).
    ///
    /// # Errors
    /// As `resolve`, or no route to the master.
    pub fn of(launch: &LaunchConfig) -> anyhow::Result<Self> {
        let mut topology = Self::layout(launch)?;
        if topology.node_addr.is_empty() {
            topology.node_addr = route_to(&topology.master_addr, topology.master_port)?;
        }
        Ok(topology)
    }

    /// The layout `launch` and this process's environment describe, without looking up this
    /// node's address (a check that needs no network).
    ///
    /// # Errors
    /// As `resolve`.
    pub fn layout(launch: &LaunchConfig) -> anyhow::Result<Self> {
        Self::resolve(launch, &|name| std::env::var(name).ok())
    }

    /// The layout `launch` and `env` describe (`env` is the process environment; SLURM's
    /// variables apply inside a job step, `srun`, when `launch.slurm` is on).
    ///
    /// # Errors
    /// A node index out of range, a multi-node job without a port, no GPU to count for
    /// `nproc_per_node = 0`, or a SLURM variable that does not parse (named).
    pub fn resolve(
        launch: &LaunchConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut topology = Self {
            nnodes: launch.nnodes,
            node_rank: launch.node_rank,
            nproc_per_node: launch.nproc_per_node,
            master_addr: launch.master_addr.clone(),
            master_port: launch.master_port,
            node_addr: launch.node_addr.clone(),
        };
        if launch.slurm
            && env("SLURM_STEP_ID").is_some()
            && let Some(job) = env("SLURM_JOB_ID")
        {
            topology.apply_slurm(&job, env)?;
        }
        if topology.nproc_per_node == 0 {
            topology.nproc_per_node = gpu_count(env);
            ensure!(
                topology.nproc_per_node > 0,
                "launch.nproc_per_node = 0 means one worker per GPU, and this node has none; \
                 set a number of CPU workers (--nproc-per-node 2)"
            );
        }
        ensure!(
            topology.nnodes >= 1 && topology.node_rank < topology.nnodes,
            "launch.node_rank = {} is not below launch.nnodes = {}",
            topology.node_rank,
            topology.nnodes
        );
        ensure!(
            topology.nnodes == 1 || topology.master_port != 0,
            "a job of {} nodes needs a fixed launch.master_port (--master-port) that every node \
             uses",
            topology.nnodes
        );
        Ok(topology)
    }

    /// Nodes, node index and rendezvous host from the job step, a port derived from the job id
    /// when none is set, and, for `nproc_per_node = 0`, workers per node from
    /// `SLURM_GPUS_ON_NODE` (an explicit count stands: a CPU debug run in a GPU allocation).
    fn apply_slurm(
        &mut self,
        job: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        let number = |name: &str| -> anyhow::Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v:?} is not a number"))
                })
                .transpose()
        };
        if let Some(nodes) = number("SLURM_STEP_NUM_NODES")?.or(number("SLURM_NNODES")?) {
            self.nnodes = nodes;
        }
        if let Some(node) = number("SLURM_NODEID")? {
            self.node_rank = node;
        }
        if self.nproc_per_node == 0
            && let Some(gpus) = number("SLURM_GPUS_ON_NODE")?
        {
            self.nproc_per_node = gpus;
        }
        if let Some(list) = env("SLURM_STEP_NODELIST").or_else(|| env("SLURM_NODELIST")) {
            self.master_addr =
                first_host(&list).with_context(|| format!("SLURM_STEP_NODELIST={list:?}"))?;
        }
        if self.master_port == 0 {
            let id: u64 = job
                .trim()
                .parse()
                .with_context(|| format!("SLURM_JOB_ID={job:?} is not a number"))?;
            self.master_port = 20_000 + (id % 10_000) as u16;
        }
        Ok(())
    }
}

/// The first host of a SLURM node list (`gpu[03-05,09],cpu1` → `gpu03`).
///
/// # Errors
/// An empty list or an unclosed bracket.
pub fn first_host(list: &str) -> anyhow::Result<String> {
    let list = list.trim();
    let end = list.find([',', '[']).unwrap_or(list.len());
    let prefix = &list[..end];
    if list[end..].starts_with('[') {
        let inner = &list[end + 1..];
        let close = inner.find(']').context("unclosed '[' in the node list")?;
        let first = inner[..close]
            .split([',', '-'])
            .next()
            .filter(|s| !s.is_empty())
            .context("empty range in the node list")?;
        return Ok(format!("{prefix}{first}"));
    }
    if prefix.is_empty() {
        bail!("empty node list");
    }
    Ok(prefix.to_owned())
}

/// The local address through which `host` is reached (the source address the kernel picks
/// for it; no packet is sent), as torchrun finds a node's address.
///
/// # Errors
/// A host that does not resolve or has no route (named).
pub fn route_to(host: &str, port: u16) -> anyhow::Result<String> {
    let target = (host, port.max(1))
        .to_socket_addrs()
        .with_context(|| format!("resolving launch.master_addr {host:?}"))?
        .next()
        .with_context(|| format!("launch.master_addr {host:?} has no address"))?;
    let unspecified: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(unspecified).context("opening a UDP socket")?;
    socket.connect(target).with_context(|| {
        format!("no route to launch.master_addr {host} ({target}): set launch.node_addr")
    })?;
    Ok(socket.local_addr()?.ip().to_string())
}

/// GPUs this process may use: `CUDA_VISIBLE_DEVICES` when set, else the NVIDIA driver's.
fn gpu_count(env: &dyn Fn(&str) -> Option<String>) -> usize {
    if let Some(visible) = env("CUDA_VISIBLE_DEVICES") {
        return visible.split(',').filter(|d| !d.trim().is_empty()).count();
    }
    std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |entries| entries.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> LaunchConfig {
        arl_contract::JobConfig::load(None, &[]).unwrap().launch
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn slurm_node_lists_name_their_first_host() {
        assert_eq!(first_host("gpu[03-05,09],cpu1").unwrap(), "gpu03");
        assert_eq!(first_host("node7,node8").unwrap(), "node7");
        assert_eq!(first_host("single").unwrap(), "single");
        assert_eq!(first_host("n[12]").unwrap(), "n12");
        assert!(first_host("n[1-3").is_err());
        assert!(first_host("").is_err());
    }

    #[test]
    fn a_slurm_job_step_sets_nodes_rank_master_and_port() {
        let env = env_of(&[
            ("SLURM_JOB_ID", "123456"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_NUM_NODES", "4"),
            ("SLURM_NODEID", "2"),
            ("SLURM_GPUS_ON_NODE", "8"),
            ("SLURM_STEP_NODELIST", "dgx[010-013]"),
        ]);
        let mut auto = launch();
        auto.nproc_per_node = 0;
        let topology = Topology::resolve(&auto, &env).unwrap();
        assert_eq!(
            topology,
            Topology {
                nnodes: 4,
                node_rank: 2,
                nproc_per_node: 8,
                master_addr: "dgx010".to_owned(),
                master_port: 23456,
                node_addr: String::new(),
            }
        );
        assert_eq!(topology.world_size(), 32);
        assert_eq!(topology.global_rank(3), 19);
        // An explicit worker count stands (a CPU debug run inside a GPU allocation).
        assert_eq!(
            Topology::resolve(&launch(), &env).unwrap().nproc_per_node,
            2
        );
        // Off by config, or outside a job step (salloc, the batch script itself): the
        // [launch] values stand.
        let mut off = launch();
        off.slurm = false;
        assert_eq!(Topology::resolve(&off, &env).unwrap().nnodes, 1);
        let batch_shell = env_of(&[("SLURM_JOB_ID", "123456"), ("SLURM_NNODES", "4")]);
        assert_eq!(
            Topology::resolve(&launch(), &batch_shell).unwrap().nnodes,
            1
        );
    }

    #[test]
    fn a_node_finds_the_address_it_reaches_the_master_from() {
        assert_eq!(route_to("127.0.0.1", 0).unwrap(), "127.0.0.1");
        assert_eq!(route_to("localhost", 29500).unwrap(), "127.0.0.1");
        let error = route_to("no-such-host.invalid", 1).unwrap_err();
        assert!(
            format!("{error:#}").contains("no-such-host.invalid"),
            "{error:#}"
        );
        let mut launch = launch();
        assert_eq!(Topology::of(&launch).unwrap().node_addr, "127.0.0.1");
        launch.node_addr = "10.1.2.3".to_owned();
        assert_eq!(Topology::of(&launch).unwrap().node_addr, "10.1.2.3");
    }

    #[test]
    fn bad_layouts_are_refused_with_the_key() {
        let mut multi = launch();
        multi.nnodes = 2;
        let error = Topology::resolve(&multi, &env_of(&[])).unwrap_err();
        assert!(format!("{error}").contains("master_port"), "{error}");
        multi.master_port = 29500;
        multi.node_rank = 2;
        let error = Topology::resolve(&multi, &env_of(&[])).unwrap_err();
        assert!(format!("{error}").contains("node_rank = 2"), "{error}");
        let error = Topology::resolve(
            &launch(),
            &env_of(&[("SLURM_JOB_ID", "x1"), ("SLURM_STEP_ID", "0")]),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("SLURM_JOB_ID"), "{error}");
        let mut auto = launch();
        auto.nproc_per_node = 0;
        let gpus = Topology::resolve(&auto, &env_of(&[("CUDA_VISIBLE_DEVICES", "0,3")])).unwrap();
        assert_eq!(gpus.nproc_per_node, 2);
        let none = Topology::resolve(&auto, &env_of(&[("CUDA_VISIBLE_DEVICES", "")]));
        assert!(format!("{:#}", none.unwrap_err()).contains("one worker per GPU"));
    }
}
