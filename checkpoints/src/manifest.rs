//! `manifest.json` and the commit marker: what a checkpoint holds and how to check it.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::{self, FORMAT};

/// The state of one rank's random number generator (a ChaCha stream: `rand_chacha`'s
/// `get_seed`, `get_stream` and `get_word_pos`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// The 32-byte seed, as hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// The position in the stream, in 32-bit words (a u128, as decimal text).
    pub word_pos: String,
}

/// What one rank needs beyond the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankState {
    /// The rank.
    pub rank: u32,
    /// Its random number generators, by purpose (for example `masking`, `dropout`).
    pub rng: BTreeMap<String, RngState>,
}

/// Where the sample order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerPosition {
    /// The seed of every epoch's order.
    pub seed: u64,
    /// Samples of the current epoch consumed by all ranks together.
    pub consumed: u64,
}

/// Where the learning-rate schedule stands.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleState {
    /// Optimizer steps taken.
    pub optimizer_steps: u64,
    /// Warm-up steps of the schedule.
    pub warmup_steps: u64,
    /// Steps of the whole schedule.
    pub total_steps: u64,
    /// The current learning rate of each parameter group.
    pub lr: BTreeMap<String, f64>,
}

/// Everything but the tensors that a run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    /// Training steps completed.
    pub step: u64,
    /// The current epoch.
    pub epoch: u64,
    /// sha256 of the resolved config.
    pub config_hash: String,
    /// sha256 of the data manifest.
    pub data_hash: String,
    /// Ranks of the run that wrote it.
    pub world_size: u32,
    /// One entry per rank, in rank order.
    pub ranks: Vec<RankState>,
    /// The sampler's position.
    pub sampler: SamplerPosition,
    /// The learning-rate schedule's position.
    pub schedule: ScheduleState,
    /// Anything else the trainer keeps (restart counters, best metric, …).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One tensor file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The file name inside the checkpoint folder.
    pub name: String,
    /// The tensor group it belongs to (`model`, `optim`, …).
    pub group: String,
    /// Its size.
    pub bytes: u64,
    /// sha256 of its bytes, as hex.
    pub sha256: String,
    /// Tensors in it.
    pub tensors: usize,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The training state.
    pub state: TrainingState,
    /// The tensor files.
    pub files: Vec<FileEntry>,
    /// When the save began (seconds since the Unix epoch).
    pub created_unix_s: u64,
}

/// The commit marker: the manifest's hash, so that a marker from another save never vouches
/// for this manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// [`FORMAT`].
    pub format: String,
    /// The step of the checkpoint.
    pub step: u64,
    /// sha256 of `manifest.json`, as hex.
    pub manifest_sha256: String,
}

/// sha256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The sha256 of a file's content as lowercase hex, read in pieces.
///
/// # Errors
/// The file cannot be read (named).
pub fn sha256_of_file(path: &std::path::Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    std::fs::File::open(path)
        .and_then(|mut file| std::io::copy(&mut file, &mut hasher))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The groups of `files`, in file order, each once.
pub fn groups_of<'a>(files: impl IntoIterator<Item = &'a FileEntry>) -> Vec<&'a str> {
    let mut groups: Vec<&str> = Vec::new();
    for file in files {
        if !groups.contains(&file.group.as_str()) {
            groups.push(&file.group);
        }
    }
    groups
}

/// The `extra` key under which a checkpoint lists older steps that retention must keep (for
/// example the best epoch's checkpoint, which a fine-tune evaluates at its end).
pub const PINNED: &str = "pinned";

impl TrainingState {
    /// The older steps this checkpoint pins against retention (`extra["pinned"]`).
    ///
    /// # Errors
    /// The entry is not a list of steps.
    pub fn pinned(&self) -> anyhow::Result<Vec<u64>> {
        self.extra.get(PINNED).map_or(Ok(Vec::new()), |value| {
            serde_json::from_value(value.clone())
                .with_context(|| format!("extra.{PINNED} is not a list of steps: {value}"))
        })
    }

    /// The state at `step` of a run of `world_size` ranks, each with no generators yet.
    pub fn new(step: u64, world_size: u32) -> Self {
        Self {
            step,
            world_size,
            ranks: (0..world_size)
                .map(|rank| RankState {
                    rank,
                    rng: BTreeMap::new(),
                })
                .collect(),
            ..Self::default()
        }
    }

    /// Checks the state's own consistency: one rank entry per rank, in order.
    ///
    /// # Errors
    /// The first inconsistency, named.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.world_size > 0, "world_size is 0");
        ensure!(
            self.ranks.len() == self.world_size as usize,
            "{} rank entries for world_size {}",
            self.ranks.len(),
            self.world_size
        );
        for (index, rank) in self.ranks.iter().enumerate() {
            ensure!(
                rank.rank as usize == index,
                "rank entry {index} is for rank {}",
                rank.rank
            );
        }
        Ok(())
    }
}

