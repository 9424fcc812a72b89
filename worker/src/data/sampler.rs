//! The training sample order: one deterministic global sequence per epoch, cut into global
//! batches and partitioned across ranks.
//!
//! An epoch's sequence shuffles the shard order, concatenates the shards' items, and shuffles
//! within consecutive blocks of `block_size` items (MosaicML Streaming's block shuffle: random
//! enough, and a rank only needs the few shards its current block spans). Step `s` consumes
//! positions `s·B .. (s+1)·B` of the sequence (B = global batch); rank r of W takes the r-th of
//! W equal slices. The sequence depends only on the seed, the epoch and the shards, so the
//! samples of a step are the same for any world size at the same global batch, and the state
//! (epoch, samples consumed) resumes exactly, even on a different world size. The items after the
//! last full global batch of an epoch are not used in that epoch (a new epoch reshuffles).

use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

/// A sample: an item of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRef {
    /// Shard index in the dataset's manifest.
    pub shard: u32,
    /// Item index within the shard.
    pub item: u32,
}

/// Sampler settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Seed of every epoch's order.
    pub seed: u64,
    /// Shuffle (false: shards and items in manifest order).
    pub shuffle: bool,
    /// Items per shuffle block.
    pub block_size: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            shuffle: true,
            block_size: 1 << 16,
        }
    }
}

/// Where the sampler stands: checkpointed with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SamplerState {
    /// Current epoch.
    pub epoch: u64,
    /// Samples of this epoch consumed by all ranks together.
    pub consumed: u64,
}

/// Where the sampler stands after `steps` global batches of `global_batch` from the very start
/// (each epoch ends after its last full global batch).
pub fn state_after(items_per_shard: &[u32], global_batch: usize, steps: u64) -> SamplerState {
    let total: u64 = items_per_shard.iter().map(|&n| u64::from(n)).sum();
    let per_epoch = (total / global_batch.max(1) as u64).max(1);
    SamplerState {
        epoch: steps / per_epoch,
        consumed: (steps % per_epoch) * global_batch as u64,
    }
}

