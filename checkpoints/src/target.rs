//! Where checkpoints live: a local folder or an object-store prefix, behind one synchronous
//! interface. Local files are written under a temporary name, flushed to disk (`fsync`) and
//! renamed, and folders are flushed before a commit marker is written; an object appears whole
//! when its PUT (or multipart completion) returns, so durable means returned. Large objects go
//! up as multipart uploads with several parts in flight. Every error names the file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

/// Bytes written at a time, and the size of a multipart upload's part.
const CHUNK: usize = 16 << 20;
/// Multipart parts uploading at once.
const PARTS_IN_FLIGHT: usize = 4;

/// A file as written: its size and sha256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// sha256 of them, as hex.
    pub sha256: String,
}

enum Kind {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        runtime: Arc<Runtime>,
    },
}

/// A checkpoint location.
pub struct Target {
    kind: Kind,
    location: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.location)
    }
}

impl Target {
    /// Opens `location`: an object-store URL (`s3://bucket/prefix`, …; `options` override the
    /// environment's settings) or a local folder (a path or `file://` URL; created on the first
    /// write).
    ///
    /// # Errors
    /// A malformed URL, an unsupported scheme, or no async runtime.
    pub fn open(location: &str, options: &[(&str, &str)]) -> anyhow::Result<Self> {
        let location = location.trim_end_matches('/').to_owned();
        if !crate::url::is_remote(&location) {
            let path = match location.strip_prefix("file://") {
                Some(path) => PathBuf::from(path),
                None => PathBuf::from(&location),
            };
            return Ok(Self {
                kind: Kind::Local(path),
                location,
            });
        }
        let (store, prefix) = crate::url::open_store(&location, options)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("arl-checkpoint-io")
            .enable_all()
            .build()
            .context("starting the checkpoint I/O runtime")?;
        Ok(Self {
            kind: Kind::Store {
                store,
                prefix,
                runtime: Arc::new(runtime),
            },
            location,
        })
    }

    /// The location as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `location/relative`, for messages.
    pub fn describe(&self, relative: &str) -> String {
        format!("{}/{relative}", self.location)
    }

    fn local(root: &Path, relative: &str) -> PathBuf {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(root.to_owned(), |path, part| path.join(part))
    }

    fn object(prefix: &StorePath, relative: &str) -> StorePath {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(prefix.clone(), |path, part| path.join(part))
    }

