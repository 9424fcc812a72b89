//! Storage that fails under a run, on real file systems and a real S3 server: a full cache disk
//! (a tiny tmpfs) costs only the cache; a full checkpoint disk says "no space", naming the
//! path, and loses no committed checkpoint and leaves no partial files; a stalled store is
//! waited for within its budget, then reported as a resumable error naming the object; a
//! pretraining on S3 outlives a stalled store with no sample lost; one run per checkpoint
//! location, a SIGKILLed run's lock taken over.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arl_checkpoints::{AsyncSaver, Checkpoints, Dtype, SaverConfig, Staging, Status, TensorSpec};
use arl_tests::checkpoint_child::stage_step;
use arl_tests::tmpfs::Tmpfs;
use arl_tests::{
    S3Server, final_model, pretrain_config, pretrain_inputs, release_binary, sample_lines,
    scratch_dir, upload_dir, wait_for_step, write_dataset_with,
};
use arl_worker::data::remote::{Backoff, Remote, StorageUnavailable};
use arl_worker::data::sampler::{Sampler, SamplerConfig, SamplerState};
use arl_worker::data::shard::ShardWriter;
use arl_worker::data::stream::{RankStream, ShardSource};
use arl_worker::data::table;

#[test]
fn a_full_cache_disk_costs_only_the_cache() {
    let dir = scratch_dir("cache-full");
    let data = dir.join("dataset");
    // 24 rows of 1.5 KB images, two per shard: 12 shards of about 3.5 KB.
    let items = write_dataset_with(&data, 3000, |i| vec![i; 1500]);
    let disk = Tmpfs::mount(&dir.join("cache"), 8);
    let url = format!("file://{}", data.display());
    let source = ShardSource::open(&url, disk.path(), 1 << 30).unwrap();
    let shards = source.manifest().shards.len();
    assert!(shards >= 10, "{shards} shards");
    let sampler = Sampler::new(
        source.manifest().items_per_shard(),
        SamplerConfig::default(),
        items,
        (0, 1),
        SamplerState::default(),
    )
    .unwrap();
    let mut stream = RankStream::new(source, sampler, 1);
    let step = stream.next_batch().unwrap();
    assert!(step.bad.is_empty(), "{:?}", step.bad);
    assert_eq!(step.samples.len(), items, "every sample read, cache or not");
    let cached = disk.files();
    assert!(
        !cached.is_empty() && cached.len() < shards,
        "the disk took some shards, not all: {cached:?}"
    );
    assert!(
        cached.iter().all(|f| !f.contains("partial")),
        "no half-written file is left: {cached:?}"
    );
}

/// Stages one tensor of `bytes` bytes.
fn staging_of(bytes: usize) -> Staging {
    let mut staging = Staging::default();
    let spec = TensorSpec {
        group: "model".into(),
        name: "weights".into(),
        dtype: Dtype::F32,
        shape: vec![bytes / 4],
    };
    staging.stage(spec).unwrap().fill(7);
    staging
}

#[test]
fn a_full_checkpoint_disk_says_no_space_and_keeps_the_committed_checkpoint() {
    let dir = scratch_dir("checkpoint-disk-full");
    let disk = Tmpfs::mount(&dir.join("disk"), 48 << 10);
    let location = disk.path().join("checkpoints");
    let checkpoints = Checkpoints::open(&location.to_string_lossy()).unwrap();
    let mut small = Staging::default();
    stage_step(&mut small, 1).unwrap();
    checkpoints
        .save(&small, &arl_checkpoints::TrainingState::new(1, 1))
        .unwrap();

    let error = checkpoints
        .save(
            &staging_of(64 << 20),
            &arl_checkpoints::TrainingState::new(2, 1),
        )
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("no space left")
            && message.contains(&location.to_string_lossy().into_owned()),
        "{message}"
    );
    assert!(
        checkpoints.load(1).is_ok(),
        "the committed checkpoint still loads"
    );
    let statuses: Vec<(u64, bool)> = checkpoints
        .list()
        .unwrap()
        .into_iter()
        .map(|l| (l.step, matches!(l.status, Status::Committed(_))))
        .collect();
    assert_eq!(
        statuses,
        [(1, true), (2, false)],
        "step 2 is never committed"
    );
    assert!(
        disk.files().iter().all(|f| !f.contains(".partial")),
        "the failed file is removed: {:?}",
        disk.files()
    );

    // The next start removes the partial folder of the failed save.
    let saver = AsyncSaver::new(
        Checkpoints::open(&location.to_string_lossy()).unwrap(),
        SaverConfig::default(),
    )
    .unwrap();
    drop(saver);
    let steps: Vec<u64> = checkpoints.list().unwrap().iter().map(|l| l.step).collect();
    assert_eq!(steps, [1]);
}

