//! Rank-consistency of collective inputs. Gloo aborts the whole process (inside its transport
//! thread, beyond any `try`) when ranks send buffers of different sizes, so every collective
//! first compares a fingerprint of its tensors' dtypes and shapes across ranks, through one
//! 16-byte MAX all-reduce of `[f, -f]`: all ranks agree exactly when the result is `[f, -f]`.

use std::hash::{DefaultHasher, Hash, Hasher};

use tch::Tensor;

/// A 62-bit fingerprint of the operation name and each tensor's dtype and shape, in order
/// (small enough that its negation never overflows).
pub(crate) fn fingerprint(op: &str, tensors: &[Tensor]) -> i64 {
    let mut hasher = DefaultHasher::new();
    op.hash(&mut hasher);
    for tensor in tensors {
        format!("{:?}", tensor.kind()).hash(&mut hasher);
        tensor.size().hash(&mut hasher);
    }
    (hasher.finish() >> 2) as i64
}

/// The probe each rank contributes: `[f, -f]`.
pub(crate) fn probe(fingerprint: i64) -> [i64; 2] {
    [fingerprint, -fingerprint]
}

/// Whether the MAX-reduced probe shows that every rank had `fingerprint`.
pub(crate) fn all_agree(fingerprint: i64, reduced: [i64; 2]) -> bool {
    reduced == probe(fingerprint)
}

/// A short description of a tensor list for error messages: `3 tensors: Float[3, 4], …`.
pub(crate) fn describe(tensors: &[Tensor]) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = tensors
        .iter()
        .take(SHOWN)
        .map(|t| format!("{:?}{:?}", t.kind(), t.size()))
        .collect();
    if tensors.len() > SHOWN {
        parts.push(format!("… {} more", tensors.len() - SHOWN));
    }
    format!("{} tensors: {}", tensors.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(shape: &[i64], kind: Kind) -> Tensor {
        Tensor::zeros(shape, (kind, Device::Cpu))
    }

    #[test]
    fn fingerprints_differ_by_shape_dtype_order_and_op() {
        let base = fingerprint(
            "allreduce",
            &[t(&[2, 3], Kind::Float), t(&[4], Kind::Double)],
        );
        assert_eq!(
            base,
            fingerprint(
                "allreduce",
                &[t(&[2, 3], Kind::Float), t(&[4], Kind::Double)]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                "allreduce",
                &[t(&[3, 2], Kind::Float), t(&[4], Kind::Double)]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                "allreduce",
                &[t(&[2, 3], Kind::Double), t(&[4], Kind::Double)]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                "allreduce",
                &[t(&[4], Kind::Double), t(&[2, 3], Kind::Float)]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                "broadcast",
                &[t(&[2, 3], Kind::Float), t(&[4], Kind::Double)]
            )
        );
    }

    #[test]
    fn agreement_needs_both_the_max_and_the_min_to_match() {
        let f = 1234;
        assert!(all_agree(f, [1234, -1234]));
        assert!(
            !all_agree(f, [1300, -1234]),
            "another rank had a larger fingerprint"
        );
        assert!(
            !all_agree(f, [1234, -1000]),
            "another rank had a smaller fingerprint"
        );
    }

    #[test]
    fn descriptions_are_short() {
        let many: Vec<Tensor> = (0..6).map(|_| t(&[1], Kind::Float)).collect();
        assert_eq!(describe(&many[..1]), "1 tensors: Float[1]");
        assert!(describe(&many).ends_with("… 2 more"));
    }
}
