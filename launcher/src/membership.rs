//! Elastic membership (`--nnodes MIN:MAX`): which nodes make up the next world after a failure.
//! Every node alive after the failure joins it; a node that has not beaten since gets
//! `launch.rejoin_timeout_s` to return, and if it does not, the survivors go on as a smaller
//! world when there are at least `launch.min_nnodes` of them. A node that is not a member (one
//! that came back late, or a new one) waits, beating, and is admitted at the next restart.
//! The claimed round's record holds the members, so every node adopts the same world.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::console;
use crate::liveness::Liveness;
use crate::restarts::Rounds;
use crate::topology::Topology;

/// How often a waiting node beats and looks again.
const POLL: Duration = Duration::from_millis(250);

/// This node's part in an elastic job.
pub struct Membership {
    /// The job's nodes as launched (all of them).
    pub full: Topology,
    /// The fewest nodes a world may have.
    pub min_nnodes: usize,
    /// How long a lost node gets to return.
    pub rejoin_timeout: Duration,
    /// The nodes' liveness files.
    pub liveness: Liveness,
}

impl Membership {
    /// Every node of the job.
    pub fn all(&self) -> Vec<usize> {
        (0..self.full.nnodes).collect()
    }

    /// The members of the world after a failure: the nodes that beat after it, waiting up to
    /// the rejoin timeout for the others; all nodes if too few are left.
    pub fn after_failure(&self) -> Vec<usize> {
        if self.min_nnodes >= self.full.nnodes {
            return self.all();
        }
        let since = self.liveness.beat_now();
        let deadline = Instant::now() + self.rejoin_timeout;
        loop {
            self.liveness.beat();
            let alive = self.liveness.beaten_since(since);
            if alive.len() == self.full.nnodes {
                return alive;
            }
            if Instant::now() >= deadline {
                if alive.len() >= self.min_nnodes {
                    let lost: Vec<usize> = self
                        .all()
                        .into_iter()
                        .filter(|n| !alive.contains(n))
                        .collect();
                    console::line(&format!(
                        "arl: nodes {lost:?} did not return within launch.rejoin_timeout_s; \
                         the world goes on with nodes {alive:?}"
                    ));
                    return alive;
                }
                return self.all();
            }
            std::thread::sleep(POLL);
        }
    }

    /// The topology of a world of `members`, or none when this node is not one: this node's
    /// index among them, and the first member as the master (its address from its beat).
    ///
    /// # Errors
    /// The first member's address is unknown.
    pub fn topology(&self, members: &[usize]) -> anyhow::Result<Option<Topology>> {
        let Some(index) = members.iter().position(|&n| n == self.full.node_rank) else {
            return Ok(None);
        };
        let mut topology = self.full.clone();
        topology.nnodes = members.len();
        topology.node_rank = index;
        if members.first() != Some(&0) {
            let Some(addr) = self.liveness.addr(members[0]) else {
                bail!(
                    "the address of node {} (the new master) is unknown",
                    members[0]
                );
            };
            topology.master_addr = addr;
        }
        Ok(Some(topology))
    }

    /// Waits, beating, for a round after `round` whose members include this node; returns it
    /// and its members.
    ///
    /// # Errors
    /// The rounds cannot be read.
    pub fn wait_for_admission(
        &self,
        rounds: &Rounds,
        round: u32,
    ) -> anyhow::Result<(u32, Vec<usize>)> {
        console::line(&format!(
            "arl: node {} is not in round {round}'s world; it waits to be admitted at the next \
             restart",
            self.full.node_rank
        ));
        loop {
            self.liveness.beat();
            let latest = rounds.latest()?;
            if latest > round
                && let Some(members) = members_of(rounds, latest, self)
                && members.contains(&self.full.node_rank)
            {
                return Ok((latest, members));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The members of round `round` (every node when its record names none); none when it cannot
/// be read.
pub fn members_of(rounds: &Rounds, round: u32, membership: &Membership) -> Option<Vec<usize>> {
    let record = rounds.read(round).ok()?;
    Some(match record.members.is_empty() {
        true => membership.all(),
        false => record.members,
    })
}
