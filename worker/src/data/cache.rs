//! The local shard cache: files in one folder, written atomically (a temporary name, then a
//! rename), evicted least-recently-used first when the total passes a size cap. Ranks on a node
//! may share the folder: a file being read stays readable after another rank evicts it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, ensure};
use bytes::Bytes;

/// Suffix of files being written.
const PARTIAL: &str = ".partial";

#[derive(Default)]
struct Entries {
    /// name → (bytes, last use).
    files: HashMap<String, (u64, u64)>,
    clock: u64,
    total: u64,
}

/// A size-capped folder of shard files.
pub struct ShardCache {
    dir: PathBuf,
    cap_bytes: u64,
    entries: Mutex<Entries>,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    ensure!(
        !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
        "shard name {name:?} is not a plain file name"
    );
    Ok(())
}

impl ShardCache {
    /// Opens (or creates) the cache folder, adopting the files already there and removing
    /// leftovers of interrupted writes.
    ///
    /// # Errors
    /// The folder cannot be created or listed.
    pub fn new(dir: &Path, cap_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut entries = Entries::default();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(PARTIAL) {
                let _ = std::fs::remove_file(entry.path());
            } else if entry.file_type()?.is_file() {
                let size = entry.metadata()?.len();
                entries.files.insert(name, (size, 0));
                entries.total += size;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            cap_bytes,
            entries: Mutex::new(entries),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Whether `name` is cached.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().files.contains_key(name)
    }

    /// The cached file, if present (marks it recently used).
    ///
    /// # Errors
    /// A bad name, or a file that vanished or cannot be read.
    pub fn get(&self, name: &str) -> anyhow::Result<Option<Bytes>> {
        check_name(name)?;
        {
            let mut entries = self.lock();
            entries.clock += 1;
            let clock = entries.clock;
            match entries.files.get_mut(name) {
                Some(entry) => entry.1 = clock,
                None => return Ok(None),
            }
        }
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(name);
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Stores `bytes` as `name` (atomically), then evicts least-recently-used files until the
    /// total is under the cap (never the file just stored).
    ///
    /// # Errors
    /// A bad name, or the file cannot be written (a full disk, say: then nothing of it is left).
    pub fn insert(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        check_name(name)?;
        let path = self.dir.join(name);
        let tmp = self
            .dir
            .join(format!("{name}{PARTIAL}-{}", std::process::id()));
        let written = std::fs::write(&tmp, bytes)
            .with_context(|| format!("writing {}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming to {}", path.display()))
            });
        if let Err(error) = written {
            // A full disk leaves no half-written file behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let (clock, size) = (entries.clock, bytes.len() as u64);
        if let Some((old, _)) = entries.files.insert(name.to_owned(), (size, clock)) {
            entries.total -= old;
        }
        entries.total += size;
        while entries.total > self.cap_bytes {
            let victim = entries
                .files
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .min_by_key(|(n, (_, used))| (*used, (*n).clone()))
                .map(|(n, _)| n.clone());
            let Some(victim) = victim else { break };
            if let Some((size, _)) = entries.files.remove(&victim) {
                entries.total -= size;
            }
            let _ = std::fs::remove_file(self.dir.join(&victim));
            tracing::debug!(shard = %victim, "evicted from the cache");
        }
        Ok(())
    }

    /// Drops `name` (a file found corrupt).
    pub fn remove(&self, name: &str) {
        self.forget(name);
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    fn forget(&self, name: &str) {
        let mut entries = self.lock();
        if let Some((size, _)) = entries.files.remove(name) {
            entries.total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_files_go_first_and_partials_are_cleared() {
        let dir = std::env::temp_dir().join(format!("arl-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x.arrow.partial-1"), b"half").unwrap();
        let cache = ShardCache::new(&dir, 250).unwrap();
        assert!(!dir.join("x.arrow.partial-1").exists());
        for name in ["a", "b"] {
            cache.insert(name, &[0; 100]).unwrap();
        }
        assert!(cache.get("a").unwrap().is_some()); // a is now more recent than b
        cache.insert("c", &[0; 100]).unwrap();
        assert!(
            !cache.contains("b") && !dir.join("b").exists(),
            "b was least recent"
        );
        assert!(cache.contains("a") && cache.contains("c"));
        assert_eq!(cache.total_bytes(), 200);
        cache.insert("big", &[0; 400]).unwrap();
        assert_eq!(
            cache.total_bytes(),
            400,
            "a file over the cap still stays alone"
        );
        let reopened = ShardCache::new(&dir, 1000).unwrap();
        assert_eq!(reopened.total_bytes(), 400);
        assert!(cache.get("../etc").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
