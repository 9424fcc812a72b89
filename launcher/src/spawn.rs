//! Starting ranks: the `arl-worker` binary, and one process per local rank with the standard
//! rank environment (see cluster/README.md), its standard error echoed with its rank and kept
//! in `<log_dir>/rank<R>.log`, its standard output collected (rank 0's lines also handed to a
//! callback as they come). Ranks die with the launcher (parent-death signal), so none is left
//! behind; each gets its share of the cores as `OMP_NUM_THREADS` unless the user set it. A
//! watched rank also gets a heartbeat pipe as descriptor 3 (`ARL_PROGRESS_FD`), read into its
//! [`RankProgress`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, bail};
use arl_contract::rank_env::{NODE_ADDR_VAR, PROGRESS_FD_VAR};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::console;
use crate::heartbeats::{RankProgress, read_heartbeats};
use crate::topology::Topology;

/// The descriptor a watched rank writes its heartbeats to.
const PROGRESS_FD: i32 = 3;

/// `arl-worker`: `$ARL_WORKER_BIN`, else beside this executable.
///
/// # Errors
/// If neither exists.
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ARL_WORKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the arl executable")?;
    let worker = exe.with_file_name("arl-worker");
    if !worker.exists() {
        bail!(
            "arl-worker not found beside {} (build it, or set ARL_WORKER_BIN)",
            exe.display()
        );
    }
    Ok(worker)
}

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
    /// After a second stop signal, how long the ranks get before they are killed.
    pub kill_grace: std::time::Duration,
}

/// Lines of a failed rank's log shown in the error.
const TAIL_LINES: usize = 20;

/// Called with each line rank 0 prints on standard output.
pub type LineHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// One running rank and the threads reading its output.
pub(crate) struct RankProcess {
    pub(crate) rank: usize,
    pub(crate) child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    log: Option<PathBuf>,
    /// Its heartbeats, when watched.
    pub(crate) progress: Option<Arc<Mutex<RankProgress>>>,
    heartbeats: Option<JoinHandle<()>>,
}

impl RankProcess {
    /// Starts local rank `local`; `watched`: with a heartbeat pipe; `round`: the world's round,
    /// marked in its log (which every round of the job appends to).
    pub(crate) fn start(
        spec: &WorldSpec,
        local: usize,
        port: u16,
        watched: bool,
        round: u32,
    ) -> anyhow::Result<Self> {
        let topology = &spec.topology;
        let rank = topology.global_rank(local);
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(rank_env(topology, local, port))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let pipe = match watched {
            true => Some(std::io::pipe().context("creating a heartbeat pipe")?),
            false => None,
        };
        let writer = pipe.as_ref().map(|(_, writer)| writer.as_raw_fd());
        if writer.is_some() {
            command.env(PROGRESS_FD_VAR, PROGRESS_FD.to_string());
        }
        // SAFETY: prctl, dup2 and fcntl are async-signal-safe; nothing else runs between fork
        // and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                if let Some(fd) = writer {
                    // dup2 onto itself keeps close-on-exec: clear it by hand then.
                    let moved = if fd == PROGRESS_FD {
                        libc::fcntl(fd, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, PROGRESS_FD)
                    };
                    if moved < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", spec.program.display()))?;
        // The rank holds the writing end now; the launcher's copy closes here.
        let (progress, heartbeats) = match pipe {
            Some((reader, _writer)) => {
                let progress = Arc::new(Mutex::new(RankProgress::new(Instant::now())));
                let thread = read_heartbeats(reader, progress.clone());
                (Some(progress), Some(thread))
            }
            None => (None, None),
        };
        let log = spec
            .log_dir
            .as_ref()
            .map(|dir| dir.join(format!("rank{rank}.log")));
        let file = match &log {
            Some(path) => Some(open_log(path, round)?),
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
            progress,
            heartbeats,
        })
    }

    /// Waits for the output threads; returns the standard output lines.
    pub(crate) fn join(&mut self) -> Vec<String> {
        if let Some(heartbeats) = self.heartbeats.take() {
            let _ = heartbeats.join();
        }
        if let Some(stderr) = self.stderr.take() {
            let _ = stderr.join();
        }
        self.stdout
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The last lines of the rank's standard error, for an error message.
    pub(crate) fn tail(&self) -> String {
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

    pub(crate) fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }
}

/// Opens a rank's log for appending, marking where round `round` begins.
fn open_log(path: &std::path::Path, round: u32) -> anyhow::Result<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "--- arl: the world of round {round} starts ---")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
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
        (NODE_ADDR_VAR, topology.node_addr.clone()),
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

pub(crate) fn free_port(host: &str) -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((host, 0)).with_context(|| format!("finding a free port on {host}"))?;
    Ok(listener.local_addr()?.port())
}
