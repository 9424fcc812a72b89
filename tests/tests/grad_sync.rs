//! Data-parallel gradients with DDP's semantics (the training path's `GradSync` over the
//! shim's autograd hooks), across real processes: after a step every gradient is the exact
//! rank-mean of the local ones, a micro-batch before the last is not reduced (`no_sync`), a
//! parameter no backward reached is left out, one that gets a gradient later is an error that
//! names it, and only the rank whose gradients were not finite says so.

use std::time::Duration;

use arl_tests::{peer_error, peer_results, peer_world};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_c10d_peer");

/// `(name, gradient)` pairs; `None` for a parameter without a gradient.
type Grads = Vec<(String, Option<Vec<f64>>)>;

/// The gradients of a peer's JSON list.
fn grads(value: &Value) -> Grads {
    value
        .as_array()
        .expect("a list of gradients")
        .iter()
        .map(|g| {
            let values = g["grad"].as_array().map(|v| {
                v.iter()
                    .map(|x| x.as_f64().expect("a number"))
                    .collect::<Vec<_>>()
            });
            (g["name"].as_str().expect("a name").to_owned(), values)
        })
        .collect()
}

/// The rank-mean of every rank's local gradients, rounded as the parameter's dtype rounds
/// (`c.scale` is double, the others float).
fn rank_mean(locals: &[Grads]) -> Grads {
    let n = locals.len() as f64;
    locals[0]
        .iter()
        .enumerate()
        .map(|(p, (name, first))| {
            let mean = first.as_ref().map(|first| {
                (0..first.len())
                    .map(|i| {
                        let sum: f64 = locals.iter().map(|l| l[p].1.as_ref().unwrap()[i]).sum();
                        if name == "c.scale" {
                            sum / n
                        } else {
                            f64::from(sum as f32 / n as f32)
                        }
                    })
                    .collect()
            });
            (name.clone(), mean)
        })
        .collect()
}

fn gradients_are_the_exact_rank_mean(n: usize) {
    let mut ranks = peer_world(PEER, n, "ddp", &[]);
    let outputs: Vec<Value> = peer_results(&mut ranks, Duration::from_secs(60))
        .into_iter()
        .map(|(ok, line)| {
            assert!(ok, "{line}");
            line["ok"].clone()
        })
        .collect();
    let locals: Vec<_> = outputs.iter().map(|o| grads(&o["local"])).collect();
    // `unused.bias` has no local gradient, and none after a step: it is left out.
    let expected = rank_mean(&locals);
    assert_eq!(expected[3], ("unused.bias".to_owned(), None));
    for (rank, out) in outputs.iter().enumerate() {
        for (step, result) in out["steps"].as_array().unwrap().iter().enumerate() {
            assert_eq!(result["finite"], true, "rank {rank}, step {}", step + 1);
            assert_eq!(
                grads(&result["grads"]),
                expected,
                "rank {rank}, step {}",
                step + 1
            );
            // The first micro-batch's gradients stay local until the step's last backward.
            let mut first = grads(&out["local_first"]);
            if step == 0 {
                // Still bucketed in the first step: a zero gradient, not none.
                first[3].1 = Some(vec![0.0; 4]);
            }
            assert_eq!(
                grads(&result["unsynced"]),
                first,
                "rank {rank}, step {}",
                step + 1
            );
        }
    }
}

#[test]
fn two_ranks_average_gradients_exactly_and_skip_the_sync_before_the_last_micro_batch() {
    gradients_are_the_exact_rank_mean(2);
}

#[test]
fn three_ranks_average_gradients_as_their_dtype_rounds() {
    gradients_are_the_exact_rank_mean(3);
}

#[test]
fn a_parameter_left_out_in_the_first_step_that_gets_a_gradient_later_is_named() {
    let mut ranks = peer_world(PEER, 2, "ddp_late", &[]);
    for result in peer_results(&mut ranks, Duration::from_secs(60)) {
        let error = peer_error(&result);
        assert!(
            error.contains("parameter unused.bias received a gradient at step 2"),
            "{error}"
        );
        assert!(
            error.contains("none in the first step on any rank"),
            "{error}"
        );
    }
}

#[test]
fn only_the_rank_with_non_finite_gradients_reports_them() {
    let mut ranks = peer_world(PEER, 2, "ddp_nonfinite", &[]);
    let results = peer_results(&mut ranks, Duration::from_secs(60));
    for (rank, (ok, line)) in results.iter().enumerate() {
        assert!(ok, "{line}");
        for step in line["ok"]["steps"].as_array().unwrap() {
            assert_eq!(step["finite"], rank == 0, "rank {rank}: {line}");
        }
    }
}
