//! How a benchmark compares us with the Python reference in the same run: sides alternate in
//! ABBA order, and the ratio pairs the two sides' times round by round.

use std::path::Path;

use crate::paths;
use crate::spawn::WorldSpec;
use crate::topology::Topology;

/// The two sides of a distributed benchmark, each `nproc` ranks on this machine over loopback
/// Gloo: `arl-worker WORKER_ARGS… --gloo-hostname 127.0.0.1 ARGS…` and the Python peer
/// `python -c PEER ARGS…` (`python`: see [`paths::python`]).
///
/// # Errors
/// No worker binary or no Python found.
pub fn rank_worlds(
    nproc: usize,
    worker_args: &[&str],
    peer: &str,
    python: Option<&Path>,
    args: &[String],
) -> anyhow::Result<(WorldSpec, WorldSpec)> {
    let world = |program, lead: Vec<&str>, env: Vec<(&str, &str)>| WorldSpec {
        program,
        args: lead
            .into_iter()
            .map(str::to_owned)
            .chain(args.iter().cloned())
            .collect(),
        topology: Topology::single_node(nproc),
        kill_grace: std::time::Duration::ZERO,
        env: env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        on_rank0_line: None,
        log_dir: None,
    };
    let quiet = ("TORCH_CPP_LOG_LEVEL", "ERROR");
    let mut lead = worker_args.to_vec();
    lead.extend(["--gloo-hostname", "127.0.0.1"]);
    let ours = world(crate::spawn::worker_binary()?, lead, vec![quiet]);
    let theirs = world(
        paths::python(python)?,
        vec!["-c", peer],
        vec![
            quiet,
            ("GLOO_SOCKET_IFNAME", "lo"),
            ("PYTHONWARNINGS", "ignore"),
        ],
    );
    Ok((ours, theirs))
}

/// Runs `rounds` rounds of both sides; in every other round the reference goes first, so
/// neither side always inherits the machine state the other leaves behind.
///
/// # Errors
/// The first side that fails.
pub fn alternate(
    name: &str,
    rounds: usize,
    mut ours: impl FnMut() -> anyhow::Result<()>,
    mut theirs: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let rounds = rounds.max(1);
    for round in 0..rounds {
        eprintln!("bench {name}: round {}/{rounds}", round + 1);
        if round.is_multiple_of(2) {
            ours()?;
            theirs()?;
        } else {
            theirs()?;
            ours()?;
        }
    }
    Ok(())
}

/// The median (the mean of the middle pair for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Median over rounds of (their time / our time) in the same round: > 1 means we are faster.
/// Pairing rounds cancels slow drifts of the machine's load.
pub fn paired_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    let paired: Vec<f64> = ours.iter().zip(theirs).map(|(a, t)| t / a).collect();
    median(&paired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_pairs_rounds_so_a_slow_round_hits_both_sides() {
        // Round 2 was slow for everyone; ours is 10 % faster within every round.
        assert!((paired_ratio(&[0.9, 1.8, 0.9], &[1.0, 2.0, 1.0]) - 1.0 / 0.9).abs() < 1e-12);
    }

    #[test]
    fn median_of_even_count_averages_the_middle_pair() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn rounds_alternate_abba() {
        let order = std::cell::RefCell::new(String::new());
        alternate(
            "t",
            4,
            || {
                order.borrow_mut().push('a');
                Ok(())
            },
            || {
                order.borrow_mut().push('t');
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(order.into_inner(), "attaatta");
    }
}
