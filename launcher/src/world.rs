//! This node's share of a world: one rank process per local worker with the standard rank
//! environment (see cluster/README.md), supervised until all exit.
//!
//! - Each rank's standard error goes to `<log_dir>/rank<R>.log` and to the terminal, prefixed
//!   with its rank; its standard output is collected (rank 0's lines are also handed to a
//!   callback as they come: progress).
//! - The first rank to fail ends the world: the others are killed, and the error names the
//!   rank, its exit status and the last lines of its log.
//! - SIGINT, SIGTERM and SIGUSR1 are forwarded to every rank, which checkpoint at the next step
//!   boundary and exit; a second SIGINT or SIGTERM kills them at once.
//! - Ranks die with the launcher (parent-death signal), so none is left behind.
//! - Each rank gets its share of the cores as `OMP_NUM_THREADS` unless the user set it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::console;
use crate::topology::Topology;

/// Lines of a failed rank's log shown in the error.
const TAIL_LINES: usize = 20;

/// Called with each line rank 0 prints on standard output.
pub type LineHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// What to start on each local rank.
#[derive(Clone)]
pub struct WorldSpec {
    /// The program every rank runs.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Nodes, this node, workers per node, rendezvous.
    pub topology: Topology,
    /// Extra environment for every rank.
    pub env: Vec<(String, String)>,
    /// Rank 0's standard output lines, as they come.
    pub on_rank0_line: Option<LineHandler>,
    /// Folder of the per-rank logs (`rank<R>.log`); none: standard error is only echoed.
    pub log_dir: Option<PathBuf>,
}

/// How a world ended without a failure.
#[derive(Debug)]
pub struct WorldOutput {
    /// Each local rank's standard output lines.
    pub stdout: Vec<Vec<String>>,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<i32>,
}

/// Runs this node's ranks to completion.
///
/// # Errors
/// A rank that cannot start or that exits unsuccessfully: named, with its exit status and the
/// tail of its log.
pub fn run_world(spec: &WorldSpec) -> anyhow::Result<WorldOutput> {
    let topology = &spec.topology;
    let port = match topology.master_port {
        0 => free_port(&topology.master_addr)?,
        port => port,
    };
    if let Some(dir) = &spec.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut signals = caught_signals()?.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(signal) = signals.pending().next() {
        // Asked to stop before this world started: start nothing.
        return Ok(WorldOutput {
            stdout: Vec::new(),
            stopped_by: Some(signal),
        });
    }
    let mut ranks = Vec::with_capacity(topology.nproc_per_node);
    for local in 0..topology.nproc_per_node {
        match RankProcess::start(spec, local, port) {
            Ok(rank) => ranks.push(rank),
            Err(error) => {
                for rank in &mut ranks {
                    let _ = rank.child.kill();
                    let _ = rank.child.wait();
                }
                return Err(error);
            }
        }
    }
    let ended = supervise(&mut ranks, &mut signals);
    let stdout = ranks.iter_mut().map(RankProcess::join).collect();
    match ended {
        Ended::Failed { local, status } => {
            let rank = &ranks[local];
            bail!(
                "rank {} of {} failed ({status}); the other ranks were stopped.{}",
                rank.rank,
                topology.world_size(),
                rank.tail()
            )
        }
        Ended::Done { stopped_by } => Ok(WorldOutput { stdout, stopped_by }),
    }
}

/// The launcher's stop signals, caught from the first world on for the life of the process
/// (signal handlers cannot be given back), so one that arrives between worlds is kept for the
/// next one instead of being lost.
fn caught_signals() -> anyhow::Result<&'static Mutex<Signals>> {
    static SIGNALS: OnceLock<Mutex<Signals>> = OnceLock::new();
    if let Some(signals) = SIGNALS.get() {
        return Ok(signals);
    }
    let signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).context("catching signals")?;
    Ok(SIGNALS.get_or_init(|| Mutex::new(signals)))
}

/// One running rank and the threads reading its output.
struct RankProcess {
    rank: usize,
    child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    log: Option<PathBuf>,
}

