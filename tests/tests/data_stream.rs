//! Streaming a sharded dataset from object storage (`file://` and in-memory) through the local
//! cache into ranks: exact partition, world-size invariance, exact resume, corrupt copies
//! fetched again, a corrupt source named.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arl_tests::{scratch_dir, upload_dir, write_dataset};
use arl_worker::data::remote::{Backoff, Remote};
use arl_worker::data::sampler::{Sampler, SamplerConfig, SamplerState, epoch_order};
use arl_worker::data::shard::MANIFEST_FILE;
use arl_worker::data::stream::{RankStream, ShardSource};
use object_store::memory::InMemory;

fn cfg() -> SamplerConfig {
    SamplerConfig {
        seed: 5,
        shuffle: true,
        block_size: 8,
    }
}

fn stream(url: &str, cache: &Path, rank: usize, world: usize, state: SamplerState) -> RankStream {
    let source = ShardSource::open(url, cache, 1 << 20).unwrap();
    let items = source.manifest().items_per_shard();
    let sampler = Sampler::new(items, cfg(), 8, (rank, world), state).unwrap();
    RankStream::new(source, sampler, 2)
}

/// (image id, text) of every sample of `steps` steps, ranks' slices concatenated per step.
fn draw(streams: &mut [RankStream], steps: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..steps {
        for s in streams.iter_mut() {
            let step = s.next_batch().unwrap();
            assert!(step.bad.is_empty(), "{:?}", step.bad);
            for sample in step.samples {
                out.push((
                    sample.row.image_id.clone(),
                    sample.row.captions[sample.text].clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn two_ranks_split_every_step_exactly_and_resume_where_they_stopped() {
    let dir = scratch_dir("stream-file");
    let data = dir.join("dataset");
    let items = write_dataset(&data);
    let url = format!("file://{}", data.display());
    let single = draw(
        &mut [stream(&url, &dir.join("c0"), 0, 1, SamplerState::default())],
        6,
    );
    let mut ranks: Vec<RankStream> = (0..2)
        .map(|r| {
            stream(
                &url,
                &dir.join(format!("c{}", r + 1)),
                r,
                2,
                SamplerState::default(),
            )
        })
        .collect();
    let first = draw(&mut ranks, 3);
    assert_eq!(first, single[..24], "two ranks draw what one rank draws");
    // One epoch is 6 steps of 8: every item once (48 items).
    let distinct: HashSet<&(String, String)> = single.iter().collect();
    assert_eq!((single.len(), distinct.len(), items), (48, 48, 48));
    // Resume from the ranks' state, with a fresh cache and on another world size.
    let state = ranks[0].sampler().state();
    assert_eq!(
        state,
        SamplerState {
            epoch: 0,
            consumed: 24
        }
    );
    let mut resumed: Vec<RankStream> = (0..4)
        .map(|r| stream(&url, &dir.join(format!("r{r}")), r, 4, state))
        .collect();
    assert_eq!(draw(&mut resumed, 3), single[24..]);
    let stats = ranks[0].source().stats();
    let prefetched = stats.prefetched.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        prefetched > 0,
        "shards downloaded ahead are handed over decoded"
    );
    drop((ranks, resumed)); // stops their background downloads
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_copies_are_fetched_again_and_a_corrupt_source_is_named() {
    let dir = scratch_dir("stream-corrupt");
    let data = dir.join("dataset");
    write_dataset(&data);
    let url = format!("file://{}", data.display());
    let cache = dir.join("cache");
    let source = ShardSource::open(&url, &cache, 1 << 20).unwrap();
    let name = source.manifest().shards[0].name.clone();
    let rows = source.shard(0).unwrap()[0].num_rows();
    // Damage the cached copy: the next read notices and downloads again.
    let cached = cache.join(&name);
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&cached, &bytes).unwrap();
    assert_eq!(source.shard(0).unwrap()[0].num_rows(), rows);
    let corrupt = source
        .stats()
        .corrupt
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(corrupt, 1);
    // Damage the source itself: every download fails the hash, and the error names the object.
    let remote_file = data.join(&source.manifest().shards[1].name);
    let mut bytes = std::fs::read(&remote_file).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&remote_file, &bytes).unwrap();
    let error = format!("{:#}", source.shard(1).unwrap_err());
    assert!(
        error.contains("shard-00001.arrow: still corrupt after 3 downloads")
            && error.contains("sha256"),
        "{error}"
    );
    let missing = ShardSource::open(
        &format!("file://{}/nothing", dir.display()),
        &cache,
        1 << 20,
    )
    .err()
    .unwrap();
    assert!(
        format!("{missing:#}").contains("index.json: not found"),
        "{missing:#}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_in_memory_store_serves_the_same_samples() {
    let dir = scratch_dir("stream-memory");
    let data = dir.join("dataset");
    write_dataset(&data);
    let store = Arc::new(InMemory::new());
    let remote = Remote::with_store(store, "datasets/demo", "memory://datasets/demo").with_backoff(
        Backoff {
            first_wait: std::time::Duration::from_millis(1),
            max_wait: std::time::Duration::from_millis(1),
            budget: std::time::Duration::from_millis(10),
        },
    );
    upload_dir(&remote, &data);
    let source = ShardSource::with_remote(remote, None, &dir.join("cache"), 1 << 20).unwrap();
    let manifest = source.manifest().clone();
    assert!(data.join(MANIFEST_FILE).exists());
    let sampler = Sampler::new(
        manifest.items_per_shard(),
        cfg(),
        8,
        (0, 1),
        SamplerState::default(),
    )
    .unwrap();
    let memory = RankStream::new(source, sampler, 1);
    let url = format!("file://{}", data.display());
    let expected = draw(
        &mut [stream(&url, &dir.join("c"), 0, 1, SamplerState::default())],
        2,
    );
    assert_eq!(draw(&mut [memory], 2), expected);
    let order = epoch_order(&manifest.items_per_shard(), &cfg(), 0);
    assert_eq!(order.len(), 48);
    std::fs::remove_dir_all(dir).unwrap();
}
