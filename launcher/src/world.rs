//! A local world: `nproc` rank processes on this machine with the standard rank environment
//! (see cluster/README.md), supervised until all exit. The first rank to fail ends the world:
//! the others are killed and the error names that rank.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

/// What to start on each rank.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// The program every rank runs.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Ranks to start.
    pub nproc: usize,
    /// Rendezvous host (rank 0 serves the store there).
    pub master_addr: String,
    /// Rendezvous port; 0 picks a free one.
    pub master_port: u16,
    /// Extra environment for every rank.
    pub env: Vec<(String, String)>,
    /// Called with each line rank 0 prints, as it prints it (progress).
    pub on_rank0_line: Option<fn(&str)>,
}

/// Runs the world to completion and returns each rank's standard output lines.
///
/// # Errors
/// A rank that cannot start or that exits unsuccessfully (named, with its exit status).
pub fn run_world(spec: &WorldSpec) -> anyhow::Result<Vec<Vec<String>>> {
    let port = match spec.master_port {
        0 => free_port(&spec.master_addr)?,
        port => port,
    };
    let mut children = Vec::with_capacity(spec.nproc);
    let mut readers = Vec::with_capacity(spec.nproc);
    for rank in 0..spec.nproc {
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .envs(rank_env(rank, spec.nproc, &spec.master_addr, port))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", spec.program.display()))?;
        let echo = if rank == 0 { spec.on_rank0_line } else { None };
        readers.push(collect_lines(
            child.stdout.take().expect("piped stdout"),
            echo,
        ));
        children.push(child);
    }
    let failure = supervise(&mut children);
    let outputs = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    match failure {
        Some((rank, status)) => bail!(
            "rank {rank} of {} failed ({status}); the other ranks were stopped",
            spec.nproc
        ),
        None => Ok(outputs),
    }
}

/// The standard variables for one rank of a single-node world.
fn rank_env(
    rank: usize,
    nproc: usize,
    master_addr: &str,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("RANK", rank.to_string()),
        ("WORLD_SIZE", nproc.to_string()),
        ("LOCAL_RANK", rank.to_string()),
        ("LOCAL_WORLD_SIZE", nproc.to_string()),
        ("MASTER_ADDR", master_addr.to_owned()),
        ("MASTER_PORT", port.to_string()),
    ]
}

/// Waits for every child; on the first failure kills the rest. Returns the failed rank.
fn supervise(children: &mut [Child]) -> Option<(usize, std::process::ExitStatus)> {
    let mut done = vec![false; children.len()];
    while done.iter().any(|d| !d) {
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => done[rank] = true,
                Ok(Some(status)) => {
                    for other in children.iter_mut() {
                        let _ = other.kill();
                        let _ = other.wait();
                    }
                    return Some((rank, status));
                }
                Ok(None) | Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn collect_lines(
    stdout: std::process::ChildStdout,
    echo: Option<fn(&str)>,
) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|line| {
                if let Some(echo) = echo {
                    echo(line);
                }
            })
            .collect()
    })
}

fn free_port(host: &str) -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((host, 0)).with_context(|| format!("finding a free port on {host}"))?;
    Ok(listener.local_addr()?.port())
}