/// The global order of one epoch.
pub fn epoch_order(items_per_shard: &[u32], cfg: &SamplerConfig, epoch: u64) -> Vec<SampleRef> {
    let mut shards: Vec<u32> = (0..items_per_shard.len() as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if cfg.shuffle {
        shards.shuffle(&mut rng);
    }
    let mut order: Vec<SampleRef> = shards
        .iter()
        .flat_map(|&shard| {
            (0..items_per_shard[shard as usize]).map(move |item| SampleRef { shard, item })
        })
        .collect();
    if cfg.shuffle {
        for block in order.chunks_mut(cfg.block_size.max(1)) {
            block.shuffle(&mut rng);
        }
    }
    order
}

/// The sample stream of one rank.
pub struct Sampler {
    items_per_shard: Vec<u32>,
    cfg: SamplerConfig,
    global_batch: usize,
    rank: usize,
    world: usize,
    state: SamplerState,
    order: Vec<SampleRef>,
}

impl Sampler {
    /// A sampler for `rank` of `world`, resuming at `state`.
    ///
    /// # Errors
    /// A global batch that the world size does not divide, one larger than the dataset, or a
    /// state past the end of its epoch.
    pub fn new(
        items_per_shard: Vec<u32>,
        cfg: SamplerConfig,
        global_batch: usize,
        (rank, world): (usize, usize),
        state: SamplerState,
    ) -> anyhow::Result<Self> {
        let total: u64 = items_per_shard.iter().map(|&n| u64::from(n)).sum();
        anyhow::ensure!(
            world > 0 && rank < world && global_batch > 0 && global_batch.is_multiple_of(world),
            "global batch {global_batch} must be a positive multiple of the world size {world}"
        );
        anyhow::ensure!(
            global_batch as u64 <= total,
            "global batch {global_batch} is larger than the dataset ({total} samples)"
        );
        let mut sampler = Self {
            order: epoch_order(&items_per_shard, &cfg, state.epoch),
            items_per_shard,
            cfg,
            global_batch,
            rank,
            world,
            state,
        };
        anyhow::ensure!(
            state.consumed.is_multiple_of(global_batch as u64)
                && state.consumed <= sampler.steps_per_epoch() as u64 * global_batch as u64,
            "sampler state {state:?} is not a step boundary of epoch {} ({} steps of {global_batch})",
            state.epoch,
            sampler.steps_per_epoch()
        );
        sampler.roll_over();
        Ok(sampler)
    }

    /// Full global batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.order.len() / self.global_batch
    }

    /// The state to checkpoint (the next sample to draw).
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Starts the next epoch when this one has no full global batch left.
    fn roll_over(&mut self) {
        if self.state.consumed >= (self.steps_per_epoch() * self.global_batch) as u64 {
            self.state = SamplerState {
                epoch: self.state.epoch + 1,
                consumed: 0,
            };
            self.order = epoch_order(&self.items_per_shard, &self.cfg, self.state.epoch);
        }
    }

    /// This rank's slice of the global batch at `consumed`.
    fn slice(&self, consumed: u64) -> &[SampleRef] {
        let local = self.global_batch / self.world;
        let start = consumed as usize + self.rank * local;
        &self.order[start..start + local]
    }

    /// This rank's samples of the next global batch; advances the state by one global batch.
    pub fn next_batch(&mut self) -> Vec<SampleRef> {
        let batch = self.slice(self.state.consumed).to_vec();
        self.state.consumed += self.global_batch as u64;
        self.roll_over();
        batch
    }

    /// The shards this rank reads in its next `steps` batches of this epoch, in order of first use
    /// (what to prefetch).
    pub fn upcoming_shards(&self, steps: usize) -> Vec<u32> {
        let mut shards: Vec<u32> = Vec::new();
        let end = self.steps_per_epoch() as u64 * self.global_batch as u64;
        let mut consumed = self.state.consumed;
        for _ in 0..steps {
            if consumed >= end {
                break;
            }
            for sample in self.slice(consumed) {
                if !shards.contains(&sample.shard) {
                    shards.push(sample.shard);
                }
            }
            consumed += self.global_batch as u64;
        }
        shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SHARDS: [u32; 5] = [7, 3, 10, 5, 8]; // 33 items

    fn cfg(block_size: usize) -> SamplerConfig {
        SamplerConfig {
            seed: 42,
            shuffle: true,
            block_size,
        }
    }

    /// The global sequence of `steps` steps drawn by `world` ranks (rank slices concatenated).
    fn global(world: usize, batch: usize, steps: usize, state: SamplerState) -> Vec<SampleRef> {
        let mut ranks: Vec<Sampler> = (0..world)
            .map(|r| Sampler::new(SHARDS.to_vec(), cfg(6), batch, (r, world), state).unwrap())
            .collect();
        (0..steps)
            .flat_map(|_| {
                ranks
                    .iter_mut()
                    .flat_map(|s| s.next_batch())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn an_epoch_is_a_permutation_shuffled_by_shard_and_block() {
        let order = epoch_order(&SHARDS, &cfg(6), 0);
        let distinct: HashSet<SampleRef> = order.iter().copied().collect();
        assert_eq!((order.len(), distinct.len()), (33, 33));
        assert_ne!(order, epoch_order(&SHARDS, &cfg(6), 1), "epochs differ");
        assert_eq!(order, epoch_order(&SHARDS, &cfg(6), 0), "and repeat");
        // A block of 6 spans at most two shards (blocks are cut after the shard shuffle).
        for block in order.chunks(6) {
            let shards: HashSet<u32> = block.iter().map(|s| s.shard).collect();
            assert!(shards.len() <= 3, "{block:?}");
        }
        let plain = SamplerConfig {
            shuffle: false,
            ..cfg(6)
        };
        let order = epoch_order(&SHARDS, &plain, 3);
        assert_eq!(order[7], SampleRef { shard: 1, item: 0 });
    }

    #[test]
    fn every_world_size_draws_the_same_global_sequence() {
        let one = global(1, 8, 12, SamplerState::default());
        assert_eq!(global(2, 8, 12, SamplerState::default()), one);
        assert_eq!(global(4, 8, 12, SamplerState::default()), one);
        assert_eq!(global(8, 8, 12, SamplerState::default()), one);
        // 4 steps of 8 per epoch (33 items): one item left out of each epoch, none repeated.
        let epoch0: HashSet<SampleRef> = one[..32].iter().copied().collect();
        assert_eq!(epoch0.len(), 32);
        assert_eq!(one[32..64], epoch_order(&SHARDS, &cfg(6), 1)[..32]);
    }

    #[test]
    fn a_resume_mid_epoch_skips_nothing_and_repeats_nothing_even_on_another_world_size() {
        let straight = global(2, 4, 10, SamplerState::default());
        let mut first =
            Sampler::new(SHARDS.to_vec(), cfg(6), 4, (1, 2), SamplerState::default()).unwrap();
        for _ in 0..3 {
            first.next_batch();
        }
        let state = first.state();
        assert_eq!(
            state,
            SamplerState {
                epoch: 0,
                consumed: 12
            }
        );
        assert_eq!(global(2, 4, 7, state), straight[12..]);
        assert_eq!(
            global(4, 4, 7, state),
            straight[12..],
            "elastic: 2 ranks -> 4"
        );
        // At an epoch's end the state moves to the next epoch.
        let mut s = Sampler::new(SHARDS.to_vec(), cfg(6), 4, (0, 1), state).unwrap();
        for _ in 0..5 {
            s.next_batch();
        }
        assert_eq!(
            s.state(),
            SamplerState {
                epoch: 1,
                consumed: 0
            }
        );
    }

    #[test]
    fn bad_settings_and_states_are_refused_and_prefetch_follows_the_order() {
        let new = |batch, world, consumed| {
            Sampler::new(
                SHARDS.to_vec(),
                cfg(6),
                batch,
                (0, world),
                SamplerState { epoch: 0, consumed },
            )
        };
        assert!(new(6, 4, 0).is_err(), "6 is not a multiple of 4");
        assert!(new(64, 1, 0).is_err(), "larger than the dataset");
        assert!(new(8, 2, 5).is_err(), "not a step boundary");
        assert!(new(8, 2, 40).is_err(), "past the epoch");
        let s = new(8, 2, 8).unwrap();
        let upcoming = s.upcoming_shards(2);
        let order = epoch_order(&SHARDS, &cfg(6), 0);
        assert_eq!(upcoming[0], order[8].shard);
        let used: HashSet<u32> = order[8..12]
            .iter()
            .chain(&order[16..20])
            .map(|x| x.shard)
            .collect();
        assert_eq!(upcoming.iter().copied().collect::<HashSet<_>>(), used);
    }
}
