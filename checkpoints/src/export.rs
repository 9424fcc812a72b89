//! Weights-only export: one group of a verified checkpoint (normally `model`, in ARL's
//! parameter names) as a single safetensors file that any safetensors reader loads, with the
//! checkpoint it came from recorded in the file's `__metadata__`.

use std::collections::HashMap;

use anyhow::Context;

use crate::store::Loaded;
use crate::target::{Target, Written};
use crate::tensor_file::{self, Entry};

/// The `format` metadata of an exported file.
pub const WEIGHTS_FORMAT: &str = "arl-weights/1";

/// Writes `group` of `loaded` to `destination` (a local file path or an object-store URL of
/// a file), durably; returns its size and sha256.
///
/// # Errors
/// No such group, or the write fails (named).
pub fn export_weights(
    loaded: &Loaded,
    group: &str,
    destination: &str,
    options: &[(&str, &str)],
) -> anyhow::Result<Written> {
    let (folder, name) = destination.rsplit_once('/').unwrap_or((".", destination));
    anyhow::ensure!(
        !name.is_empty(),
        "export destination {destination:?} names no file"
    );
    let tensors = loaded.tensors(group)?;
    let entries: Vec<Entry<'_>> = tensors
        .iter()
        .map(|(name, view)| Entry {
            name,
            dtype: view.dtype(),
            shape: view.shape(),
            data: view.data(),
        })
        .collect();
    let state = &loaded.manifest.state;
    let metadata = HashMap::from([
        ("format".to_owned(), WEIGHTS_FORMAT.to_owned()),
        ("step".to_owned(), state.step.to_string()),
        ("config_hash".to_owned(), state.config_hash.clone()),
        ("data_hash".to_owned(), state.data_hash.clone()),
        ("checkpoint".to_owned(), loaded.location.clone()),
    ]);
    let header = tensor_file::header(&entries, Some(metadata))
        .with_context(|| format!("exporting to {destination}"))?;
    let folder = if folder.is_empty() { "/" } else { folder };
    let target = Target::open(folder, options)?;
    let written = target.write(name, &tensor_file::parts(&header, &entries))?;
    target.sync_dir("")?;
    Ok(written)
}
