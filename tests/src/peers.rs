//! Ranks as real processes: starting a world of peer binaries on a free loopback port, and
//! reading the JSON lines each rank prints.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free port on 127.0.0.1")
        .port()
}

/// One running rank: its process and the JSON lines it prints.
pub struct Rank {
    /// The process.
    pub child: Child,
    lines: Receiver<Value>,
}

impl Rank {
    /// Starts `program args…` as `rank` of `world_size`, rendezvous at 127.0.0.1:`port`.
    pub fn spawn(
        program: &str,
        args: &[&str],
        rank: usize,
        world_size: usize,
        port: u16,
        env: &[(&str, String)],
    ) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world_size.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", world_size.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("TORCH_CPP_LOG_LEVEL", "ERROR")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let lines = forward_json_lines(child.stdout.take().expect("piped stdout"));
        Self { child, lines }
    }

    /// The next JSON line, or `None` if none arrives within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<Value> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits up to `timeout` for the process to exit; kills it and panics if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "rank process {} did not exit within {timeout:?}",
                    self.child.id()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` ranks of `program SCENARIO` (a peer binary such as `c10d_peer`) on a fresh port.
pub fn peer_world(program: &str, n: usize, scenario: &str, env: &[(&str, String)]) -> Vec<Rank> {
    let port = free_port();
    (0..n)
        .map(|rank| Rank::spawn(program, &[scenario], rank, n, port, env))
        .collect()
}

/// Each peer rank's final JSON line and whether it exited successfully.
pub fn peer_results(ranks: &mut [Rank], timeout: Duration) -> Vec<(bool, Value)> {
    ranks
        .iter_mut()
        .map(|rank| {
            let line = rank.next_line(timeout).expect("rank printed no result");
            (rank.wait_exit(timeout).success(), line)
        })
        .collect()
}

/// The error message of a peer rank that failed (panics if it succeeded).
pub fn peer_error(result: &(bool, Value)) -> String {
    assert!(!result.0, "expected a failure, got {}", result.1);
    result.1["error"]
        .as_str()
        .expect("an error message")
        .to_owned()
}

fn forward_json_lines(stdout: ChildStdout) -> Receiver<Value> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line)
                && sender.send(value).is_err()
            {
                break;
            }
        }
    });
    receiver
}
