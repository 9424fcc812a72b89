//! Every step's randomness comes from (seed, step, rank) alone, so a resumed run continues the
//! exact trajectory with no generator state to carry.

/// The seed of step `step` on rank `rank` (SplitMix64 over the three).
pub fn step_seed(seed: u64, step: u64, rank: usize) -> u64 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
