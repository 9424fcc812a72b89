//! One rank of a c10d test scenario, started by `tests/tests/c10d.rs` with the standard rank
//! environment. Prints one JSON line: `{"ok": …}` on success, `{"error": "…"}` (exit 1) on a
//! c10d failure.
//!
//! Scenarios: `allreduce`, `broadcast`, `mismatch`, `stall`, `join`, and the data-parallel
//! gradient ones `ddp`, `ddp_late`, `ddp_nonfinite` (through the training path's `GradSync`).
//!
//! Usage: `c10d_peer SCENARIO` with `PEER_TIMEOUT_MS` (collective timeout), `PEER_ROOT`
//! (broadcast root) and `PEER_VICTIM` (the rank that stalls) in the environment.

use std::io::Write;
use std::time::Duration;

use arl_c10d::{GroupOptions, ProcessGroup, RankEnv, ReduceOp};
use arl_worker::train::grad_sync::GradSync;
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let outcome = run(&scenario);
    let (line, code) = match outcome {
        Ok(value) => (json!({ "ok": value }), 0),
        Err(error) => (json!({ "error": format!("{error:#}") }), 1),
    };
    println!("{line}");
    std::process::exit(code);
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn join() -> anyhow::Result<ProcessGroup> {
    arl_c10d::init_logging()?;
    let env = RankEnv::from_env()?;
    let timeout = Duration::from_millis(env_number("PEER_TIMEOUT_MS", 30_000));
    let opts = GroupOptions {
        init_timeout: timeout,
        timeout,
        bucket_cap_bytes: env_number("PEER_BUCKET_BYTES", 25 << 20) as usize,
        gloo_hostname: "127.0.0.1".into(),
        ..GroupOptions::default()
    };
    Ok(ProcessGroup::init(&env, &opts)?)
}

/// The mixed list every rank reduces: rank-scaled `arange`s of several shapes and dtypes,
/// one of them a non-contiguous view. Values stay small integers, so sums are exact.
fn mixed_tensors(rank: usize) -> Vec<Tensor> {
    let scale = (rank + 1) as f64;
    let shaped = |n: i64, kind: Kind, shape: &[i64]| {
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * scale)
            .to_kind(kind)
            .view(shape)
    };
    vec![
        shaped(12, Kind::Float, &[3, 4]),
        shaped(5, Kind::Double, &[5]),
        shaped(12, Kind::BFloat16, &[2, 3, 2]),
        shaped(6, Kind::Float, &[2, 3]).tr(),
        shaped(1, Kind::Double, &[1]),
        shaped(40, Kind::Float, &[40]),
    ]
}

fn values(tensors: &[Tensor]) -> Value {
    tensors
        .iter()
        .map(|t| {
            let flat = Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap();
            json!({ "kind": format!("{:?}", t.kind()), "shape": t.size(), "values": flat })
        })
        .collect()
}

/// The parameters of the `ddp*` scenarios: two float matrices, a double vector (its own
/// bucket) and one that no loss uses, named in a fixed order.
fn ddp_params() -> Vec<(String, Tensor)> {
    let leaf = |values: &[f64], shape: &[i64], kind: Kind| {
        Tensor::from_slice(values)
            .to_kind(kind)
            .view(shape)
            .set_requires_grad(true)
    };
    vec![
        (
            "a.weight".into(),
            leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3], Kind::Float),
        ),
        ("b.weight".into(), leaf(&[1., -1., 2.], &[3], Kind::Float)),
        ("c.scale".into(), leaf(&[2., 3.], &[2], Kind::Double)),
        ("unused.bias".into(), leaf(&[0.; 4], &[4], Kind::Float)),
    ]
}

/// Micro-batch `k`'s loss on `rank`; small integers throughout, so every gradient and every
/// sum of them is exact. With `bad`, rank 1's input holds an infinity.
fn ddp_loss(params: &[(String, Tensor)], rank: usize, k: usize, bad: bool) -> Tensor {
    let shift = (rank * 3 + k) as f64;
    let mut input = Tensor::from_slice(&[1., 0., 2.]) + shift;
    if bad && rank == 1 {
        input = input.fill_(f64::INFINITY);
    }
    let hidden = params[0].1.mv(&(input.to_kind(Kind::Float) * &params[1].1));
    hidden.sum(Kind::Float).to_kind(Kind::Double) * params[2].1.sum(Kind::Double)
}