impl Manifest {
    /// sha256 over the sha256 of the files of `group`, in order: one hash that names a
    /// checkpoint's tensors of that group (what results cite as "the weights").
    pub fn group_hash(&self, group: &str) -> String {
        let mut hasher = Sha256::new();
        for file in self.files.iter().filter(|f| f.group == group) {
            hasher.update(file.sha256.as_bytes());
        }
        format!("{:x}", hasher.finalize())
    }

    /// Reads and checks `manifest.json` of the checkpoint of `step`; `what` names the file in
    /// errors.
    ///
    /// # Errors
    /// Not JSON of this format, another format version, a step other than the folder's,
    /// unsafe file names, or an inconsistent state.
    pub fn parse(bytes: &[u8], step: u64, what: &str) -> anyhow::Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes)
            .with_context(|| format!("{what}: not a checkpoint manifest"))?;
        if manifest.format != FORMAT {
            bail!(
                "{what}: format {:?}, this arl reads {FORMAT:?}",
                manifest.format
            );
        }
        ensure!(
            manifest.state.step == step,
            "{what}: step {} in the folder of step {step}",
            manifest.state.step
        );
        manifest
            .state
            .validate()
            .with_context(|| format!("{what}: training state"))?;
        for file in &manifest.files {
            ensure!(
                layout::valid_file_name(&file.name) && layout::valid_group(&file.group),
                "{what}: unsafe file {:?} or group {:?}",
                file.name,
                file.group
            );
        }
        Ok(manifest)
    }

    /// The groups of tensor files, in file order, each once.
    pub fn groups(&self) -> Vec<&str> {
        groups_of(&self.files)
    }

    /// Bytes of all tensor files.
    pub fn tensor_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

impl Commit {
    /// The marker for the manifest `manifest_bytes` of `step`.
    pub fn new(step: u64, manifest_bytes: &[u8]) -> Self {
        Self {
            format: FORMAT.to_owned(),
            step,
            manifest_sha256: sha256_hex(manifest_bytes),
        }
    }

    /// Reads a marker and checks it against the checkpoint's step and manifest.
    ///
    /// # Errors
    /// Not a marker, another step, or a manifest whose hash differs (named by `what`).
    pub fn check(bytes: &[u8], step: u64, manifest_bytes: &[u8], what: &str) -> anyhow::Result<()> {
        let commit: Self = serde_json::from_slice(bytes)
            .with_context(|| format!("{what}: not a commit marker"))?;
        ensure!(
            commit.format == FORMAT && commit.step == step,
            "{what}: marks {} step {}, not {FORMAT} step {step}",
            commit.format,
            commit.step
        );
        let found = sha256_hex(manifest_bytes);
        ensure!(
            commit.manifest_sha256 == found,
            "{what}: the manifest's sha256 is {found}, the marker records {} (manifest.json is \
             corrupt or from another save)",
            commit.manifest_sha256
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(world: u32) -> TrainingState {
        TrainingState::new(7, world)
    }

    fn manifest_bytes(state: TrainingState) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            format: FORMAT.to_owned(),
            state,
            files: vec![],
            created_unix_s: 0,
        })
        .unwrap()
    }

    #[test]
    fn a_manifest_must_match_its_folder_and_its_ranks() {
        assert!(Manifest::parse(&manifest_bytes(state(2)), 7, "m").is_ok());
        let wrong_step = Manifest::parse(&manifest_bytes(state(2)), 8, "m").unwrap_err();
        assert!(format!("{wrong_step:#}").contains("step 7 in the folder of step 8"));
        let mut missing = state(2);
        missing.ranks.pop();
        let error = Manifest::parse(&manifest_bytes(missing), 7, "m").unwrap_err();
        assert!(format!("{error:#}").contains("1 rank entries for world_size 2"));
    }

    #[test]
    fn a_marker_vouches_only_for_its_own_manifest() {
        let bytes = manifest_bytes(state(1));
        let marker = serde_json::to_vec(&Commit::new(7, &bytes)).unwrap();
        assert!(Commit::check(&marker, 7, &bytes, "c").is_ok());
        assert!(Commit::check(&marker, 8, &bytes, "c").is_err());
        let mut other = bytes.clone();
        other[3] ^= 1;
        let error = Commit::check(&marker, 7, &other, "c").unwrap_err();
        assert!(error.to_string().contains("manifest.json is corrupt"));
    }
}
