//! Streaming a sharded dataset into one rank: the manifest from the dataset URL, shards through
//! the local cache (downloaded in the background ahead of use, verified by size and sha256, and
//! downloaded again when a copy is corrupt), and the rank's samples step by step in the
//! sampler's order.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, ensure};
use arrow_array::RecordBatch;
use tokio::task::JoinHandle;

use super::cache::ShardCache;
use super::remote::{Backoff, Remote, StorageUnavailable};
use super::sampler::{SampleRef, Sampler};
use super::shard::{MANIFEST_FILE, Manifest, ShardEntry, verify_and_decode};
use super::table::{self, ImageTextRow};

/// Downloads of one shard before a hash mismatch is final.
const DOWNLOADS: u32 = 3;

/// Counters of a source.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Shards served from the cache.
    pub hits: AtomicU64,
    /// Shards served straight from their background download.
    pub prefetched: AtomicU64,
    /// Shards downloaded.
    pub downloads: AtomicU64,
    /// Bytes downloaded.
    pub downloaded_bytes: AtomicU64,
    /// Copies found corrupt (in the cache or as downloaded) and fetched again.
    pub corrupt: AtomicU64,
}

struct Shared {
    remote: Remote,
    cache: ShardCache,
    stats: StreamStats,
    /// Set once the cache could not take a shard.
    uncached: AtomicBool,
}

/// A dataset's shards, through the cache.
pub struct ShardSource {
    shared: Arc<Shared>,
    manifest: Manifest,
    runtime: tokio::runtime::Runtime,
    /// Background downloads, each ending with the verified, decoded shard.
    inflight: Mutex<HashMap<u32, JoinHandle<anyhow::Result<Vec<RecordBatch>>>>>,
}

impl Shared {
    /// Caches a verified shard; a cache that cannot take it (a full disk) costs nothing but
    /// the cache: the shard is served from memory, the run reads shards uncached from then on,
    /// and says so once.
    fn keep(&self, name: &str, bytes: &[u8]) {
        if self.uncached.load(Ordering::Relaxed) {
            return;
        }
        if let Err(error) = self.cache.insert(name, bytes)
            && !self.uncached.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                cache = %self.cache.dir().display(),
                "the shard cache cannot take {name} ({error:#}): reading shards uncached from now on"
            );
        }
    }

    /// Downloads a shard until its bytes match the manifest, caches it, and returns it decoded.
    async fn download(&self, entry: &ShardEntry) -> anyhow::Result<Vec<RecordBatch>> {
        let mut last = None;
        for _ in 0..DOWNLOADS {
            let bytes = self.remote.get(&entry.name).await?;
            self.stats.downloads.fetch_add(1, Ordering::Relaxed);
            self.stats
                .downloaded_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            match verify_and_decode(entry, &bytes) {
                Ok(batches) => {
                    self.keep(&entry.name, &bytes);
                    return Ok(batches);
                }
                Err(error) => {
                    self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %entry.name, %error, "corrupt download; fetching again");
                    last = Some(error);
                }
            }
        }
        let error = last.unwrap_or_else(|| anyhow::anyhow!("no download"));
        Err(error.context(format!(
            "{}: still corrupt after {DOWNLOADS} downloads",
            self.remote.describe(&entry.name)
        )))
    }
}

impl ShardSource {
    /// Opens the dataset at `url` (a folder with `index.json`, or one ARL `.arrow` file) with a
    /// cache of at most `cache_bytes` in `cache_dir`.
    ///
    /// # Errors
    /// The URL, the manifest or the cache folder cannot be used (named).
    pub fn open(url: &str, cache_dir: &Path, cache_bytes: u64) -> anyhow::Result<Self> {
        Self::open_waiting(url, cache_dir, cache_bytes, Backoff::default())
    }

    /// As [`ShardSource::open`], waiting out a failing store as `backoff` says.
    ///
    /// # Errors
    /// As [`ShardSource::open`].
    pub fn open_waiting(
        url: &str,
        cache_dir: &Path,
        cache_bytes: u64,
        backoff: Backoff,
    ) -> anyhow::Result<Self> {
        let (folder, file) = match url.rsplit_once('/') {
            Some((folder, file)) if file.ends_with(".arrow") => (folder, Some(file)),
            _ => (url, None),
        };
        let remote = Remote::open(folder)?.with_backoff(backoff);
        Self::with_remote(remote, file, cache_dir, cache_bytes)
    }

