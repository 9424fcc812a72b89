//! The rank side of `arl bench data`'s streaming figure: writes a dataset of incompressible
//! images into shards, uploads it to an object-store URL, then per round times three reads of
//! every shard in order: plain GETs of the objects, three in flight (the store's own speed, the
//! peer), a cold [`ShardSource`] (download, hash check, Arrow decode, cache write, with the same
//! three in flight: the shard being read and two prefetched, as a rank reads), and the same
//! source again from its warm cache (read, hash check, decode).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bench::median;
use crate::data::remote::Remote;
use crate::data::shard::{Manifest, ShardWriter};
use crate::data::stream::ShardSource;
use crate::data::table::ImageTextRow;

/// Shards prefetched ahead of the one being read.
const PREFETCH: u32 = 2;

/// The dataset to stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamBenchSize {
    /// Total image bytes, MiB.
    pub total_mb: usize,
    /// Bytes of one image, KiB.
    pub image_kb: usize,
    /// Image bytes per shard, MiB.
    pub shard_mb: usize,
}

/// Median MB/s of each read (MB = 10^6 bytes of shard files).
#[derive(Debug, serde::Serialize)]
pub struct StreamTiming {
    /// Plain GETs, as many in flight as the source keeps.
    pub raw_mb_s: f64,
    /// Cold cache.
    pub cold_mb_s: f64,
    /// Warm cache.
    pub warm_mb_s: f64,
    /// Bytes of all shards.
    pub bytes: u64,
    /// Shards.
    pub shards: usize,
}

/// Writes the dataset into `local` (random image bytes from a fixed seed).
fn write_dataset(local: &Path, size: StreamBenchSize) -> anyhow::Result<Manifest> {
    let mut writer = ShardWriter::new(local, size.shard_mb << 20)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in 0..(size.total_mb << 10) / size.image_kb.max(1) {
        let mut image = vec![0u8; size.image_kb << 10];
        rng.fill_bytes(&mut image);
        writer.push(ImageTextRow {
            image,
            captions: vec![format!("synthetic report {i}")],
            image_id: format!("{i}.png"),
            split: "train".into(),
            ..ImageTextRow::default()
        })?;
    }
    writer.finish()
}

/// Uploads every file of `local` to `remote`.
fn upload(remote: &Remote, local: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(local)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?;
        let bytes = Bytes::from(std::fs::read(&path)?);
        runtime.block_on(remote.put(name, bytes))?;
    }
    Ok(())
}

/// Reads every shard through `source`, two prefetched ahead; returns seconds.
fn read_all(source: &ShardSource, shards: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for shard in 0..shards {
        let ahead: Vec<u32> = (shard + 1..=shard + PREFETCH).collect();
        source.prefetch(&ahead);
        source.shard(shard)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Writes and uploads the dataset to `url`, then times `rounds` rounds of the three reads, with
/// fresh caches under `work`.
///
/// # Errors
/// The store cannot be written or read, or a shard does not verify.
pub fn time_stream(
    url: &str,
    work: &Path,
    size: StreamBenchSize,
    rounds: usize,
) -> anyhow::Result<StreamTiming> {
    let local = work.join("dataset");
    let manifest = write_dataset(&local, size)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let remote = Remote::open(url)?;
    upload(&remote, &local, &runtime)?;
    std::fs::remove_dir_all(&local)?;
    let bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
    let shards = manifest.shards.len() as u32;
    let mb = bytes as f64 / 1e6;
    let (mut raw, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let start = Instant::now();
        let gets = futures::stream::iter(&manifest.shards)
            .map(|shard| remote.get(&shard.name))
            .buffered(PREFETCH as usize + 1);
        runtime.block_on(gets.try_for_each(|_| async { Ok(()) }))?;
        raw.push(mb / start.elapsed().as_secs_f64());
        let cache = work.join(format!("cache-{round}"));
        let source = ShardSource::open(url, &cache, bytes * 2)?;
        cold.push(mb / read_all(&source, shards)?);
        warm.push(mb / read_all(&source, shards)?);
        drop(source);
        std::fs::remove_dir_all(&cache)?;
    }
    Ok(StreamTiming {
        raw_mb_s: median(&mut raw),
        cold_mb_s: median(&mut cold),
        warm_mb_s: median(&mut warm),
        bytes,
        shards: manifest.shards.len(),
    })
}
