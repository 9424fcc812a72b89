//! A dataset's home in object storage, by URL: `s3://bucket/prefix`, `gs://…`, `az://…`,
//! `file:///abs/path`, or `memory://` (in-process, for tests). Credentials and endpoints come
//! from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …). Reads wait out a failing store
//! with exponential backoff, within a budget.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// How a read waits out a failing store: retries after `first_wait`, doubled each time up to
/// `max_wait`, until `budget` has passed since the first failure.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait before the first retry.
    pub first_wait: Duration,
    /// The longest wait between two attempts.
    pub max_wait: Duration,
    /// How long a read may wait for the store in all (`data.storage_wait_s`).
    pub budget: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(5),
            budget: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The default backoff with a budget of `seconds`.
    pub fn within(seconds: f64) -> Self {
        Self {
            budget: Duration::from_secs_f64(seconds),
            ..Self::default()
        }
    }
}

/// The store stayed unreachable for a read's whole wait budget. Not a bad sample: the data is
/// there, the run stops and resumes from its last checkpoint once the store is back.
#[derive(Debug, thiserror::Error)]
#[error(
    "waited {waited_s:.0} s for storage, reading {object} (the budget, data.storage_wait_s, \
     is {budget_s:.0} s); the store is unreachable: {last}. The run can resume from its last \
     checkpoint once the store is back"
)]
pub struct StorageUnavailable {
    /// The object.
    pub object: String,
    /// Seconds waited.
    pub waited_s: f64,
    /// The budget, in seconds.
    pub budget_s: f64,
    /// The last error.
    pub last: String,
}

impl StorageUnavailable {
    /// Whether `error` is, or was caused by, an unreachable store.
    pub fn caused(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<Self>())
    }
}

/// An object-store folder.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    url: String,
    backoff: Backoff,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    /// Opens the folder at `url` (or a local path), configured from the environment.
    ///
    /// # Errors
    /// A malformed URL or an unsupported scheme (named).
    pub fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, &[])
    }

    /// As [`Remote::open`], with builder options (such as `aws_endpoint`) that override the
    /// environment's.
    ///
    /// # Errors
    /// As [`Remote::open`].
    pub fn open_with(url: &str, options: &[(&str, &str)]) -> anyhow::Result<Self> {
        let local;
        let url = if url.contains("://") {
            url
        } else {
            let path = std::path::absolute(url).with_context(|| format!("dataset folder {url}"))?;
            local = format!("file://{}", path.display());
            &local
        };
        // The client does not retry by itself: `get` waits out failures within its budget and
        // says so while it waits.
        let no_retries = object_store::RetryConfig {
            max_retries: 0,
            ..object_store::RetryConfig::default()
        };
        let (store, prefix) = arl_checkpoints::url::open_store_retrying(url, options, no_retries)
            .context("a dataset location")?;
        Ok(Self {
            store,
            prefix,
            url: url.trim_end_matches('/').to_owned(),
            backoff: Backoff::default(),
        })
    }

    /// A folder in an existing store (for example an `InMemory` one shared by a test).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Self {
            store,
            prefix: StorePath::from(prefix),
            url: url.to_owned(),
            backoff: Backoff::default(),
        }
    }

    /// The same folder with another retry policy.
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        Self { backoff, ..self }
    }

    /// The folder `folder` (slash-separated) inside this one.
    pub fn child(&self, folder: &str) -> Self {
        let prefix = folder
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part));
        Self {
            prefix,
            url: format!("{}/{folder}", self.url.trim_end_matches('/')),
            ..self.clone()
        }
    }

    /// Copies every file under the local folder `local` into this folder, keeping the layout;
    /// returns the number of files.
    ///
    /// # Errors
    /// A file cannot be read or written (named).
    pub async fn upload_tree(&self, local: &std::path::Path) -> anyhow::Result<usize> {
        let mut pending = vec![(local.to_owned(), String::new())];
        let mut files = 0;
        while let Some((dir, relative)) = pending.pop() {
            let entries =
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no UTF-8 name", path.display()))?
                    .to_owned();
                if path.is_dir() {
                    pending.push((path, format!("{relative}{name}/")));
                } else {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    self.child(&relative).put(&name, Bytes::from(bytes)).await?;
                    files += 1;
                }
            }
        }
        Ok(files)
    }

    /// `URL/name`, for messages.
    pub fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn path(&self, name: &str) -> StorePath {
        self.prefix.clone().join(name)
    }

    /// Reads an object. Transient failures are retried within the wait budget, and while the
    /// store stays unreachable the rank says so ("waiting for storage", in its log and its
    /// heartbeat, naming the object), so that its launcher's watchdog does not take it for hung.
    ///
    /// # Errors
    /// The object is missing (at once), or [`StorageUnavailable`] past the budget.
    pub async fn get(&self, name: &str) -> anyhow::Result<Bytes> {
        let path = self.path(name);
        let mut wait = self.backoff.first_wait;
        let mut since: Option<std::time::Instant> = None;
        loop {
            let result = async { self.store.get(&path).await?.bytes().await }.await;
            let error = match result {
                Ok(bytes) => {
                    if let Some(since) = since {
                        let waited = since.elapsed().as_secs_f64();
                        tracing::warn!(object = %self.describe(name), "storage is back after {waited:.1} s");
                        crate::heartbeat::storage(None);
                    }
                    return Ok(bytes);
                }
                Err(object_store::Error::NotFound { .. }) => {
                    anyhow::bail!("{}: not found", self.describe(name))
                }
                Err(
                    error @ (object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }),
                ) => {
                    return Err(anyhow::Error::new(error)
                        .context(format!("reading {}", self.describe(name))));
                }
                Err(error) => error,
            };
            let first = *since.get_or_insert_with(std::time::Instant::now);
            let waited = first.elapsed();
            if waited >= self.backoff.budget {
                return Err(StorageUnavailable {
                    object: self.describe(name),
                    waited_s: waited.as_secs_f64(),
                    budget_s: self.backoff.budget.as_secs_f64(),
                    last: error.to_string(),
                }
                .into());
            }
            tracing::warn!(
                object = %self.describe(name),
                %error,
                "waiting for storage ({:.1} s of {:.0} s)",
                waited.as_secs_f64(),
                self.backoff.budget.as_secs_f64()
            );
            crate::heartbeat::storage(Some(&self.describe(name)));
            tokio::time::sleep(wait.min(self.backoff.budget - waited)).await;
            wait = (wait * 2).min(self.backoff.max_wait);
        }
    }

    /// The size of every object directly in this folder, by name.
    ///
    /// # Errors
    /// The folder cannot be listed (named).
    pub async fn sizes(&self) -> anyhow::Result<std::collections::HashMap<String, u64>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .with_context(|| format!("listing {}", self.url))?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_owned(), o.size)))
            .collect())
    }

    /// Writes an object (whole; object stores make it visible at once).
    ///
    /// # Errors
    /// The write fails; the object is named.
    pub async fn put(&self, name: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {}", self.describe(name)))?;
        Ok(())
    }
}
