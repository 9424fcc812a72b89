//! Host memory holding a snapshot of the training state's tensors, reused from save to save so
//! that a snapshot is a copy into memory that is already mapped (no page faults, no
//! allocation).

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, ensure};
pub use safetensors::Dtype;

/// A tensor's name, group, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The group (`model`, `optim`, …).
    pub group: String,
    /// The tensor's name in its group.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Bytes of the tensor.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// A tensor copied to host memory.
#[derive(Debug)]
pub struct StagedTensor {
    /// What it is.
    pub spec: TensorSpec,
    /// Its bytes, little-endian, row-major.
    pub data: Vec<u8>,
}

/// A snapshot of tensors, by group, with the buffers of the previous snapshot kept for reuse.
#[derive(Debug, Default)]
pub struct Staging {
    groups: BTreeMap<String, Vec<StagedTensor>>,
    spare: HashMap<(String, String), Vec<u8>>,
}

/// Writes to every page of `buffer`, so that the kernel maps it now rather than during a
/// snapshot.
fn touch(buffer: &mut [u8]) {
    for page in buffer.chunks_mut(4096) {
        // SAFETY: `page` is a non-empty slice of initialised bytes.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
    }
}

impl Staging {
    /// Starts a new snapshot: the staged tensors become spare buffers.
    pub fn clear(&mut self) {
        for (group, tensors) in std::mem::take(&mut self.groups) {
            for tensor in tensors {
                self.spare
                    .insert((group.clone(), tensor.spec.name), tensor.data);
            }
        }
    }

    /// Allocates and maps buffers for `layout` ahead of the first snapshot.
    pub fn reserve(&mut self, layout: &[TensorSpec]) {
        self.clear();
        for spec in layout {
            let key = (spec.group.clone(), spec.name.clone());
            let buffer = self.spare.entry(key).or_default();
            if buffer.len() != spec.bytes() {
                *buffer = vec![0; spec.bytes()];
                touch(buffer);
            }
        }
    }

    /// The buffer for `spec`, to be filled with the tensor's bytes (little-endian, row-major);
    /// the previous snapshot's buffer of the same tensor when the size matches.
    ///
    /// # Errors
    /// An invalid group name, or the tensor staged twice.
    pub fn stage(&mut self, spec: TensorSpec) -> anyhow::Result<&mut [u8]> {
        ensure!(
            crate::layout::valid_group(&spec.group),
            "tensor group {:?}: only letters, digits and _",
            spec.group
        );
        let bytes = spec.bytes();
        let key = (spec.group.clone(), spec.name.clone());
        let tensors = self.groups.entry(spec.group.clone()).or_default();
        if tensors.iter().any(|t| t.spec.name == spec.name) {
            bail!("tensor {}/{} staged twice", spec.group, spec.name);
        }
        let data = match self.spare.remove(&key) {
            Some(buffer) if buffer.len() == bytes => buffer,
            _ => vec![0; bytes],
        };
        tensors.push(StagedTensor { spec, data });
        Ok(&mut tensors.last_mut().expect("just pushed").data)
    }

    /// Drops spare buffers that the last snapshot did not reuse.
    pub fn drop_spares(&mut self) {
        self.spare.clear();
    }

    /// The staged groups, by name, each in staging order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &[StagedTensor])> {
        self.groups.iter().map(|(g, t)| (g.as_str(), t.as_slice()))
    }

    /// Bytes staged.
    pub fn bytes(&self) -> u64 {
        self.groups
            .values()
            .flatten()
            .map(|t| t.data.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(group: &str, name: &str, len: usize) -> TensorSpec {
        TensorSpec {
            group: group.into(),
            name: name.into(),
            dtype: Dtype::F32,
            shape: vec![len],
        }
    }

    #[test]
    fn a_second_snapshot_reuses_the_first_ones_buffers() {
        let mut staging = Staging::default();
        staging.reserve(&[spec("model", "w", 1000)]);
        let first = staging.stage(spec("model", "w", 1000)).unwrap().as_ptr();
        staging.clear();
        let second = staging.stage(spec("model", "w", 1000)).unwrap().as_ptr();
        assert_eq!(first, second);
        staging.clear();
        assert_eq!(staging.stage(spec("model", "w", 10)).unwrap().len(), 40);
        assert!(staging.stage(spec("model", "w", 10)).is_err());
        assert!(staging.stage(spec("bad-group", "w", 1)).is_err());
        assert_eq!(staging.bytes(), 40);
    }
}
