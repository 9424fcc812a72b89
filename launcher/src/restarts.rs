//! The restart budget of a job, kept in its folder where every node of the job sees it.
//!
//! Each world after the first is a round, claimed by the first node to see the failure that
//! ends the previous one: it creates `restarts/round-<N>.json` exclusively in the job's shared
//! state ([`arl_contract::Locations::restarts`]), holding
//! who failed and why. A node that finds the round already claimed joins it without counting
//! again, and a node whose world is still running when a newer round appears stops its ranks
//! and joins. Restarts are counted from the newest round present when this launch began, so the
//! budget is per launch of the job (rerunning the command grants a fresh one) and the same on
//! every node.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Why a round was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The round (restarts of the job's launches so far, over every launch).
    pub round: u32,
    /// The node that claimed it.
    pub node: usize,
    /// The global rank blamed for the failure.
    pub rank: usize,
    /// What happened to it.
    pub reason: String,
    /// When the failure was decided, in seconds since the Unix epoch.
    pub decided_at: f64,
    /// The nodes of the round's world (empty: all of the job's).
    #[serde(default)]
    pub members: Vec<usize>,
}

/// The rounds of one job.
#[derive(Debug, Clone)]
pub struct Rounds {
    dir: PathBuf,
    base: u32,
}

impl Rounds {
    /// The rounds kept in the folder `dir`; this launch counts restarts from the newest.
    ///
    /// # Errors
    /// The folder cannot be created or read.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.to_owned();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut rounds = Self { dir, base: 0 };
        rounds.base = rounds.latest()?;
        Ok(rounds)
    }

    /// The round this launch started in.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// The newest round claimed so far (0: none).
    ///
    /// # Errors
    /// The folder cannot be read.
    pub fn latest(&self) -> anyhow::Result<u32> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                name.strip_prefix("round-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0))
    }

    /// Claims `record.round`; false if another node already has. The record appears whole
    /// (written aside, then linked into place, which fails if the round exists).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn claim(&self, record: &RoundRecord) -> anyhow::Result<bool> {
        let path = self.path(record.round);
        let staged = self.dir.join(format!(
            ".round-{}.{}.{}",
            record.round,
            record.node,
            std::process::id()
        ));
        std::fs::write(&staged, serde_json::to_vec_pretty(record)?)
            .with_context(|| format!("writing {}", staged.display()))?;
        let linked = std::fs::hard_link(&staged, &path);
        let _ = std::fs::remove_file(&staged);
        match linked {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// The record of round `round`.
    ///
    /// # Errors
    /// It is missing or unreadable (named).
    pub fn read(&self, round: u32) -> anyhow::Result<RoundRecord> {
        let path = self.path(round);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    fn path(&self, round: u32) -> PathBuf {
        self.dir.join(format!("round-{round}.json"))
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(round: u32, node: usize) -> RoundRecord {
        RoundRecord {
            round,
            node,
            rank: 1,
            reason: "signal 9".into(),
            decided_at: unix_now(),
            members: vec![],
        }
    }

    #[test]
    fn one_node_claims_a_round_the_others_join_it_and_a_new_launch_counts_afresh() {
        let dir = std::env::temp_dir().join(format!("arl-rounds-{}/restarts", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node0 = Rounds::open(&dir).unwrap();
        let node1 = Rounds::open(&dir).unwrap();
        assert_eq!((node0.base(), node0.latest().unwrap()), (0, 0));
        assert!(node0.claim(&record(1, 0)).unwrap());
        assert!(!node1.claim(&record(1, 1)).unwrap(), "already claimed");
        assert_eq!(node1.read(1).unwrap().node, 0);
        assert!(node1.claim(&record(2, 1)).unwrap());
        assert_eq!(node0.latest().unwrap(), 2);
        let relaunch = Rounds::open(&dir).unwrap();
        assert_eq!(relaunch.base(), 2);
        std::fs::write(dir.join("round-3.json"), "{").unwrap();
        assert!(format!("{:#}", relaunch.read(3).unwrap_err()).contains("round-3.json"));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