    /// As [`ShardSource::open`] on an already opened folder; `file` names a single `.arrow` file.
    ///
    /// # Errors
    /// As [`ShardSource::open`].
    pub fn with_remote(
        remote: Remote,
        file: Option<&str>,
        cache_dir: &Path,
        cache_bytes: u64,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let manifest = match file {
            Some(name) => {
                let bytes = runtime.block_on(remote.get(name))?;
                Manifest::for_arrow_file(name, &bytes)?
            }
            None => {
                let text = runtime.block_on(remote.get(MANIFEST_FILE))?;
                let manifest = Manifest::parse(&text, &remote.describe(MANIFEST_FILE))?;
                let sizes = runtime.block_on(remote.sizes())?;
                manifest.check_sizes(&sizes, &remote.describe(MANIFEST_FILE))?;
                manifest
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                remote,
                cache: ShardCache::new(cache_dir, cache_bytes)?,
                stats: StreamStats::default(),
                uncached: AtomicBool::new(false),
            }),
            manifest,
            runtime,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The counters.
    pub fn stats(&self) -> &StreamStats {
        &self.shared.stats
    }

    fn entry(&self, shard: u32) -> anyhow::Result<&ShardEntry> {
        self.manifest
            .shards
            .get(shard as usize)
            .with_context(|| format!("no shard {shard} in the manifest"))
    }

    /// Starts background downloads of the shards that are neither cached nor on their way.
    pub fn prefetch(&self, shards: &[u32]) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        for &shard in shards {
            let Ok(entry) = self.entry(shard) else {
                continue;
            };
            if inflight.contains_key(&shard) || self.shared.cache.contains(&entry.name) {
                continue;
            }
            let (shared, entry) = (Arc::clone(&self.shared), entry.clone());
            let task = self
                .runtime
                .spawn(async move { shared.download(&entry).await });
            inflight.insert(shard, task);
        }
    }

    /// The record batches of a shard: from its background download, else from the cache when a
    /// valid copy is there, else downloaded now.
    ///
    /// # Errors
    /// The shard cannot be read, or stays corrupt (named).
    pub fn shard(&self, shard: u32) -> anyhow::Result<Vec<RecordBatch>> {
        let entry = self.entry(shard)?.clone();
        let pending = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&shard);
        if let Some(task) = pending
            && let Ok(Ok(batches)) = self.runtime.block_on(task)
        {
            self.shared.stats.prefetched.fetch_add(1, Ordering::Relaxed);
            return Ok(batches);
        }
        // A failed prefetch is retried below.
        if let Some(bytes) = self.shared.cache.get(&entry.name)? {
            match verify_and_decode(&entry, &bytes) {
                Ok(batches) => {
                    self.shared.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(batches);
                }
                Err(error) => {
                    self.shared.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %entry.name, %error, "corrupt cached copy; fetching again");
                    self.shared.cache.remove(&entry.name);
                }
            }
        }
        self.runtime.block_on(self.shared.download(&entry))
    }
}

impl ShardSource {
    /// Shard `shard`, decoded and indexed by item.
    ///
    /// # Errors
    /// As [`ShardSource::shard`], or counts that differ from the manifest's.
    pub(crate) fn open_shard(&self, shard: u32) -> anyhow::Result<OpenShard> {
        let batches = self.shard(shard)?;
        OpenShard::new(batches, self.entry(shard)?, &self.manifest.text_column)
    }
}

/// A decoded shard with its item → (batch, row, text) index.
pub(crate) struct OpenShard {
    name: String,
    batches: Vec<RecordBatch>,
    /// Index in the shard of each batch's first row.
    first_rows: Vec<u32>,
    /// Per item: (batch, row in batch, text index).
    items: Vec<(u32, u32, u32)>,
}

