//! The training state in checkpoints: tensors copied into the checkpoint writer's staging
//! memory (the only work a save costs the training thread), tensors restored from a verified
//! checkpoint, and random number generators saved and restored exactly.

use std::collections::BTreeSet;

use anyhow::{Context, bail, ensure};
use arl_checkpoints::{Dtype, Loaded, RngState, Staging, TensorSpec, TensorView};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A tensor with its name, as in `VarStore::variables`.
pub type Named = (String, Tensor);

/// Every variable of `vs` (trainable or not), in name order.
pub fn sorted_variables(vs: &tch::nn::VarStore) -> Vec<Named> {
    let mut variables: Vec<Named> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}

/// The safetensors element type of a tch kind.
///
/// # Errors
/// A kind safetensors cannot hold (complex, quantised).
pub fn dtype_of(kind: Kind) -> anyhow::Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("tensors of kind {other:?} cannot be checkpointed"),
    })
}

/// The tch kind of a safetensors element type.
///
/// # Errors
/// A type tch has no kind for.
pub fn kind_of(dtype: Dtype) -> anyhow::Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("checkpoint tensors of type {other:?} are not supported"),
    })
}

fn spec(group: &str, name: &str, tensor: &Tensor) -> anyhow::Result<TensorSpec> {
    Ok(TensorSpec {
        group: group.to_owned(),
        name: name.to_owned(),
        dtype: dtype_of(tensor.kind())?,
        shape: tensor.size().iter().map(|&d| d as usize).collect(),
    })
}

/// The staging layout of `tensors` in `group` (for [`arl_checkpoints::AsyncSaver::reserve`]).
///
/// # Errors
/// A tensor of a kind that cannot be checkpointed.
pub fn layout(group: &str, tensors: &[Named]) -> anyhow::Result<Vec<TensorSpec>> {
    tensors
        .iter()
        .map(|(name, tensor)| spec(group, name, tensor))
        .collect()
}

/// Copies `tensors` (on any device) into `staging` as `group`: torch's own copy into a CPU
/// tensor over the staging buffer, so it runs on torch's threads and from GPUs directly.
///
/// # Errors
/// A tensor kind that cannot be checkpointed, or a name staged twice.
pub fn snapshot(staging: &mut Staging, group: &str, tensors: &[Named]) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, tensor) in tensors {
        let size = tensor.size();
        let kind = tensor.kind();
        let buffer = staging.stage(spec(group, name, tensor)?)?;
        if buffer.is_empty() {
            continue;
        }
        let strides = contiguous_strides(&size);
        // SAFETY: the buffer holds exactly numel elements of `kind` and outlives `view`, which
        // is dropped at the end of this iteration.
        let mut view = unsafe {
            Tensor::f_from_blob(buffer.as_mut_ptr(), &size, &strides, kind, Device::Cpu)
        }?;
        view.f_copy_(tensor)
            .with_context(|| format!("copying {group}/{name} to host memory"))?;
    }
    Ok(())
}

fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; size.len()];
    for i in (0..size.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * size[i + 1];
    }
    strides
}

/// A CPU tensor holding a copy of a checkpoint's tensor.
///
/// # Errors
/// A dtype libtorch has no kind for.
pub fn tensor_of(view: &TensorView<'_>) -> anyhow::Result<Tensor> {
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(
        view.data(),
        &shape,
        kind_of(view.dtype())?,
    )?)
}

/// Copies `group` of a verified checkpoint into `tensors` (in place, any device). Every tensor
/// must be there with the same type and shape, and nothing else.
///
/// # Errors
/// Missing, unexpected or mismatched tensors, listed with the checkpoint named.
pub fn restore(loaded: &Loaded, group: &str, tensors: &[Named]) -> anyhow::Result<()> {
    let saved = loaded.tensors(group)?;
    let wanted: BTreeSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let have: BTreeSet<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<_> = wanted.difference(&have).collect();
    let unexpected: Vec<_> = have.difference(&wanted).collect();
    ensure!(
        missing.is_empty() && unexpected.is_empty(),
        "{}: group {group} does not match: missing {missing:?}, unexpected {unexpected:?}",
        loaded.location
    );
    let _guard = tch::no_grad_guard();
    for (name, tensor) in tensors {
        let view = &saved[saved
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .expect("checked")]
        .1;
        let what = || format!("{}: {group}/{name}", loaded.location);
        let source = tensor_of(view).with_context(what)?;
        ensure!(
            source.kind() == tensor.kind() && source.size() == tensor.size(),
            "{}: saved as {:?} {:?}, the run has {:?} {:?}",
            what(),
            source.kind(),
            source.size(),
            tensor.kind(),
            tensor.size()
        );
        tensor.shallow_clone().f_copy_(&source).with_context(what)?;
    }
    Ok(())
}

/// The state of a ChaCha generator, for the manifest.
pub fn rng_state(rng: &ChaCha8Rng) -> RngState {
    RngState {
        seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
        stream: rng.get_stream(),
        word_pos: rng.get_word_pos().to_string(),
    }
}

/// A ChaCha generator at exactly the saved position.
///
/// # Errors
/// A seed that is not 64 hex digits, or a position that is not a number.
pub fn restore_rng(state: &RngState) -> anyhow::Result<ChaCha8Rng> {
    use rand::SeedableRng;
    ensure!(
        state.seed.len() == 64,
        "rng seed {:?}: expected 64 hex digits",
        state.seed
    );
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&state.seed[2 * i..2 * i + 2], 16)
            .with_context(|| format!("rng seed {:?}: not hex", state.seed))?;
    }
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(state.stream);
    rng.set_word_pos(
        state
            .word_pos
            .parse()
            .with_context(|| format!("rng word_pos {:?}: not a number", state.word_pos))?,
    );
    Ok(rng)
}