    /// The names of the folders directly inside the location (none if it does not exist).
    ///
    /// # Errors
    /// The location cannot be listed.
    pub fn list_dirs(&self) -> anyhow::Result<Vec<String>> {
        let names = match &self.kind {
            Kind::Local(root) => match std::fs::read_dir(root) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                entries => entries
                    .and_then(|entries| {
                        entries
                            .filter_map(|entry| match entry {
                                Ok(e) if e.path().is_dir() => {
                                    e.file_name().into_string().ok().map(Ok)
                                }
                                Ok(_) => None,
                                Err(error) => Some(Err(error)),
                            })
                            .collect()
                    })
                    .with_context(|| format!("listing {}", self.location))?,
            },
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let listing = runtime
                    .block_on(store.list_with_delimiter(Some(prefix)))
                    .with_context(|| format!("listing {}", self.location))?;
                listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename().map(str::to_owned))
                    .collect()
            }
        };
        Ok(names)
    }

    /// A file's bytes, or `None` if it does not exist.
    ///
    /// # Errors
    /// The file exists but cannot be read (named).
    pub fn read(&self, relative: &str) -> anyhow::Result<Option<Bytes>> {
        let what = || format!("reading {}", self.describe(relative));
        match &self.kind {
            Kind::Local(root) => match std::fs::read(Self::local(root, relative)) {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(what),
            },
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::object(prefix, relative);
                let result = runtime.block_on(async { store.get(&path).await?.bytes().await });
                match result {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e).with_context(what),
                }
            }
        }
    }

    /// Writes a file from `parts` (concatenated), durably, replacing any file of that name;
    /// readers never see a partial file. The sha256 is computed on a second thread while the
    /// bytes are written.
    ///
    /// # Errors
    /// Any write fails (the file is named).
    pub fn write(&self, relative: &str, parts: &[&[u8]]) -> anyhow::Result<Written> {
        let what = || format!("writing {}", self.describe(relative));
        let (written, sha256) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| sha256_of(parts));
            let written = match &self.kind {
                Kind::Local(root) => write_local(&Self::local(root, relative), parts),
                Kind::Store {
                    store,
                    prefix,
                    runtime,
                } => runtime.block_on(write_object(store, &Self::object(prefix, relative), parts)),
            };
            (written, hasher.join().expect("hashing does not panic"))
        });
        Ok(Written {
            bytes: written.with_context(what)?,
            sha256,
        })
    }

    /// Creates `relative` holding `bytes` unless it exists, atomically: a reader sees no file
    /// or the whole one. Returns whether it was created.
    ///
    /// # Errors
    /// The write fails for another reason (named).
    pub fn create_new(&self, relative: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        let what = || format!("creating {}", self.describe(relative));
        match &self.kind {
            Kind::Local(root) => {
                let path = Self::local(root, relative);
                let parent = path
                    .parent()
                    .context("no parent folder")
                    .with_context(what)?;
                std::fs::create_dir_all(parent).with_context(what)?;
                let staged = parent.join(format!(".{relative}.{}.new", std::process::id()));
                std::fs::write(&staged, bytes).with_context(what)?;
                // A hard link never replaces an existing file.
                let linked = std::fs::hard_link(&staged, &path);
                let _ = std::fs::remove_file(&staged);
                match linked {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e).with_context(what),
                }
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::object(prefix, relative);
                let put = store.put_opts(
                    &path,
                    PutPayload::from(bytes.to_vec()),
                    object_store::PutMode::Create.into(),
                );
                match runtime.block_on(put) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(e).with_context(what),
                }
            }
        }
    }

    /// Makes the entries of folder `relative` ("" for the location itself) durable: `fsync` of
    /// the folder locally; nothing to do in an object store.
    ///
    /// # Errors
    /// The folder cannot be opened or flushed.
    pub fn sync_dir(&self, relative: &str) -> anyhow::Result<()> {
        if let Kind::Local(root) = &self.kind {
            let dir = Self::local(root, relative);
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("flushing folder {}", dir.display()))?;
        }
        Ok(())
    }

    /// Deletes one file (nothing if it does not exist), durably.
    ///
    /// # Errors
    /// The deletion fails (named).
    pub fn remove_file(&self, relative: &str) -> anyhow::Result<()> {
        let what = || format!("deleting {}", self.describe(relative));
        match &self.kind {
            Kind::Local(root) => {
                let path = Self::local(root, relative);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(what);
                    }
                    _ => {}
                }
                if let Some(parent) = path.parent() {
                    File::open(parent)
                        .and_then(|d| d.sync_all())
                        .with_context(what)?;
                }
                Ok(())
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => match runtime.block_on(store.delete(&Self::object(prefix, relative))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e).with_context(what),
            },
        }
    }

    /// Deletes a folder and everything in it.
    ///
    /// # Errors
    /// A deletion fails (named).
    pub fn remove_dir(&self, relative: &str) -> anyhow::Result<()> {
        let what = || format!("deleting {}", self.describe(relative));
        match &self.kind {
            Kind::Local(root) => match std::fs::remove_dir_all(Self::local(root, relative)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(what),
                _ => Ok(()),
            },
            Kind::Store {
                store,
                prefix,
                runtime,
            } => runtime
                .block_on(async {
                    let prefix = Self::object(prefix, relative);
                    let paths = store
                        .list(Some(&prefix))
                        .map_ok(|meta| meta.location)
                        .boxed();
                    store.delete_stream(paths).try_collect::<Vec<_>>().await
                })
                .map(drop)
                .with_context(what),
        }
    }
}

/// sha256 of the concatenation of `parts`, as hex.
fn sha256_of(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

/// Writes `parts` into `path`'s temporary sibling, flushes it to disk and renames it into
/// place; returns the bytes written. A failed write leaves no temporary file, and a full disk
/// says so.
fn write_local(path: &Path, parts: &[&[u8]]) -> anyhow::Result<u64> {
    let parent = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(parent).map_err(|e| no_space(e, parent))?;
    let name = path.file_name().context("no file name")?.to_string_lossy();
    let temporary = parent.join(format!(".{name}.partial"));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        let mut bytes = 0;
        for chunk in parts.iter().flat_map(|part| part.chunks(CHUNK)) {
            file.write_all(chunk)?;
            bytes += chunk.len() as u64;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        Ok(bytes)
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        no_space(error, parent)
    })
}

/// `error`, spelled out when it is a full disk under `folder`.
fn no_space(error: std::io::Error, folder: &Path) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::StorageFull {
        anyhow::Error::new(error).context(format!(
            "no space left on the device of {}: free space there, or point the checkpoints \
             elsewhere; the checkpoints already committed are intact",
            folder.display()
        ))
    } else {
        error.into()
    }
}

/// Uploads `parts` as one object: a single PUT when small, else a multipart upload (aborted if
/// a part fails); returns the bytes written.
async fn write_object(
    store: &Arc<dyn ObjectStore>,
    path: &StorePath,
    parts: &[&[u8]],
) -> anyhow::Result<u64> {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    if bytes <= CHUNK {
        store.put(path, PutPayload::from(parts.concat())).await?;
    } else {
        let mut upload =
            WriteMultipart::new_with_chunk_size(store.put_multipart(path).await?, CHUNK);
        for chunk in parts.iter().flat_map(|part| part.chunks(CHUNK)) {
            if let Err(error) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = upload.abort().await;
                return Err(error.into());
            }
            upload.write(chunk);
        }
        upload.finish().await?;
    }
    Ok(bytes as u64)
}
