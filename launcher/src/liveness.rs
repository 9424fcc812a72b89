//! Which nodes of a job are alive: each node's launcher rewrites `node<K>.alive` in the job's
//! shared restart folder while its world runs, and reads the others'. A node whose file has not
//! changed for [`LOST_AFTER_S`] longer than this node's own is silent: its launcher is gone
//! (killed, or its host lost), and the launcher names it. Each beat also goes to the other
//! launchers over the network ([`NetBeats`]): a node that beats on the folder but is not heard
//! is unreachable (a cut link).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::net_beats::NetBeats;

/// Seconds of silence after which a node counts as lost.
pub const LOST_AFTER_S: f64 = 3.0;

/// This node's view of the job's nodes.
#[derive(Debug)]
pub struct Liveness {
    dir: PathBuf,
    node: usize,
    nnodes: usize,
    addr: String,
    net: Option<NetBeats>,
}

impl Liveness {
    /// Node `node` of `nnodes`, at address `addr`, keeping its file in `dir`.
    pub fn new(dir: &Path, node: usize, nnodes: usize, addr: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            node,
            nnodes,
            addr: addr.to_owned(),
            net: NetBeats::bind(addr, node),
        }
    }

    fn file(&self, node: usize) -> PathBuf {
        self.dir.join(format!("node{node}.alive"))
    }

    /// Marks this node alive now, with its address (a failed write is ignored: the next one
    /// may succeed).
    pub fn beat(&self) {
        let port = self.net.as_ref().and_then(NetBeats::port);
        let beat = serde_json::json!({ "pid": std::process::id(), "addr": self.addr, "udp": port });
        let _ = std::fs::write(self.file(self.node), beat.to_string());
        if let Some(net) = &self.net {
            let peers: Vec<(usize, SocketAddr)> = (0..self.nnodes)
                .filter(|&node| node != self.node)
                .filter_map(|node| Some((node, self.beat_addr(node)?)))
                .collect();
            net.exchange(&peers);
        }
    }

    /// Where node `node`'s launcher hears beats, from its last beat.
    fn beat_addr(&self, node: usize) -> Option<SocketAddr> {
        let beat = self.read(node)?;
        let ip = beat["addr"].as_str()?.parse().ok()?;
        let port = u16::try_from(beat["udp"].as_u64()?).ok()?;
        Some(SocketAddr::new(ip, port))
    }

    fn read(&self, node: usize) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.file(node)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The other nodes that beat on the folder but have not been heard over the network for
    /// [`LOST_AFTER_S`]: unreachable, with how long.
    pub fn unreachable(&self) -> Vec<(usize, f64)> {
        let Some(net) = &self.net else {
            return Vec::new();
        };
        let silent: Vec<usize> = self.silent().iter().map(|(node, _)| *node).collect();
        let beating: Vec<usize> = (0..self.nnodes)
            .filter(|&node| node != self.node && !silent.contains(&node))
            .collect();
        net.unheard(&beating, LOST_AFTER_S)
    }

    /// Beats, and returns the time of this beat as the file system recorded it.
    pub fn beat_now(&self) -> SystemTime {
        self.beat();
        self.modified(self.node).unwrap_or_else(SystemTime::now)
    }

    fn modified(&self, node: usize) -> Option<SystemTime> {
        std::fs::metadata(self.file(node))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The nodes (this one among them) that beat at or after `since`.
    pub fn beaten_since(&self, since: SystemTime) -> Vec<usize> {
        (0..self.nnodes)
            .filter(|&node| self.modified(node).is_some_and(|at| at >= since))
            .collect()
    }

    /// The address node `node` last beat with.
    pub fn addr(&self, node: usize) -> Option<String> {
        self.read(node)?["addr"].as_str().map(str::to_owned)
    }

    /// The other nodes silent for more than [`LOST_AFTER_S`] (by the file times, against this
    /// node's own last beat), with their silence in seconds. A node that never beat is not
    /// counted (it may not have started yet).
    pub fn silent(&self) -> Vec<(usize, f64)> {
        let modified = |node| self.modified(node);
        let Some(own) = modified(self.node) else {
            return Vec::new();
        };
        (0..self.nnodes)
            .filter(|&node| node != self.node)
            .filter_map(|node| {
                let silence = own
                    .duration_since(modified(node)?)
                    .unwrap_or_default()
                    .as_secs_f64();
                (silence > LOST_AFTER_S).then_some((node, silence))
            })
            .collect()
    }
}

/// "node 1 (silent for 4.2 s), node 3 (…)".
pub fn describe(silent: &[(usize, f64)]) -> String {
    silent
        .iter()
        .map(|(node, s)| format!("node {node} (silent for {s:.1} s)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What this node knows of the others: "lost node 1 (silent for 4.2 s): its launcher stopped",
/// "node 2 (silent for 3.5 s) unreachable over the network, its launcher still running"; empty
/// when all are well.
pub fn losses(liveness: &Liveness) -> String {
    let mut parts = Vec::new();
    let silent = liveness.silent();
    if !silent.is_empty() {
        parts.push(format!("lost {}: its launcher stopped", describe(&silent)));
    }
    let unreachable = liveness.unreachable();
    if !unreachable.is_empty() {
        parts.push(format!(
            "{} unreachable over the network, its launcher still running (a cut link?)",
            describe(&unreachable)
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_node_that_stops_beating_is_named_once_it_is_silent_long_enough() {
        let dir = std::env::temp_dir().join(format!("arl-liveness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (node0, node1) = (
            Liveness::new(&dir, 0, 3, "10.0.0.1"),
            Liveness::new(&dir, 1, 3, "10.0.0.2"),
        );
        assert!(node0.silent().is_empty(), "no beat of its own yet");
        node0.beat();
        node1.beat();
        assert!(node0.silent().is_empty(), "node 2 never beat: not counted");
        // Node 1 stops; node 0 beats on.
        let past = SystemTime::now() - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(dir.join("node1.alive"))
            .unwrap()
            .set_modified(past)
            .unwrap();
        node0.beat();
        let silent = node0.silent();
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].0, 1);
        assert!(
            describe(&silent).starts_with("node 1 (silent for 5."),
            "{silent:?}"
        );
        assert!(node1.silent().is_empty(), "node 0 is alive");
        assert_eq!(node0.addr(1).as_deref(), Some("10.0.0.2"));
        let since = node0.beat_now();
        assert_eq!(node0.beaten_since(since), [0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
