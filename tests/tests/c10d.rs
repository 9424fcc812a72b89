//! c10d through the shim, with real processes on 127.0.0.1: exact collectives on 2 and 3
//! ranks, and a clear error (never an abort or a hang) for each failure mode.

use std::time::{Duration, Instant};

use arl_tests::{Rank, free_port, peer_error, peer_results, peer_world};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_c10d_peer");

fn world(n: usize, scenario: &str, env: &[(&str, String)]) -> Vec<Rank> {
    peer_world(PEER, n, scenario, env)
}

/// Checks every tensor of `actual` against `input` scaled by `factor`, exactly, with dtype
/// and shape kept.
fn assert_scaled(actual: &Value, input: &Value, factor: f64) {
    let (actual, input) = (actual.as_array().unwrap(), input.as_array().unwrap());
    assert_eq!(actual.len(), input.len());
    for (a, i) in actual.iter().zip(input) {
        assert_eq!(a["kind"], i["kind"]);
        assert_eq!(a["shape"], i["shape"]);
        let expected: Vec<f64> = i["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() * factor)
            .collect();
        let got: Vec<f64> = a["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, expected, "kind {}", a["kind"]);
    }
}

fn allreduce_is_exact(n: usize, bucket_bytes: usize) {
    let mut ranks = world(
        n,
        "allreduce",
        &[("PEER_BUCKET_BYTES", bucket_bytes.to_string())],
    );
    let rank_scale_sum = (n * (n + 1) / 2) as f64;
    for (ok, line) in peer_results(&mut ranks, Duration::from_secs(60)) {
        assert!(ok, "{line}");
        let out = &line["ok"];
        assert_scaled(&out["sum"], &out["input"], rank_scale_sum);
        assert_scaled(&out["avg"], &out["input"], rank_scale_sum / n as f64);
    }
}

#[test]
fn two_ranks_all_reduce_mixed_shapes_and_dtypes_exactly() {
    allreduce_is_exact(2, 25 << 20);
}

#[test]
fn three_ranks_all_reduce_exactly_through_many_small_buckets() {
    allreduce_is_exact(3, 64);
}

#[test]
fn broadcast_from_a_non_zero_root_reaches_every_rank() {
    let mut ranks = world(3, "broadcast", &[("PEER_ROOT", "1".into())]);
    for (ok, line) in peer_results(&mut ranks, Duration::from_secs(60)) {
        assert!(ok, "{line}");
        assert_scaled(&line["ok"]["result"], &line["ok"]["input"], 2.0);
    }
}

#[test]
fn no_master_at_the_address_is_a_timed_out_error() {
    let port = free_port();
    let env = [("PEER_TIMEOUT_MS", "1500".to_owned())];
    let mut lone = [Rank::spawn(PEER, &["join"], 1, 2, port, &env)];
    let result = peer_results(&mut lone, Duration::from_secs(30)).remove(0);
    let error = peer_error(&result);
    assert!(
        error.contains(&format!("connect to 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("timed out"), "{error}");
}

#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut master = [Rank::spawn(PEER, &["join"], 0, 1, port, &[])];
    let result = peer_results(&mut master, Duration::from_secs(30)).remove(0);
    let error = peer_error(&result);
    assert!(
        error.contains(&format!("serve at 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(
        error.contains("EADDRINUSE") || error.contains("already in use"),
        "{error}"
    );
}

#[test]
fn mismatched_shapes_fail_on_every_rank() {
    let mut ranks = world(2, "mismatch", &[("PEER_TIMEOUT_MS", "10000".into())]);
    for result in peer_results(&mut ranks, Duration::from_secs(30)) {
        let error = peer_error(&result);
        assert!(error.contains("allreduce"), "{error}");
    }
}

/// Starts `n` ranks of the stall scenario and waits until all finished the first collective.
fn stalled_world(n: usize, victim: usize, timeout_ms: u64) -> Vec<Rank> {
    let env = [
        ("PEER_VICTIM", victim.to_string()),
        ("PEER_TIMEOUT_MS", timeout_ms.to_string()),
    ];
    let ranks = world(n, "stall", &env);
    for rank in &ranks {
        let ready = rank
            .next_line(Duration::from_secs(60))
            .expect("rank never got ready");
        assert!(ready.get("ready").is_some(), "{ready}");
    }
    ranks
}

#[test]
fn survivors_of_a_killed_peer_fail_within_five_seconds() {
    let victim = 2;
    let mut ranks = stalled_world(3, victim, 60_000);
    std::thread::sleep(Duration::from_millis(300));
    ranks[victim].child.kill().unwrap();
    let killed_at = Instant::now();
    for rank in ranks.iter_mut().take(victim) {
        let line = rank
            .next_line(Duration::from_secs(5))
            .expect("no error within 5 s");
        let error = peer_error(&(rank.wait_exit(Duration::from_secs(5)).success(), line));
        assert!(error.contains("allreduce"), "{error}");
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed_at.elapsed()
    );
}

#[test]
fn a_silent_peer_fails_the_others_at_the_configured_timeout() {
    let mut ranks = stalled_world(2, 1, 2_000);
    let started = Instant::now();
    let line = ranks[0]
        .next_line(Duration::from_secs(20))
        .expect("no error after the timeout");
    let elapsed = started.elapsed();
    let error = peer_error(&(ranks[0].wait_exit(Duration::from_secs(5)).success(), line));
    assert!(error.to_lowercase().contains("timed out"), "{error}");
    assert!(
        elapsed >= Duration::from_millis(1_500),
        "failed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "failed too late: {elapsed:?}"
    );
}

/// libtorch's own C++ log lines (here: the store client's connect timeout, which c10d
/// logs at ERROR on every attempt) follow `TORCH_CPP_LOG_LEVEL`. The retry warning between
/// attempts is not used: whether c10d retries within a 1 s timeout depends on scheduling.
#[test]
fn torch_cpp_log_level_is_honoured() {
    let stderr_at = |level: &str| {
        let out = std::process::Command::new(PEER)
            .arg("join")
            .envs([
                ("RANK", "1"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("PEER_TIMEOUT_MS", "1000"),
                ("TORCH_CPP_LOG_LEVEL", level),
            ])
            .env("MASTER_PORT", free_port().to_string())
            .output()
            .expect("running the peer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stdout.contains("timed out"),
            "the peer did not fail on the connect timeout at {level}: {stdout}"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let logged_at = |stderr: &str, severity: char| {
        stderr
            .lines()
            .any(|line| line.starts_with(&format!("[{severity}")) && line.contains("[c10d]"))
    };
    let errors = stderr_at("ERROR");
    assert!(
        logged_at(&errors, 'E'),
        "no c10d error line at ERROR level:\n{errors}"
    );
    assert!(
        !logged_at(&errors, 'W') && !logged_at(&errors, 'I'),
        "warnings leaked at ERROR level:\n{errors}"
    );
    let fatal_only = stderr_at("FATAL");
    assert!(
        !logged_at(&fatal_only, 'E'),
        "errors leaked at FATAL level:\n{fatal_only}"
    );
}
