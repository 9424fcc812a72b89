//! A dataset's home in object storage, by URL: `s3://bucket/prefix`, `gs://…`, `az://…`,
//! `file:///abs/path`, or `memory://` (in-process, for tests). Credentials and endpoints come
//! from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …). Reads are retried with
//! exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Retries of one read, and the first wait (doubled each time).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry.
    pub first_wait: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            retries: 4,
            first_wait: Duration::from_millis(200),
        }
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
        let (store, prefix) =
            arl_checkpoints::url::open_store(url, options).context("a dataset location")?;
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

    /// Reads an object, retrying transient failures (a missing object fails at once).
    ///
    /// # Errors
    /// The object is missing, or every attempt failed; the object is named.
    pub async fn get(&self, name: &str) -> anyhow::Result<Bytes> {
        let path = self.path(name);
        let mut wait = self.backoff.first_wait;
        let mut attempt = 0;
        loop {
            let result = async { self.store.get(&path).await?.bytes().await }.await;
            match result {
                Ok(bytes) => return Ok(bytes),
                Err(object_store::Error::NotFound { .. }) => {
                    anyhow::bail!("{}: not found", self.describe(name))
                }
                Err(error) if attempt >= self.backoff.retries => {
                    return Err(anyhow::Error::new(error).context(format!(
                        "reading {} ({} attempts)",
                        self.describe(name),
                        attempt + 1
                    )));
                }
                Err(error) => {
                    tracing::warn!(object = %self.describe(name), %error, "read failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
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