#[test]
fn a_stalled_store_is_waited_for_then_reported_as_resumable() {
    let dir = scratch_dir("store-stalled");
    let data = dir.join("dataset");
    write_dataset_with(&data, 3000, |i| vec![i; 1500]);
    let server = S3Server::start(&["data"]);
    let owned = server.options();
    let mut options: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    options.push(("timeout", "1s"));
    let remote = Remote::open_with("s3://data/set", &options)
        .unwrap()
        .with_backoff(Backoff {
            first_wait: Duration::from_millis(100),
            max_wait: Duration::from_millis(500),
            budget: Duration::from_secs(3),
        });
    upload_dir(&remote, &data);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = "shard-00001.arrow";

    // Stalled for longer than a request's timeout, then back within the budget: the read
    // waits and succeeds.
    server.pause();
    let resume = std::thread::spawn({
        let resume_after = Duration::from_millis(1800);
        move || std::thread::sleep(resume_after)
    });
    let reading = std::thread::scope(|scope| {
        let read = scope.spawn(|| runtime.block_on(remote.get(name)));
        resume.join().unwrap();
        server.resume();
        read.join().unwrap()
    });
    let expected = std::fs::read(data.join(name)).unwrap();
    assert_eq!(reading.unwrap().as_ref(), expected.as_slice());

    // Stalled past the budget: a resumable error naming the object, not a bad sample.
    server.pause();
    let started = Instant::now();
    let error = runtime.block_on(remote.get(name)).unwrap_err();
    server.resume();
    let waited = started.elapsed();
    assert!(StorageUnavailable::caused(&error), "{error:#}");
    let message = format!("{error:#}");
    assert!(
        message.contains("s3://data/set/shard-00001.arrow")
            && message.contains("data.storage_wait_s")
            && message.contains("resume"),
        "{message}"
    );
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(15),
        "waited {waited:?}"
    );
}

