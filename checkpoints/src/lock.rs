//! One run at a time per checkpoint location: the file `LOCK` names its owner (host, process,
//! since when), is created only where none exists, renewed while the run lives and removed when
//! it ends. A second run is refused with the owner's name. A lock whose owner is gone is taken
//! over: on the same host, a process that no longer exists (a SIGKILLed launcher); elsewhere, a
//! lock not renewed for [`LEASE`].

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::target::Target;

/// The lock file.
pub const LOCK: &str = "LOCK";
/// A lock from another host that has not been renewed for this long is stale.
pub const LEASE: Duration = Duration::from_secs(120);
/// How often the owner renews its lock.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (tells a reused pid apart).
    pub start_ticks: u64,
    /// When it took the lock (Unix seconds).
    pub since_unix_s: u64,
    /// When it last renewed it (Unix seconds).
    pub renewed_unix_s: u64,
}

impl Owner {
    /// This process, now.
    pub fn this_process() -> Self {
        let now = unix_now();
        let pid = std::process::id();
        Self {
            host: host_name(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
            since_unix_s: now,
            renewed_unix_s: now,
        }
    }

    /// Whether the owner is certainly gone: on this host, its process no longer runs; on
    /// another, it has not renewed the lock for [`LEASE`].
    pub fn is_gone(&self) -> bool {
        if self.host == host_name() {
            start_ticks(self.pid) != Some(self.start_ticks)
        } else {
            unix_now().saturating_sub(self.renewed_unix_s) > LEASE.as_secs()
        }
    }

    fn describe(&self) -> String {
        format!(
            "host {} pid {} (since Unix time {}, renewed {} s ago)",
            self.host,
            self.pid,
            self.since_unix_s,
            unix_now().saturating_sub(self.renewed_unix_s)
        )
    }
}

/// A held lock; dropping it stops the renewal and removes the file.
#[derive(Debug)]
pub struct LocationLock {
    /// The owner of the stale lock this one replaced, described, if there was one.
    pub taken_over: Option<String>,
    stop: Option<Sender<()>>,
    renewal: Option<JoinHandle<()>>,
}

/// Takes the lock of the location `location` for this process.
///
/// # Errors
/// Another live run holds it (named by host and pid), or the location cannot be written.
pub fn acquire(location: &str, options: &[(&str, &str)]) -> anyhow::Result<LocationLock> {
    let target = Target::open(location, options)?;
    let mut owner = Owner::this_process();
    let body = |owner: &Owner| serde_json::to_vec(owner).expect("an owner serialises");
    let mut taken_over = None;
    while !target.create_new(LOCK, &body(&owner))? {
        let held = read_owner(&target)?;
        match held {
            Some(held) if !held.is_gone() => bail!(
                "{}: another run holds this checkpoint location: {}. Stop it first; if it is \
                 gone for good, delete {}",
                target.describe(LOCK),
                held.describe(),
                target.describe(LOCK)
            ),
            Some(_) if taken_over.is_some() => bail!(
                "{}: another run took the lock at the same time",
                target.describe(LOCK)
            ),
            stale => {
                let stale =
                    stale.map_or_else(|| "an unreadable owner".to_owned(), |o| o.describe());
                target.remove_file(LOCK)?;
                taken_over = Some(stale);
            }
        }
    }
    let (stop, stopped) = channel::<()>();
    let renewal = std::thread::Builder::new()
        .name("arl-lock-renewal".to_owned())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
                owner.renewed_unix_s = unix_now();
                if let Err(error) = target.write(LOCK, &[&body(&owner)]) {
                    tracing::warn!(error = %format!("{error:#}"), "renewing the lock");
                }
            }
            // Released: the file goes, unless another run has taken it over meanwhile.
            if read_owner(&target)
                .ok()
                .flatten()
                .is_some_and(|held| held.pid == owner.pid && held.host == owner.host)
            {
                let _ = target.remove_file(LOCK);
            }
        })
        .context("starting the lock renewal")?;
    Ok(LocationLock {
        taken_over,
        stop: Some(stop),
        renewal: Some(renewal),
    })
}

impl Drop for LocationLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewal) = self.renewal.take() {
            let _ = renewal.join();
        }
    }
}

/// The owner recorded in the lock (none: no lock, or one that does not parse).
fn read_owner(target: &Target) -> anyhow::Result<Option<Owner>> {
    Ok(target
        .read(LOCK)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of process `pid` in clock ticks since boot (none: no such live process).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (command) STATE ppid …": fields after the last ')'; the start time is field 22.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}
