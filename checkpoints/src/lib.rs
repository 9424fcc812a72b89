//! Checkpoints of an arl run: the on-disk format, local and object-store targets, atomic commit,
//! verification, retention, discovery, the asynchronous writer, and weights-only export.
//!
//! A checkpoint is the folder (or object prefix) `step-<12 digits>/` under the run's checkpoint
//! location, holding
//! - the tensors as safetensors files, one or more per group (`model-00000.safetensors`,
//!   `optim-00000.safetensors`, …), split at a size limit;
//! - `manifest.json`: the format version, the training state ([`TrainingState`]: step, epoch,
//!   config and data hashes, world size, per-rank RNG states, sampler and learning-rate
//!   schedule) and the size and sha256 of every tensor file;
//! - `COMMITTED`, written last, after every other file is durable, holding the sha256 of the
//!   manifest.
//!
//! Readers trust only committed checkpoints whose manifest and files hash as recorded. The
//! newest checkpoint is found by scanning the folders (no pointer file that could disagree).
//! Retention keeps the last N and every K-th step and never deletes the newest committed
//! checkpoint; a deletion removes the commit marker first, so a crash in the middle never
//! leaves a committed-looking but incomplete checkpoint.

pub mod export;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod retention;
pub mod saver;
pub mod staging;
pub mod store;
pub mod target;
pub mod tensor_file;
pub mod url;

pub use manifest::{Manifest, RankState, RngState, SamplerPosition, ScheduleState, TrainingState};
pub use retention::Retention;
pub use safetensors::tensor::TensorView;
pub use saver::{AsyncSaver, SaverConfig};
pub use staging::{Dtype, Staging, TensorSpec};
pub use store::{Checkpoints, Listed, Loaded, SaveReport, Status};
