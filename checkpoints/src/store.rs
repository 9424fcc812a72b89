//! A run's checkpoints: save (files, then manifest, then commit marker), list, verify, load,
//! discover the newest valid one, and apply retention.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

use crate::layout::{self, COMMIT, FORMAT, MANIFEST, REJECTED};
use crate::manifest::{Commit, FileEntry, Manifest, TrainingState, groups_of, sha256_hex};
use crate::retention::Retention;
use crate::staging::Staging;
use crate::target::Target;
use crate::tensor_file::{self, Entry};

/// What a checkpoint folder holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Committed: the marker vouches for the manifest (the tensor files are verified on load).
    Committed(Box<Manifest>),
    /// No commit marker: a save in progress or one that died.
    Partial,
    /// A marker that does not check out, or a checkpoint rejected by an earlier load; the
    /// reason.
    Invalid(String),
}

/// A checkpoint folder found by [`Checkpoints::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its step.
    pub step: u64,
    /// What it holds.
    pub status: Status,
}

/// A finished save.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveReport {
    /// The step saved.
    pub step: u64,
    /// Bytes of tensor files.
    pub bytes: u64,
    /// Tensor files written.
    pub files: usize,
    /// From the start of writing to the commit marker being durable.
    pub write_time: Duration,
    /// Steps whose checkpoints retention deleted afterwards.
    pub deleted: Vec<u64>,
}

/// A verified checkpoint in memory.
#[derive(Debug)]
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The location of its folder, for messages.
    pub location: String,
    files: Vec<(FileEntry, Bytes)>,
}

/// The checkpoints of one run, at one location.
#[derive(Debug)]
pub struct Checkpoints {
    target: Target,
    /// Largest tensor file; bigger groups are split.
    pub max_file_bytes: u64,
}