/// Gradients as JSON, `null` for a parameter without one.
fn grads(params: &[(String, Tensor)]) -> Value {
    params
        .iter()
        .map(|(name, p)| {
            let grad = p.grad();
            let values = grad
                .defined()
                .then(|| Vec::<f64>::try_from(grad.to_kind(Kind::Double).reshape([-1])).unwrap());
            json!({ "name": name, "grad": values })
        })
        .collect()
}

/// Two steps of two micro-batches each through [`GradSync`] (no parameter update, so both
/// steps see the same parameters): per step, the gradients after the first micro-batch (not
/// reduced) and after the step; next to them the plain local gradients of the first
/// micro-batch and of both. With `late`, the second step's loss also uses the parameter that
/// the first left out.
fn ddp_steps(group: &ProcessGroup, bad: bool, late: bool) -> anyhow::Result<Value> {
    let rank = group.rank();
    let local = |micro_batches: usize| {
        let params = ddp_params();
        for k in 0..micro_batches {
            ddp_loss(&params, rank, k, bad).backward();
        }
        grads(&params)
    };
    let params = ddp_params();
    let mut sync = GradSync::new(group, &params)?;
    let mut steps = Vec::new();
    for step in 1..=2 {
        sync.zero_grad()?;
        let mut unsynced = Value::Null;
        for k in 0..2 {
            sync.arm(k == 1)?;
            let mut loss = ddp_loss(&params, rank, k, bad);
            if late && step == 2 {
                loss += params[3].1.sum(Kind::Double);
            }
            loss.backward();
            if k == 0 {
                unsynced = grads(&params);
            }
        }
        let reduced = sync.finish(step)?;
        steps.push(json!({
            "finite": reduced.finite,
            "unsynced": unsynced,
            "grads": grads(&params),
        }));
    }
    Ok(json!({ "local_first": local(1), "local": local(2), "steps": steps }))
}

fn run(scenario: &str) -> anyhow::Result<Value> {
    match scenario {
        "allreduce" => {
            let group = join()?;
            let summed = mixed_tensors(group.rank());
            group.all_reduce(&summed, ReduceOp::Sum)?;
            let averaged = mixed_tensors(group.rank());
            group.all_reduce(&averaged, ReduceOp::Avg)?;
            group.shutdown()?;
            Ok(json!({
                "input": values(&mixed_tensors(0)),
                "sum": values(&summed),
                "avg": values(&averaged),
            }))
        }
        "broadcast" => {
            let group = join()?;
            let tensors = mixed_tensors(group.rank());
            group.broadcast(&tensors, env_number("PEER_ROOT", 0) as usize)?;
            group.shutdown()?;
            Ok(json!({ "input": values(&mixed_tensors(0)), "result": values(&tensors) }))
        }
        "mismatch" => {
            let group = join()?;
            let len = 4 + group.rank() as i64;
            group.all_reduce(
                &[Tensor::ones([len], (Kind::Float, Device::Cpu))],
                ReduceOp::Sum,
            )?;
            Ok(Value::Null)
        }
        "stall" => {
            // Every rank completes one collective, says so, then the victim goes quiet while
            // the others enter a second one.
            let group = join()?;
            let victim = env_number("PEER_VICTIM", 0) as usize;
            let tensor = [Tensor::ones([1024], (Kind::Float, Device::Cpu))];
            group.all_reduce(&tensor, ReduceOp::Sum)?;
            println!("{}", json!({ "ready": group.rank() }));
            std::io::stdout().flush()?;
            if group.rank() == victim {
                std::thread::sleep(Duration::from_secs(600));
            }
            group.all_reduce(&tensor, ReduceOp::Sum)?;
            Ok(Value::Null)
        }
        "ddp" | "ddp_late" | "ddp_nonfinite" => {
            let group = join()?;
            let out = ddp_steps(&group, scenario == "ddp_nonfinite", scenario == "ddp_late")?;
            group.shutdown()?;
            Ok(out)
        }
        "join" => {
            join()?;
            Ok(Value::Null)
        }
        other => anyhow::bail!("unknown scenario {other:?}"),
    }
}
