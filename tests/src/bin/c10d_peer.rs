//! One rank of a c10d test scenario, started by `tests/tests/c10d.rs` with the standard rank
//! environment. Prints one JSON line: `{"ok": …}` on success, `{"error": "…"}` (exit 1) on a
//! c10d failure.
//!
//! Usage: `c10d_peer SCENARIO` with `PEER_TIMEOUT_MS` (collective timeout), `PEER_ROOT`
//! (broadcast root) and `PEER_VICTIM` (the rank that stalls) in the environment.

use std::io::Write;
use std::time::Duration;

use arl_c10d::{GroupOptions, ProcessGroup, RankEnv, ReduceOp};
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
        "join" => {
            join()?;
            Ok(Value::Null)
        }
        other => anyhow::bail!("unknown scenario {other:?}"),
    }
}
