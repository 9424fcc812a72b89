//! A dataset written to a real S3-compatible server (s3s-fs on 127.0.0.1) streams into two
//! worker processes: each step's samples split exactly between them, the same as one process
//! draws, a resume continues exactly, and a warm cache downloads nothing.

use std::path::Path;
use std::process::Command;

use arl_tests::{S3Server, release_binary, upload_dir, write_dataset};
use arl_worker::data::remote::Remote;
use serde_json::Value;

fn upload(server: &S3Server, local: &Path, url: &str) {
    let options = server.options();
    let options: Vec<(&str, &str)> = options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    upload_dir(&Remote::open_with(url, &options).unwrap(), local);
}

/// Runs `stream-check` for each rank of `world` at once; returns each rank's JSON lines.
fn ranks(
    server: &S3Server,
    url: &str,
    cache: &Path,
    world: usize,
    steps: usize,
    consumed: u64,
) -> Vec<Vec<Value>> {
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(release_binary("arl-worker"))
                .args(["stream-check", "--url", url, "--global-batch", "8"])
                .args(["--steps", &steps.to_string(), "--rank", &rank.to_string()])
                .args([
                    "--world",
                    &world.to_string(),
                    "--consumed",
                    &consumed.to_string(),
                ])
                .arg("--cache")
                .arg(cache.join(format!("rank{rank}")))
                .envs(server.env())
                .output()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|out| {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect()
}

/// The global sequence: per step, the ranks' samples in rank order.
fn global(lines: &[Vec<Value>], steps: usize) -> Vec<Value> {
    (0..steps)
        .flat_map(|step| {
            lines
                .iter()
                .flat_map(move |rank| rank[step]["samples"].as_array().unwrap().clone())
        })
        .collect()
}

#[test]
fn two_worker_processes_stream_an_s3_dataset_exactly_and_resume() {
    let server = S3Server::start(&["arl"]);
    let dir = std::env::temp_dir().join(format!("arl-s3-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let items = write_dataset(&dir.join("local"));
    let url = "s3://arl/datasets/demo";
    upload(&server, &dir.join("local"), url);

    let one = ranks(&server, url, &dir.join("one"), 1, 6, 0);
    let sequence = global(&one, 6);
    let distinct: std::collections::HashSet<String> =
        sequence.iter().map(Value::to_string).collect();
    assert_eq!(
        (sequence.len(), distinct.len()),
        (items, items),
        "one epoch, every item once"
    );

    let two = ranks(&server, url, &dir.join("two"), 2, 3, 0);
    assert_eq!(
        global(&two, 3),
        sequence[..24],
        "two processes split each step exactly"
    );
    for rank in &two {
        assert_eq!(rank[2]["state"]["consumed"], 24);
    }
    let resumed = ranks(&server, url, &dir.join("two"), 2, 3, 24);
    assert_eq!(
        global(&resumed, 3),
        sequence[24..],
        "the resume continues exactly"
    );
    // Shards downloaded ahead (or left by the first run) are served from the cache.
    let stats = &resumed[0][3];
    assert!(stats["hits"].as_u64().unwrap() > 0, "{stats}");
    let warm = ranks(&server, url, &dir.join("one"), 1, 6, 0);
    assert_eq!(global(&warm, 6), sequence);
    assert_eq!(warm[0][6]["downloads"], 0, "a warm cache downloads nothing");
    std::fs::remove_dir_all(dir).unwrap();
}
