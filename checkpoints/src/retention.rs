//! Which committed checkpoints to keep: the newest `keep_last` and every step that is a
//! multiple of `keep_every`. The newest committed checkpoint is always kept.

use serde::{Deserialize, Serialize};

/// A retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Newest checkpoints kept (at least 1 is always kept).
    pub keep_last: usize,
    /// Also keep every checkpoint whose step is a multiple of this (0: none).
    pub keep_every: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: 3,
            keep_every: 0,
        }
    }
}

impl Retention {
    /// The steps of `committed` (any order) to delete.
    pub fn doomed(&self, committed: &[u64]) -> Vec<u64> {
        let mut steps = committed.to_vec();
        steps.sort_unstable();
        steps.dedup();
        let keep_from = steps.len().saturating_sub(self.keep_last.max(1));
        steps[..keep_from]
            .iter()
            .copied()
            .filter(|step| self.keep_every == 0 || step % self.keep_every != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_and_every_kth() {
        let policy = Retention {
            keep_last: 2,
            keep_every: 1000,
        };
        let steps = [500, 1000, 1500, 2000, 2500, 3000];
        assert_eq!(policy.doomed(&steps), [500, 1500]);
        let plain = Retention {
            keep_last: 3,
            keep_every: 0,
        };
        assert_eq!(plain.doomed(&[30, 10, 20, 40]), [10]);
    }

    #[test]
    fn never_deletes_the_newest() {
        let none = Retention {
            keep_last: 0,
            keep_every: 0,
        };
        assert_eq!(none.doomed(&[1, 2, 3]), [1, 2]);
        assert!(none.doomed(&[7]).is_empty());
        assert!(none.doomed(&[]).is_empty());
    }
}
