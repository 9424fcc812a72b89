//! How a job fails, and the exit codes of `arl` (documented in cluster/README.md):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | finished |
//! | 1 | another error (not of a training world) |
//! | 2 | bad command line |
//! | 3 | failed at start-up: a bad config, data or environment, or a failure before the first completed step; not retried, and retrying will not help until it is fixed |
//! | 4 | failed after the restart budget (`launch.max_restarts`) was spent; running the command again resumes from the newest committed checkpoint with a fresh budget |
//! | 128 + N | stopped by signal N, with a checkpoint: run the same command to resume |

/// A failure that decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Before the first completed step, or a config the check refused.
    #[error("{0}")]
    StartUp(String),
    /// After the restart budget was spent.
    #[error("{message} (restarts used: {restarts} of launch.max_restarts = {max})")]
    BudgetSpent {
        /// What ended the last world.
        message: String,
        /// Restarts made.
        restarts: u32,
        /// The budget.
        max: u32,
    },
}

/// Exit code of a failure at start-up.
pub const EXIT_START_UP: u8 = 3;
/// Exit code of a failure after the restart budget.
pub const EXIT_BUDGET_SPENT: u8 = 4;

impl Failure {
    /// A start-up failure from any error (its whole chain kept in the message).
    pub fn start_up(error: anyhow::Error) -> anyhow::Error {
        Self::StartUp(format!("{error:#}")).into()
    }
}

/// The exit code of `error`: 3 or 4 for a [`Failure`] anywhere in its chain, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.chain().find_map(|e| e.downcast_ref::<Failure>()) {
        Some(Failure::StartUp(_)) => EXIT_START_UP,
        Some(Failure::BudgetSpent { .. }) => EXIT_BUDGET_SPENT,
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_code_follows_the_failure_through_its_context() {
        let start: anyhow::Result<()> = Err(Failure::start_up(anyhow::anyhow!("no data")));
        let start = start.context("pretraining").unwrap_err();
        assert_eq!(exit_code(&start), EXIT_START_UP);
        assert_eq!(format!("{start:#}"), "pretraining: no data");
        let spent = anyhow::Error::from(Failure::BudgetSpent {
            message: "rank 1 failed".into(),
            restarts: 2,
            max: 2,
        })
        .context("fine-tune vqa");
        assert_eq!(exit_code(&spent), EXIT_BUDGET_SPENT);
        assert!(format!("{spent:#}").ends_with("(restarts used: 2 of launch.max_restarts = 2)"));
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), 1);
    }
}
