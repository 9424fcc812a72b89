//! Flat gradient buckets: tensors of one dtype and device are packed, in order, into flat
//! buffers of at most `cap_bytes` (a larger tensor gets a bucket of its own), so that a long
//! list of small tensors costs a few collectives instead of one each.

use tch::{Device, Kind, Tensor};

/// What bucketing needs to know about one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// Element type.
    pub kind: Kind,
    /// Where the tensor lives.
    pub device: Device,
    /// Size in bytes.
    pub bytes: usize,
}

impl TensorSpec {
    /// The spec of an existing tensor.
    pub fn of(tensor: &Tensor) -> Self {
        Self {
            kind: tensor.kind(),
            device: tensor.device(),
            bytes: tensor.numel() * tensor.kind().elt_size_in_bytes(),
        }
    }
}

/// Groups tensor indices into buckets: one (dtype, device) per bucket, input order kept,
/// at most `cap_bytes` per bucket unless a single tensor is larger.
pub fn plan_buckets(specs: &[TensorSpec], cap_bytes: usize) -> Vec<Vec<usize>> {
    plan_buckets_first(specs, cap_bytes, cap_bytes)
}

/// [`plan_buckets`] with a smaller cap, `first_cap_bytes`, for the first bucket of each
/// (dtype, device), as DDP does so that the first reduction starts early in backward.
pub fn plan_buckets_first(
    specs: &[TensorSpec],
    first_cap_bytes: usize,
    cap_bytes: usize,
) -> Vec<Vec<usize>> {
    // Open bucket per (kind, device): index into `buckets`, its byte count and its cap.
    let mut open: Vec<((Kind, Device), usize, usize, usize)> = Vec::new();
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let key = (spec.kind, spec.device);
        match open.iter_mut().find(|(k, ..)| *k == key) {
            Some((_, bucket, bytes, cap)) if *bytes + spec.bytes <= *cap => {
                buckets[*bucket].push(index);
                *bytes += spec.bytes;
            }
            Some(slot) => {
                buckets.push(vec![index]);
                *slot = (key, buckets.len() - 1, spec.bytes, cap_bytes);
            }
            None => {
                buckets.push(vec![index]);
                open.push((key, buckets.len() - 1, spec.bytes, first_cap_bytes));
            }
        }
    }
    buckets
}

/// One bucket's flat buffer and the tensors it stands for.
pub(crate) struct FlatBucket {
    /// The buffer the collective runs on.
    pub(crate) flat: Tensor,
    /// Tensors to refill from `flat` afterwards; empty when `flat` is the tensor itself.
    members: Vec<Tensor>,
}

impl FlatBucket {
    /// Packs `members` into one flat buffer, or uses a lone contiguous tensor as is.
    pub(crate) fn pack(members: Vec<Tensor>) -> Self {
        if let [only] = members.as_slice()
            && only.is_contiguous()
        {
            return Self {
                flat: only.shallow_clone(),
                members: Vec::new(),
            };
        }
        let views: Vec<Tensor> = members.iter().map(|t| t.reshape([-1])).collect();
        Self {
            flat: Tensor::cat(&views, 0),
            members,
        }
    }

    /// Copies the reduced values back into the member tensors.
    pub(crate) fn unpack(self) {
        let mut offset = 0;
        for mut member in self.members {
            let numel = i64::try_from(member.numel()).expect("tensor too large");
            let part = self
                .flat
                .narrow(0, offset, numel)
                .view(member.size().as_slice());
            member.copy_(&part);
            offset += numel;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind, bytes: usize) -> TensorSpec {
        TensorSpec {
            kind,
            device: Device::Cpu,
            bytes,
        }
    }

    #[test]
    fn small_tensors_of_one_kind_share_a_bucket_until_the_cap() {
        let specs = [spec(Kind::Float, 40); 5];
        assert_eq!(
            plan_buckets(&specs, 100),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn kinds_never_mix_and_keep_their_order() {
        let specs = [
            spec(Kind::Float, 4),
            spec(Kind::Double, 8),
            spec(Kind::Float, 4),
            spec(Kind::BFloat16, 2),
            spec(Kind::Double, 8),
        ];
        assert_eq!(
            plan_buckets(&specs, 1 << 20),
            vec![vec![0, 2], vec![1, 4], vec![3]]
        );
    }

    #[test]
    fn the_first_bucket_of_each_kind_has_its_own_cap() {
        let specs = [
            spec(Kind::Float, 40),
            spec(Kind::Double, 40),
            spec(Kind::Float, 40),
            spec(Kind::Float, 40),
            spec(Kind::Float, 40),
        ];
        assert_eq!(
            plan_buckets_first(&specs, 40, 100),
            vec![vec![0], vec![1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn a_tensor_over_the_cap_gets_its_own_bucket() {
        let specs = [
            spec(Kind::Float, 10),
            spec(Kind::Float, 500),
            spec(Kind::Float, 10),
        ];
        assert_eq!(plan_buckets(&specs, 100), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn pack_then_unpack_restores_shapes_and_values() {
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let b = Tensor::arange(4, (Kind::Float, Device::Cpu))
            .view([2, 2])
            .tr();
        let bucket = FlatBucket::pack(vec![a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(bucket.flat.size(), vec![10]);
        let _ = bucket.flat.shallow_clone().g_mul_scalar_(2);
        bucket.unpack();
        let expected_a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]) * 2;
        let expected_b = Tensor::arange(4, (Kind::Float, Device::Cpu))
            .view([2, 2])
            .tr()
            * 2;
        assert!(a.equal(&expected_a));
        assert!(b.equal(&expected_b));
    }
}