impl OpenShard {
    /// Indexes the items of `batches`, which must hold as many rows and items as the manifest's
    /// `entry` says (the sampler drew its order from those counts).
    pub(crate) fn new(
        batches: Vec<RecordBatch>,
        entry: &ShardEntry,
        text_column: &str,
    ) -> anyhow::Result<Self> {
        let mut items = Vec::with_capacity(entry.items as usize);
        let mut first_rows = Vec::with_capacity(batches.len());
        let mut rows = 0u64;
        for (b, batch) in batches.iter().enumerate() {
            first_rows.push(rows as u32);
            for (row, texts) in table::text_counts(batch, text_column)?
                .into_iter()
                .enumerate()
            {
                items.extend((0..texts).map(|t| (b as u32, row as u32, t)));
            }
            rows += batch.num_rows() as u64;
        }
        ensure!(
            rows == entry.rows && items.len() == entry.items as usize,
            "shard {}: {rows} rows and {} items, the manifest says {} and {}",
            entry.name,
            items.len(),
            entry.rows,
            entry.items
        );
        Ok(Self {
            name: entry.name.clone(),
            batches,
            first_rows,
            items,
        })
    }

    /// The sample of item `at.item`.
    ///
    /// # Errors
    /// No such item, or a row that cannot be read (named by shard and row).
    pub(crate) fn sample(&self, at: SampleRef) -> anyhow::Result<Sample> {
        let name = &self.name;
        let &(b, row, text) = self
            .items
            .get(at.item as usize)
            .with_context(|| format!("shard {name}: no item {}", at.item))?;
        let row_in_shard = self.first_rows[b as usize] + row;
        let row = table::row(&self.batches[b as usize], row as usize)
            .with_context(|| format!("shard {name}, row {row_in_shard}"))?;
        Ok(Sample {
            at,
            row,
            text: text as usize,
            row_in_shard,
        })
    }
}

/// One sample: an image row and which of its texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where it came from.
    pub at: SampleRef,
    /// The image row.
    pub row: ImageTextRow,
    /// Index of the text in `row.captions`.
    pub text: usize,
    /// Index of the row in its shard.
    pub row_in_shard: u32,
}

impl Sample {
    /// Where the sample is, for messages: `shard NAME, row R, text T (image "ID")`.
    pub fn origin(&self, shard: &str) -> String {
        format!(
            "shard {shard}, row {}, text {} (image {:?})",
            self.row_in_shard, self.text, self.row.image_id
        )
    }
}

/// A sample that could not be read, and why (the message names the shard and row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSample {
    /// Where it was.
    pub at: SampleRef,
    /// What went wrong.
    pub reason: String,
}

/// One step of a rank: the samples read, and those skipped.
#[derive(Debug, Default)]
pub struct Step {
    /// Samples in order.
    pub samples: Vec<Sample>,
    /// Samples that could not be read.
    pub bad: Vec<BadSample>,
}

/// The samples of one rank, step by step.
pub struct RankStream {
    source: ShardSource,
    sampler: Sampler,
    open: HashMap<u32, OpenShard>,
    /// Steps of look-ahead for prefetching.
    lookahead: usize,
}

impl RankStream {
    /// A stream over `source` in `sampler`'s order.
    pub fn new(source: ShardSource, sampler: Sampler, lookahead: usize) -> Self {
        Self {
            source,
            sampler,
            open: HashMap::new(),
            lookahead,
        }
    }

    /// The sampler (its state is what a checkpoint keeps).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The source (its counters).
    pub fn source(&self) -> &ShardSource {
        &self.source
    }

    /// This rank's samples of the next step. A sample whose shard is corrupt or whose row
    /// cannot be read is reported in [`Step::bad`], not returned.
    ///
    /// # Errors
    /// The store stayed unreachable past its wait budget ([`StorageUnavailable`]): the step's
    /// samples are not skipped, the run stops and can resume.
    pub fn next_batch(&mut self) -> anyhow::Result<Step> {
        let refs = self.sampler.next_batch();
        let upcoming = self.sampler.upcoming_shards(self.lookahead);
        self.source.prefetch(&upcoming);
        let mut step = Step::default();
        for at in refs {
            match self.read(at) {
                Ok(sample) => step.samples.push(sample),
                Err(error) if StorageUnavailable::caused(&error) => return Err(error),
                Err(error) => step.bad.push(BadSample {
                    at,
                    reason: format!("{error:#}"),
                }),
            }
        }
        // Keep only the shards still ahead.
        self.open.retain(|shard, _| upcoming.contains(shard));
        Ok(step)
    }

    fn read(&mut self, at: SampleRef) -> anyhow::Result<Sample> {
        if !self.open.contains_key(&at.shard) {
            let shard = self.source.open_shard(at.shard)?;
            self.open.insert(at.shard, shard);
        }
        self.open[&at.shard].sample(at)
    }
}
