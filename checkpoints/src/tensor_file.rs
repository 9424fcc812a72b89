//! Safetensors files of staged tensors: how a group is split into files, and each file's
//! header (written with the `safetensors` crate's own metadata type, so any safetensors reader
//! reads the result).

use std::collections::HashMap;

use anyhow::Context;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::staging::{Dtype, StagedTensor};

/// A tensor to be written: name, element type, shape and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Its name in the file.
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: &'a [usize],
    /// Bytes, little-endian, row-major.
    pub data: &'a [u8],
}

impl<'a> From<&'a StagedTensor> for Entry<'a> {
    fn from(tensor: &'a StagedTensor) -> Self {
        Self {
            name: &tensor.spec.name,
            dtype: tensor.spec.dtype,
            shape: &tensor.spec.shape,
            data: &tensor.data,
        }
    }
}

/// Splits a group's tensors, in order, into runs of at most `max_bytes` (a larger tensor gets
/// a file of its own).
pub fn plan(tensors: &[StagedTensor], max_bytes: u64) -> Vec<&[StagedTensor]> {
    let mut files = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (index, tensor) in tensors.iter().enumerate() {
        let size = tensor.data.len() as u64;
        if index > start && bytes + size > max_bytes {
            files.push(&tensors[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < tensors.len() {
        files.push(&tensors[start..]);
    }
    files
}

/// The bytes before the data: the header length (u64, little-endian) and the JSON header
/// padded with spaces to a multiple of 8, with `metadata` as its `__metadata__`.
///
/// # Errors
/// Tensor names that repeat, or a header over the format's limit.
pub fn header(
    tensors: &[Entry<'_>],
    metadata: Option<HashMap<String, String>>,
) -> anyhow::Result<Vec<u8>> {
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = tensors.iter().find(|t| !names.insert(t.name)) {
        anyhow::bail!("tensor {:?} twice in one file", twice.name);
    }
    let mut offset = 0;
    let infos = tensors
        .iter()
        .map(|tensor| {
            let end = offset + tensor.data.len();
            let info = TensorInfo {
                dtype: tensor.dtype,
                shape: tensor.shape.to_vec(),
                data_offsets: (offset, end),
            };
            offset = end;
            (tensor.name.to_owned(), info)
        })
        .collect();
    let metadata = Metadata::new(metadata, infos).context("safetensors header")?;
    let mut json = serde_json::to_vec(&metadata)?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    Ok(out)
}

/// The parts of a whole file, in order: its header, then each tensor's bytes.
pub fn parts<'a>(header: &'a [u8], tensors: &[Entry<'a>]) -> Vec<&'a [u8]> {
    std::iter::once(header)
        .chain(tensors.iter().map(|t| t.data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::TensorSpec;

    fn tensor(name: &str, values: &[f32]) -> StagedTensor {
        StagedTensor {
            spec: TensorSpec {
                group: "model".into(),
                name: name.into(),
                dtype: Dtype::F32,
                shape: vec![values.len()],
            },
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn files_split_at_the_limit_and_read_back_with_the_safetensors_crate() {
        let tensors = [
            tensor("a", &[1.0, 2.0]),
            tensor("b", &[3.0; 4]),
            tensor("c", &[4.0]),
        ];
        let files = plan(&tensors, 16);
        let names: Vec<Vec<&str>> = files
            .iter()
            .map(|f| f.iter().map(|t| t.spec.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["a"], vec!["b"], vec!["c"]]);
        assert_eq!(plan(&tensors, 1 << 20).len(), 1);

        let refs: Vec<Entry<'_>> = tensors.iter().map(Entry::from).collect();
        let meta = HashMap::from([("step".to_owned(), "3".to_owned())]);
        let head = header(&refs, Some(meta)).unwrap();
        assert_eq!(head.len() % 8, 0);
        let bytes = parts(&head, &refs).concat();
        let read = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(read.tensor("b").unwrap().data(), tensors[1].data.as_slice());
        assert_eq!(read.tensor("c").unwrap().shape(), [1]);
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(metadata.metadata().as_ref().unwrap()["step"], "3");
        let twice = [refs[0], refs[0]];
        assert!(header(&twice, None).is_err());
    }
}