/// `arl pretrain` of the run in `run` with `sets`, in the environment `env`.
fn start_pretrain(run: &Path, sets: &[String], env: &[(&str, String)]) -> Child {
    let config = pretrain_config(run);
    Command::new(release_binary("arl"))
        .arg("pretrain")
        .arg(&config)
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TORCH_CPP_LOG_LEVEL", "ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`: its success and standard error.
fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

/// Every rank log of the job in `dir`, concatenated.
fn rank_logs(dir: &Path) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    logs
}

/// The synthetic pretraining pairs re-sharded into shards of about 40 KB, so that every step
/// reads shards from the store.
fn small_shards(dir: &Path) -> PathBuf {
    let source = pretrain_inputs().join("synth/pretrain/train");
    let source = ShardSource::open(&source.to_string_lossy(), &dir.join("cache"), 1 << 30).unwrap();
    let out = dir.join("small-shards");
    let mut writer = ShardWriter::new(&out, 40 << 10).unwrap();
    for shard in 0..source.manifest().shards.len() as u32 {
        for batch in source.shard(shard).unwrap() {
            for r in 0..batch.num_rows() {
                writer.push(table::row(&batch, r).unwrap()).unwrap();
            }
        }
    }
    let manifest = source.manifest();
    let written = writer
        .finish_with(manifest.entities.clone(), manifest.label_names.clone())
        .unwrap();
    assert!(
        written.shards.len() >= 10,
        "{} shards",
        written.shards.len()
    );
    out
}

#[test]
fn pretraining_waits_out_a_stalled_store_and_loses_no_sample() {
    let dir = scratch_dir("store-outage");
    let server = S3Server::start(&["data"]);
    let owned = server.options();
    let options: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    upload_dir(
        &Remote::open_with("s3://data/pretrain", &options).unwrap(),
        &small_shards(&dir),
    );
    let mut env = server.env();
    env.push(("AWS_TIMEOUT", "1s".to_owned()));
    let sets: Vec<String> = [
        "data.train=\"s3://data/pretrain\"",
        "data.cache_mb=1",
        "data.storage_wait_s=40",
        "train.steps=12",
        "train.log_samples=true",
        "launch.hang_margin_s=3",
    ]
    .map(str::to_owned)
    .to_vec();

    let straight = dir.join("straight");
    let (ok, stderr) = finish(start_pretrain(&straight, &sets, &env));
    assert!(ok, "{stderr}");

    // The store stalls for 8 s from step 3: longer than a request's timeout (1 s) and than the
    // watchdog's steady limit (about 2 × step time + 3 s).
    let stalled = dir.join("stalled");
    let child = start_pretrain(&stalled, &sets, &env);
    wait_for_step(&stalled, 3);
    server.pause();
    std::thread::sleep(Duration::from_secs(8));
    server.resume();
    let (ok, stderr) = finish(child);
    assert!(ok, "{stderr}");
    let logs = rank_logs(&stalled);
    assert!(
        logs.contains("waiting for storage") && logs.contains("s3://data/pretrain/shard-"),
        "{logs}"
    );
    assert!(logs.contains("storage is back"), "{logs}");
    assert!(
        !stalled.join("restarts").join("round-1.json").exists(),
        "no restart: the watchdog knew the rank was waiting for storage\n{stderr}"
    );
    // (rank log, step, samples) of every line, sorted.
    type Lines = Vec<(String, u64, Vec<(u64, u64)>)>;
    let samples = |run: &Path| -> Lines {
        let mut lines: Lines = sample_lines(&[run.to_owned()])
            .into_iter()
            .map(|l| (l.file, l.step, l.ids))
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        samples(&stalled),
        samples(&straight),
        "no sample lost or repeated"
    );
    assert_eq!(samples(&straight).len(), 24, "12 steps on each of 2 ranks");
    assert_eq!(
        final_model(&stalled.join("checkpoints")),
        final_model(&straight.join("checkpoints")),
        "bit-identical to the run without the outage"
    );
}

#[test]
fn a_second_run_on_the_same_checkpoints_is_refused_and_a_killed_runs_lock_is_taken_over() {
    let dir = scratch_dir("location-lock");
    let run = dir.join("run");
    let sets = ["train.steps=400".to_owned()];
    let first = start_pretrain(&run, &sets, &[]);
    let first_pid = first.id();
    wait_for_step(&run, 1);
    let second = Command::new(release_binary("arl"))
        .arg("pretrain")
        .arg(pretrain_config(&run))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("another run holds this checkpoint location")
            && stderr.contains(&format!("pid {first_pid}"))
            && stderr.contains("LOCK"),
        "{stderr}"
    );
    // SIGKILL the first launcher (its workers die with it): its lock is left behind.
    let _ = Command::new("kill")
        .args(["-KILL", &first_pid.to_string()])
        .status();
    let (ok, _) = finish(first);
    assert!(!ok);
    assert!(run.join("checkpoints/LOCK").exists());
    let third = start_pretrain(&run, &["train.steps=2".to_owned()], &[]);
    let (ok, stderr) = finish(third);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("took over the lock") && stderr.contains(&format!("pid {first_pid}")),
        "{stderr}"
    );
    assert!(
        !run.join("checkpoints/LOCK").exists(),
        "released at the end"
    );
}
