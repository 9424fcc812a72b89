//! `arl bench …`: side-by-side benchmarks against the Python reference, in the same run.

pub mod allreduce;
pub mod chaos;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod ddp;
pub mod faults;
pub mod link;
pub mod model;
pub mod s3;

/// A private folder for a benchmark's files (a random name, owner-only, removed when dropped),
/// never a predictable name in the shared temporary folder.
///
/// # Errors
/// It cannot be created.
pub fn private_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a private temporary folder")
}