impl RankProcess {
    fn start(spec: &WorldSpec, local: usize, port: u16) -> anyhow::Result<Self> {
        let topology = &spec.topology;
        let rank = topology.global_rank(local);
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(rank_env(topology, local, port))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", spec.program.display()))?;
        let log = spec
            .log_dir
            .as_ref()
            .map(|dir| dir.join(format!("rank{rank}.log")));
        let file = match &log {
            Some(path) => Some(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => None,
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let stderr = echo_stderr(
            child.stderr.take().expect("piped stderr"),
            rank,
            file,
            tail.clone(),
        );
        let on_line = if local == 0 {
            spec.on_rank0_line.clone()
        } else {
            None
        };
        let stdout = collect_lines(child.stdout.take().expect("piped stdout"), on_line);
        Ok(Self {
            rank,
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            tail,
            log,
        })
    }

    /// Waits for the output threads; returns the standard output lines.
    fn join(&mut self) -> Vec<String> {
        if let Some(stderr) = self.stderr.take() {
            let _ = stderr.join();
        }
        self.stdout
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The last lines of the rank's standard error, for an error message.
    fn tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return " It wrote nothing on standard error.".to_owned();
        }
        let source = self
            .log
            .as_deref()
            .map_or(String::new(), |p| format!(" ({})", p.display()));
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!(
            "\nLast lines of rank {}{source}:\n  {}",
            self.rank,
            lines.join("\n  ")
        )
    }

    fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }
}

/// How supervision ended.
enum Ended {
    Failed {
        local: usize,
        status: std::process::ExitStatus,
    },
    Done {
        stopped_by: Option<i32>,
    },
}

/// Waits for every rank, forwarding signals; on the first failure kills the rest. Of ranks
/// found failed in the same pass, one killed by a signal is blamed first (the others usually
/// failed because it vanished from their collectives).
fn supervise(ranks: &mut [RankProcess], signals: &mut Signals) -> Ended {
    let mut done = vec![false; ranks.len()];
    let mut stopped_by = None;
    let mut interrupts = 0;
    while done.iter().any(|d| !d) {
        for signal in signals.pending() {
            // SIGUSR1 (a scheduler's warning) never escalates; a repeated SIGINT or SIGTERM
            // kills.
            if signal != SIGUSR1 {
                interrupts += 1;
            }
            stopped_by.get_or_insert(signal);
            let forced = interrupts > 1;
            let forward = match Signal::try_from(signal) {
                _ if forced => Signal::SIGKILL,
                Ok(forward) => forward,
                Err(_) => continue,
            };
            console::line(&format!(
                "arl: {} ranks: {forward}{}",
                if forced {
                    "killing the"
                } else {
                    "forwarding to the"
                },
                if forced {
                    ""
                } else {
                    " (they checkpoint at the next step boundary; send it again to kill them)"
                }
            ));
            for (local, rank) in ranks.iter().enumerate() {
                if !done[local] {
                    rank.signal(forward);
                }
            }
        }
        let mut failed = Vec::new();
        for (local, rank) in ranks.iter_mut().enumerate() {
            if done[local] {
                continue;
            }
            match rank.child.try_wait() {
                Ok(Some(status)) if status.success() => done[local] = true,
                Ok(Some(status)) => failed.push((local, status)),
                Ok(None) | Err(_) => {}
            }
        }
        if let Some(&(local, status)) = failed
            .iter()
            .find(|(_, status)| status.signal().is_some())
            .or(failed.first())
        {
            for rank in ranks.iter_mut() {
                let _ = rank.child.kill();
                let _ = rank.child.wait();
            }
            return Ended::Failed { local, status };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ended::Done { stopped_by }
}

/// The standard variables of local worker `local`, and `OMP_NUM_THREADS` (unless set): this
/// node's cores shared among its workers, as torchrun does, since torch's spinning intra-op
/// threads stall each other for seconds when the workers oversubscribe the cores.
fn rank_env(topology: &Topology, local: usize, port: u16) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("RANK", topology.global_rank(local).to_string()),
        ("WORLD_SIZE", topology.world_size().to_string()),
        ("LOCAL_RANK", local.to_string()),
        ("LOCAL_WORLD_SIZE", topology.nproc_per_node.to_string()),
        ("GROUP_RANK", topology.node_rank.to_string()),
        ("MASTER_ADDR", topology.master_addr.clone()),
        ("MASTER_PORT", port.to_string()),
    ];
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = (cores / topology.nproc_per_node.max(1)).max(1);
        env.push(("OMP_NUM_THREADS", threads.to_string()));
    }
    env
}

/// Echoes a rank's standard error with its rank, into its log file too, keeping the tail.
fn echo_stderr(
    stderr: std::process::ChildStderr,
    rank: usize,
    mut file: Option<std::fs::File>,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            console::line(&format!("[rank {rank}] {line}"));
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    })
}

fn collect_lines(
    stdout: std::process::ChildStdout,
    on_line: Option<LineHandler>,
) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|line| {
                if let Some(handler) = &on_line {
                    handler(line);
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

/// The log folder of a run: `<run_dir>/logs`.
pub fn log_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("logs")
}