/// Default size limit of one tensor file.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Checkpoints {
    /// The checkpoints at `location` (a local folder or an object-store URL; see
    /// [`Target::open`]).
    ///
    /// # Errors
    /// As [`Target::open`].
    pub fn open(location: &str) -> anyhow::Result<Self> {
        Self::open_with(location, &[])
    }

    /// As [`Checkpoints::open`], with object-store options overriding the environment's.
    ///
    /// # Errors
    /// As [`Target::open`].
    pub fn open_with(location: &str, options: &[(&str, &str)]) -> anyhow::Result<Self> {
        Ok(Self {
            target: Target::open(location, options)?,
            max_file_bytes: MAX_FILE_BYTES,
        })
    }

    /// The location.
    pub fn location(&self) -> &str {
        self.target.location()
    }

    fn file(step: u64, name: &str) -> String {
        format!("{}/{name}", layout::step_dir(step))
    }

    /// Every checkpoint folder, oldest first, with what it holds. Only the marker and the
    /// manifest are read.
    ///
    /// # Errors
    /// The location or a marker cannot be read (an unreadable file is an error, not a verdict).
    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let mut steps: Vec<u64> = self
            .target
            .list_dirs()?
            .iter()
            .filter_map(|name| layout::parse_step_dir(name))
            .collect();
        steps.sort_unstable();
        steps
            .into_iter()
            .map(|step| {
                Ok(Listed {
                    step,
                    status: self.status(step)?,
                })
            })
            .collect()
    }

    fn status(&self, step: u64) -> anyhow::Result<Status> {
        let Some(marker) = self.target.read(&Self::file(step, COMMIT))? else {
            return Ok(match self.target.read(&Self::file(step, REJECTED))? {
                Some(reason) => Status::Invalid(String::from_utf8_lossy(&reason).into_owned()),
                None => Status::Partial,
            });
        };
        Ok(match self.committed_manifest(step, &marker) {
            Ok(manifest) => Status::Committed(Box::new(manifest)),
            Err(error) if is_io(&error) => return Err(error),
            Err(error) => Status::Invalid(format!("{error:#}")),
        })
    }

    /// The manifest of `step`, checked against its marker.
    fn committed_manifest(&self, step: u64, marker: &[u8]) -> anyhow::Result<Manifest> {
        let name = Self::file(step, MANIFEST);
        let what = self.target.describe(&name);
        let bytes = self
            .target
            .read(&name)?
            .with_context(|| format!("{what}: missing, yet the checkpoint is committed"))?;
        Commit::check(
            marker,
            step,
            &bytes,
            &self.target.describe(&Self::file(step, COMMIT)),
        )?;
        Manifest::parse(&bytes, step, &what)
    }

    /// The committed checkpoints' manifests, oldest first.
    ///
    /// # Errors
    /// As [`Checkpoints::list`].
    pub fn committed(&self) -> anyhow::Result<Vec<Manifest>> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|listed| match listed.status {
                Status::Committed(manifest) => Some(*manifest),
                _ => None,
            })
            .collect())
    }

    /// The manifest of the newest committed checkpoint.
    ///
    /// # Errors
    /// As [`Checkpoints::list`].
    pub fn latest(&self) -> anyhow::Result<Option<Manifest>> {
        Ok(self.committed()?.pop())
    }

    /// Reads the checkpoint of `step` and verifies its marker, manifest and the size and hash
    /// of every file.
    ///
    /// # Errors
    /// Not committed, or a file missing, unreadable, or not as recorded (named).
    pub fn load(&self, step: u64) -> anyhow::Result<Loaded> {
        self.load_files(step, |_| true)
    }

    /// As [`Checkpoints::load`], reading and verifying only the files of tensor group `group`
    /// (for example the model without its optimiser state).
    ///
    /// # Errors
    /// As [`Checkpoints::load`], for the marker, the manifest and that group's files.
    pub fn load_group(&self, step: u64, group: &str) -> anyhow::Result<Loaded> {
        self.load_files(step, |entry| entry.group == group)
    }

    fn load_files(&self, step: u64, wanted: impl Fn(&FileEntry) -> bool) -> anyhow::Result<Loaded> {
        let folder = self.target.describe(&layout::step_dir(step));
        let marker = self
            .target
            .read(&Self::file(step, COMMIT))?
            .with_context(|| format!("{folder}: not committed (no {COMMIT})"))?;
        let manifest = self.committed_manifest(step, &marker)?;
        let mut files = Vec::with_capacity(manifest.files.len());
        for entry in manifest.files.iter().filter(|entry| wanted(entry)) {
            let name = Self::file(step, &entry.name);
            let what = self.target.describe(&name);
            let bytes = self
                .target
                .read(&name)?
                .with_context(|| format!("{what}: missing"))?;
            ensure!(
                bytes.len() as u64 == entry.bytes,
                "{what}: {} bytes, the manifest records {}",
                bytes.len(),
                entry.bytes
            );
            let sha256 = sha256_hex(&bytes);
            ensure!(
                sha256 == entry.sha256,
                "{what}: sha256 {sha256}, the manifest records {} (the file is corrupt)",
                entry.sha256
            );
            let tensors = SafeTensors::read_metadata(&bytes)
                .map_err(|e| anyhow::anyhow!("{what}: not a safetensors file: {e}"))?
                .1
                .tensors()
                .len();
            ensure!(
                tensors == entry.tensors,
                "{what}: {tensors} tensors, the manifest records {}",
                entry.tensors
            );
            files.push((entry.clone(), bytes));
        }
        Ok(Loaded {
            manifest,
            location: folder,
            files,
        })
    }

    /// Loads the newest committed checkpoint that verifies. A newer one that fails
    /// verification is marked rejected (its marker replaced by `REJECTED` with the reason) and
    /// reported, so that neither this run nor a later one trusts it; I/O errors are returned
    /// instead, since the checkpoint may be fine.
    ///
    /// # Errors
    /// The location cannot be read.
    pub fn resume(&self) -> anyhow::Result<Option<Loaded>> {
        for listed in self.list()?.into_iter().rev() {
            match &listed.status {
                Status::Committed(_) => {}
                Status::Partial => continue,
                Status::Invalid(reason) => {
                    tracing::warn!(step = listed.step, %reason, "skipping an invalid checkpoint");
                    continue;
                }
            }
            match self.load(listed.step) {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(error) if is_io(&error) => return Err(error),
                // Deleted by retention (of another process) since it was listed: not a verdict.
                Err(_) if !matches!(self.status(listed.step)?, Status::Committed(_)) => continue,
                Err(error) => {
                    let reason = format!("{error:#}");
                    tracing::error!(step = listed.step, %reason,
                        "checkpoint fails verification; rejected, trying an older one");
                    if let Err(failure) = self.reject(listed.step, &reason) {
                        tracing::warn!(step = listed.step, error = %format!("{failure:#}"),
                            "could not record the rejection (read-only location?)");
                    }
                }
            }
        }
        Ok(None)
    }

    /// Withdraws the commit of `step`, recording why.
    fn reject(&self, step: u64, reason: &str) -> anyhow::Result<()> {
        self.target
            .write(&Self::file(step, REJECTED), &[reason.as_bytes()])?;
        self.target.remove_file(&Self::file(step, COMMIT))
    }

    /// Writes the staged tensors and `state` as the checkpoint of `state.step`, committing it
    /// last. A partial folder of the same step (from a save that died) is cleared first.
    ///
    /// # Errors
    /// The step is already committed, the state is inconsistent, or a write fails (named); a
    /// failed save leaves no commit marker and touches no other checkpoint. A checkpoint of the
    /// same step that failed verification is replaced.
    pub fn save(&self, staging: &Staging, state: &TrainingState) -> anyhow::Result<SaveReport> {
        let started = Instant::now();
        let step = state.step;
        let dir = layout::step_dir(step);
        state.validate().context("the training state to save")?;
        match self.status(step)? {
            Status::Partial => self.target.remove_dir(&dir)?,
            Status::Committed(_) => bail!(
                "{}: already committed; a checkpoint is never overwritten",
                self.target.describe(&dir)
            ),
            Status::Invalid(reason) => {
                tracing::warn!(step, %reason,
                    "replacing a checkpoint that failed verification with a new save");
                self.target.remove_dir(&dir)?;
            }
        }
        let mut files = Vec::new();
        for (group, tensors) in staging.groups() {
            for (index, chunk) in tensor_file::plan(tensors, self.max_file_bytes)
                .into_iter()
                .enumerate()
            {
                let name = layout::tensor_file(group, index);
                let refs: Vec<Entry<'_>> = chunk.iter().map(Entry::from).collect();
                let header = tensor_file::header(&refs, None)
                    .with_context(|| self.target.describe(&Self::file(step, &name)))?;
                let written = self.target.write(
                    &Self::file(step, &name),
                    &tensor_file::parts(&header, &refs),
                )?;
                files.push(FileEntry {
                    name,
                    group: group.to_owned(),
                    bytes: written.bytes,
                    sha256: written.sha256,
                    tensors: refs.len(),
                });
            }
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            state: state.clone(),
            files,
            created_unix_s: unix_now(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
        let manifest_path = self.target.describe(&Self::file(step, MANIFEST));
        Manifest::parse(&manifest_bytes, step, &manifest_path)
            .context("the manifest would not read back (a non-finite number in the state?)")?;
        self.target
            .write(&Self::file(step, MANIFEST), &[&manifest_bytes])?;
        self.target.sync_dir(&dir)?;
        let marker = serde_json::to_vec(&Commit::new(step, &manifest_bytes))?;
        self.target.write(&Self::file(step, COMMIT), &[&marker])?;
        self.target.sync_dir(&dir)?;
        self.target.sync_dir("")?;
        Ok(SaveReport {
            step,
            bytes: manifest.tensor_bytes(),
            files: manifest.files.len(),
            write_time: started.elapsed(),
            deleted: Vec::new(),
        })
    }

    /// Deletes the committed checkpoints that `retention` lets go, except the steps the newest
    /// committed checkpoint pins ([`TrainingState::pinned`]), and every partial folder (call it
    /// only when no save is in flight). Checkpoints that failed verification are kept for
    /// inspection. Each deletion removes the commit marker first.
    ///
    /// # Errors
    /// Listing or a deletion fails, or the newest manifest's pins are malformed (named).
    pub fn retain(&self, retention: &Retention) -> anyhow::Result<Vec<u64>> {
        let listed = self.list()?;
        let committed: Vec<&Manifest> = listed
            .iter()
            .filter_map(|l| match &l.status {
                Status::Committed(manifest) => Some(manifest.as_ref()),
                _ => None,
            })
            .collect();
        let pinned = match committed.last() {
            Some(newest) => newest.state.pinned().with_context(|| {
                self.target
                    .describe(&Self::file(newest.state.step, MANIFEST))
            })?,
            None => Vec::new(),
        };
        let steps: Vec<u64> = committed.iter().map(|m| m.state.step).collect();
        let doomed: Vec<u64> = retention
            .doomed(&steps)
            .into_iter()
            .filter(|step| !pinned.contains(step))
            .collect();
        for &step in &doomed {
            self.delete(step)?;
        }
        self.remove_partials(&listed)?;
        Ok(doomed)
    }

    /// Deletes the partial folders that saves cut short left behind (a full disk, a kill);
    /// call it only when no save is in flight. Returns their steps.
    ///
    /// # Errors
    /// Listing or a deletion fails (named).
    pub fn clear_partials(&self) -> anyhow::Result<Vec<u64>> {
        self.remove_partials(&self.list()?)
    }

    fn remove_partials(&self, listed: &[Listed]) -> anyhow::Result<Vec<u64>> {
        let partial: Vec<u64> = listed
            .iter()
            .filter(|l| l.status == Status::Partial)
            .map(|l| l.step)
            .collect();
        for &step in &partial {
            self.target.remove_dir(&layout::step_dir(step))?;
        }
        Ok(partial)
    }

    /// Deletes the checkpoint of `step`: the commit marker first, so that a deletion cut short
    /// leaves a partial folder, never a committed checkpoint with files missing.
    ///
    /// # Errors
    /// A removal fails (named).
    pub fn delete(&self, step: u64) -> anyhow::Result<()> {
        self.target.remove_file(&Self::file(step, COMMIT))?;
        self.target.remove_dir(&layout::step_dir(step))
    }

    /// The underlying target (for export and tests).
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Whether an error came from reading rather than from what was read.
fn is_io(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some()
            || cause.downcast_ref::<object_store::Error>().is_some()
    })
}

impl Loaded {
    /// The groups of the tensor files read.
    pub fn groups(&self) -> Vec<&str> {
        groups_of(self.files.iter().map(|(entry, _)| entry))
    }

    /// The tensors of `group`, by name, borrowed from the loaded files.
    ///
    /// # Errors
    /// No such group, or a name in two files (named).
    pub fn tensors(&self, group: &str) -> anyhow::Result<Vec<(String, TensorView<'_>)>> {
        let mut out: Vec<(String, TensorView<'_>)> = Vec::new();
        for (entry, bytes) in self.files.iter().filter(|(e, _)| e.group == group) {
            let file = SafeTensors::deserialize(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}/{}: not a safetensors file: {e}",
                    self.location,
                    entry.name
                )
            })?;
            out.extend(file.tensors());
        }
        ensure!(
            !out.is_empty() || self.groups().contains(&group),
            "{}: no tensor group {group:?} (it has {:?})",
            self.location,
            self.groups()
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = out.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            bail!(
                "{}: tensor {}/{} is in two files",
                self.location,
                group,
                pair[0].0
            );
        }
        Ok(out)
    }
}
