//! "Hosts" on one machine for the multi-node tests: network namespaces joined by a bridge
//! (../shared/design/INFRA.md). Host `i` has the address `10.99.0.<i+1>` and, in every host's
//! `/etc/hosts`, the name `arl-host<i>`. Needs root (`ip netns`). Everything is removed on drop,
//! the processes inside first.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A set of hosts joined by one switch.
pub struct Hosts {
    namespaces: Vec<String>,
    links: Vec<String>,
    switch: String,
}

/// Runs `ip ARGS`, panicking with its message on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {} (the multi-host tests need root for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// `n` hosts on one switch.
    ///
    /// # Panics
    /// If namespaces cannot be made here.
    pub fn new(n: usize) -> Self {
        static SETS: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            SETS.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("arlsw{tag}");
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        let mut hosts = Self {
            namespaces: Vec::new(),
            links: Vec::new(),
            switch,
        };
        let names: String = (0..n)
            .map(|i| format!("10.99.0.{} arl-host{i}\n", i + 1))
            .collect();
        for i in 0..n {
            let namespace = format!("arlh{tag}x{i}");
            ip(&["netns", "add", &namespace]);
            hosts.namespaces.push(namespace.clone());
            let (link, port) = (format!("v{tag}x{i}"), format!("p{tag}x{i}"));
            ip(&["link", "add", &link, "type", "veth", "peer", "name", &port]);
            ip(&["link", "set", &link, "netns", &namespace]);
            ip(&["link", "set", &port, "netns", &hosts.switch]);
            ip(&["-n", &hosts.switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hosts.switch, "link", "set", &port, "up"]);
            let addr = format!("10.99.0.{}/24", i + 1);
            ip(&["-n", &namespace, "addr", "add", &addr, "dev", &link]);
            ip(&["-n", &namespace, "link", "set", "lo", "up"]);
            ip(&["-n", &namespace, "link", "set", &link, "up"]);
            hosts.links.push(link);
            // `ip netns exec` mounts /etc/netns/<namespace>/hosts over /etc/hosts.
            let etc = format!("/etc/netns/{namespace}");
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(
                format!("{etc}/hosts"),
                format!("127.0.0.1 localhost\n{names}"),
            )
            .unwrap();
        }
        hosts
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("10.99.0.{}", i + 1)
    }

    /// `program` to be run on host `i`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(program);
        command
    }

    /// Cuts host `i`'s link (`up = false`) or heals it.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.namespaces[i],
            "link",
            "set",
            &self.links[i],
            state,
        ]);
    }
}

/// Kills every process in `namespace`.
fn kill_all(namespace: &str) {
    if let Ok(out) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

impl Hosts {
    /// Kills every process on host `i`, as if it lost power.
    pub fn kill(&self, i: usize) {
        kill_all(&self.namespaces[i]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for namespace in self.namespaces.iter().chain([&self.switch]) {
            kill_all(namespace);
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{namespace}"));
        }
    }
}
