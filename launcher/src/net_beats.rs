//! Launcher-to-launcher beats over the network: each node's launcher sends a small UDP datagram
//! to every other node's launcher each time it beats ([`crate::liveness`]), and notes whom it
//! hears. A node whose launcher still beats on the shared folder but has not been heard over
//! the network for a while is unreachable: a cut link or a partition, named as such.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::Instant;

/// This launcher's beat socket and whom it has heard.
#[derive(Debug)]
pub struct NetBeats {
    socket: UdpSocket,
    node: usize,
    heard: Mutex<BTreeMap<usize, Instant>>,
}

impl NetBeats {
    /// A socket on an ephemeral port of `addr` for node `node`; none if it cannot be bound
    /// (then unreachable nodes are not named).
    pub fn bind(addr: &str, node: usize) -> Option<Self> {
        let socket = UdpSocket::bind((addr, 0)).ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Self {
            socket,
            node,
            heard: Mutex::new(BTreeMap::new()),
        })
    }

    /// The port the others send to.
    pub fn port(&self) -> Option<u16> {
        self.socket.local_addr().ok().map(|a| a.port())
    }

    /// Takes in what arrived, then beats to `peers` (node, address).
    pub fn exchange(&self, peers: &[(usize, SocketAddr)]) {
        let mut buffer = [0u8; 64];
        let now = Instant::now();
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(n) = self.socket.recv(&mut buffer) {
            let node = std::str::from_utf8(&buffer[..n])
                .ok()
                .and_then(|text| text.strip_prefix("arl-beat "))
                .and_then(|node| node.parse().ok());
            if let Some(node) = node {
                heard.insert(node, now);
            }
        }
        let beat = format!("arl-beat {}", self.node);
        for (_, peer) in peers {
            let _ = self.socket.send_to(beat.as_bytes(), peer);
        }
    }

    /// Of `nodes`, those heard before but not for more than `after_s` seconds, with how long.
    pub fn unheard(&self, nodes: &[usize], after_s: f64) -> Vec<(usize, f64)> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .iter()
            .filter_map(|node| {
                let quiet = heard.get(node)?.elapsed().as_secs_f64();
                (quiet > after_s).then_some((*node, quiet))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_launchers_hear_each_other_and_notice_when_one_falls_quiet() {
        let a = NetBeats::bind("127.0.0.1", 0).unwrap();
        let b = NetBeats::bind("127.0.0.1", 1).unwrap();
        let to = |beats: &NetBeats, node| {
            vec![(
                node,
                SocketAddr::from(([127, 0, 0, 1], beats.port().unwrap())),
            )]
        };
        a.exchange(&to(&b, 1));
        b.exchange(&to(&a, 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        a.exchange(&to(&b, 1));
        assert!(a.unheard(&[1], 10.0).is_empty(), "heard");
        std::thread::sleep(std::time::Duration::from_millis(300));
        a.exchange(&to(&b, 1));
        let quiet = a.unheard(&[1], 0.2);
        assert_eq!(quiet.len(), 1, "b stopped beating");
        assert_eq!(quiet[0].0, 1);
        assert!(a.unheard(&[2], 0.0).is_empty(), "never heard: not named");
    }
}
