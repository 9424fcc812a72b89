//! TransE entity embeddings as ARL trains them with OpenKE (ARL_SPEC.md §2.3): Xavier-uniform
//! tables, optional L2 normalisation of h, r and t, the L1 (or L2) distance ‖h + r − t‖, margin
//! loss against corrupted triples (Bernoulli choice of head or tail, true triples filtered out),
//! plain SGD. Every random choice comes from a seeded ChaCha stream, so a seed fixes the result.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// Training settings; the defaults are ARL's OpenKE run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransEConfig {
    /// Embedding width.
    pub dim: i64,
    /// Distance norm: 1 (L1) or 2 (L2).
    pub p_norm: u8,
    /// L2-normalise h, r and t before scoring.
    pub normalize: bool,
    /// Margin of the loss.
    pub margin: f64,
    /// Corrupted triples per true triple.
    pub negatives: usize,
    /// Choose head or tail to corrupt by the relation's tails-per-head / heads-per-tail ratio
    /// (otherwise even odds).
    pub bernoulli: bool,
    /// Passes over the triples.
    pub epochs: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// SGD learning rate.
    pub learning_rate: f64,
    /// Seed of the initialisation, the batch order and the corruption.
    pub seed: u64,
}

impl Default for TransEConfig {
    fn default() -> Self {
        Self {
            dim: 256,
            p_norm: 1,
            normalize: true,
            margin: 5.0,
            negatives: 25,
            bernoulli: true,
            epochs: 1000,
            batches: 100,
            learning_rate: 1.0,
            seed: 0,
        }
    }
}

impl TransEConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// Names the first key with an impossible value.
    pub fn validate(&self) -> anyhow::Result<()> {
        let checks = [
            (self.dim > 0, "dim must be positive"),
            (matches!(self.p_norm, 1 | 2), "p_norm must be 1 or 2"),
            (self.margin > 0.0, "margin must be positive"),
            (self.negatives > 0, "negatives must be positive"),
            (self.batches > 0, "batches must be positive"),
            (self.learning_rate > 0.0, "learning_rate must be positive"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => anyhow::bail!("transe: {message}"),
            None => Ok(()),
        }
    }
}

/// Filtered link-prediction quality over head and tail queries.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkMetrics {
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Fraction of queries with the answer in the top 10.
    pub hits_at_10: f64,
    /// Queries ranked (two per triple).
    pub queries: usize,
}

/// The model: entity and relation tables.
pub struct TransE {
    /// Entities × dim.
    pub entities: Tensor,
    /// Relations × dim.
    pub relations: Tensor,
    cfg: TransEConfig,
}

/// A uniform(−b, b) table with b = √(6 / (rows + cols)) (Xavier, as `nn.init.xavier_uniform_`).
fn xavier(rows: i64, cols: i64, rng: &mut ChaCha8Rng) -> Tensor {
    let bound = (6.0 / (rows + cols) as f64).sqrt() as f32;
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.gen_range(-bound..bound))
        .collect();
    Tensor::from_slice(&values).reshape([rows, cols])
}

/// The sorted distinct ids of a sequence, and each item's position among them.
fn compact(ids: impl Iterator<Item = i64> + Clone) -> (Vec<i64>, Vec<i64>) {
    let mut distinct: Vec<i64> = ids.clone().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let local = ids
        .map(|id| distinct.binary_search(&id).unwrap_or_default() as i64)
        .collect();
    (distinct, local)
}

/// The corruption sampler: for a triple, a replacement head or tail that makes a false triple.
struct Corrupter {
    entities: i64,
    /// Per relation, the probability of replacing the head.
    head_odds: Vec<f64>,
    known: HashSet<[i64; 3]>,
}

impl Corrupter {
    fn new(triples: &[[i64; 3]], entities: i64, relations: usize, bernoulli: bool) -> Self {
        let mut head_odds = vec![0.5; relations];
        if bernoulli {
            // tph: tails per distinct (head, relation); hpt: heads per distinct (tail, relation).
            let mut heads: HashMap<(i64, i64), usize> = HashMap::new();
            let mut tails: HashMap<(i64, i64), usize> = HashMap::new();
            for [h, t, r] in triples {
                *heads.entry((*r, *h)).or_default() += 1;
                *tails.entry((*r, *t)).or_default() += 1;
            }
            // Per relation: (triples, distinct heads) and (triples, distinct tails).
            let mut per_head = vec![(0usize, 0usize); relations];
            let mut per_tail = vec![(0usize, 0usize); relations];
            for (counts, per) in [(&heads, &mut per_head), (&tails, &mut per_tail)] {
                for ((r, _), n) in counts {
                    per[*r as usize].0 += n;
                    per[*r as usize].1 += 1;
                }
            }
            let mean = |(sum, distinct): (usize, usize)| sum as f64 / distinct.max(1) as f64;
            for (r, odds) in head_odds.iter_mut().enumerate() {
                let (tph, hpt) = (mean(per_head[r]), mean(per_tail[r]));
                if tph + hpt > 0.0 {
                    *odds = tph / (tph + hpt);
                }
            }
        }
        Self {
            entities,
            head_odds,
            known: triples.iter().copied().collect(),
        }
    }

    /// A corrupted copy of `triple`; gives up filtering after 64 draws (a hub entity).
    fn corrupt(&self, [h, t, r]: [i64; 3], rng: &mut ChaCha8Rng) -> [i64; 3] {
        let head = rng.gen_bool(self.head_odds[r as usize]);
        let mut candidate = [h, t, r];
        for _ in 0..64 {
            let e = rng.gen_range(0..self.entities);
            candidate = if head { [e, t, r] } else { [h, e, r] };
            if !self.known.contains(&candidate) {
                break;
            }
        }
        candidate
    }
}

impl TransE {
    /// Fresh Xavier-initialised tables.
    pub fn new(entities: i64, relations: i64, cfg: TransEConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Self {
            entities: xavier(entities, cfg.dim, &mut rng),
            relations: xavier(relations, cfg.dim, &mut rng),
            cfg,
        }
    }

    /// The table as scored: rows L2-normalised when configured.
    fn scored(&self, table: &Tensor) -> Tensor {
        if self.cfg.normalize {
            normalized(table)
        } else {
            table.shallow_clone()
        }
    }

    /// ‖h + r − t‖ for triples given as three id tensors into the two scored tables. (n) → (n)
    fn distance(
        &self,
        entities: &Tensor,
        relations: &Tensor,
        h: &Tensor,
        t: &Tensor,
        r: &Tensor,
    ) -> Tensor {
        let diff = entities.index_select(0, h) + relations.index_select(0, r)
            - entities.index_select(0, t);
        diff.norm_scalaropt_dim(f64::from(self.cfg.p_norm), [-1i64].as_slice(), false)
    }

    /// Trains on `triples`; `on_epoch(epoch, mean loss)` is called after each epoch.
    ///
    /// # Errors
    /// No triples.
    pub fn train(
        &mut self,
        triples: &[[i64; 3]],
        mut on_epoch: impl FnMut(usize, f64),
    ) -> anyhow::Result<()> {
        anyhow::ensure!(!triples.is_empty(), "transe: no triples to train on");
        let cfg = self.cfg.clone();
        let corrupter = Corrupter::new(
            triples,
            self.entities.size()[0],
            self.relations.size()[0] as usize,
            cfg.bernoulli,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1));
        let mut order: Vec<usize> = (0..triples.len()).collect();
        let batch = triples.len().div_ceil(cfg.batches);
        for epoch in 0..cfg.epochs {
            order.shuffle(&mut rng);
            let mut total = 0.0;
            let mut steps = 0;
            for chunk in order.chunks(batch) {
                // Positives first, then negative round k for every positive: (B + B·neg).
                let mut ids: Vec<[i64; 3]> = chunk.iter().map(|&i| triples[i]).collect();
                for _ in 0..cfg.negatives {
                    for &i in chunk {
                        ids.push(corrupter.corrupt(triples[i], &mut rng));
                    }
                }
                total += self.step(&ids, chunk.len() as i64);
                steps += 1;
            }
            on_epoch(epoch, total / steps as f64);
        }
        Ok(())
    }

    /// One SGD step on B positives followed by their negatives; returns the loss. Only the rows
    /// the batch touches are gathered, differentiated and updated: the same step as SGD on the
    /// whole tables (the other rows have zero gradient) at a fraction of the memory traffic.
    fn step(&mut self, ids: &[[i64; 3]], b: i64) -> f64 {
        let (entity_ids, ends) = compact(ids.iter().flat_map(|x| [x[0], x[1]]));
        let (relation_ids, rel) = compact(ids.iter().map(|x| x[2]));
        let (entity_ids, relation_ids) = (
            Tensor::from_slice(&entity_ids),
            Tensor::from_slice(&relation_ids),
        );
        let entities = self
            .entities
            .index_select(0, &entity_ids)
            .set_requires_grad(true);
        let relations = self
            .relations
            .index_select(0, &relation_ids)
            .set_requires_grad(true);
        let ends = Tensor::from_slice(&ends).view([-1, 2]);
        let d = self.distance(
            &self.scored(&entities),
            &self.scored(&relations),
            &ends.select(1, 0),
            &ends.select(1, 1),
            &Tensor::from_slice(&rel),
        );
        let positive = d.narrow(0, 0, b).unsqueeze(1); // (B, 1)
        let negative = d
            .narrow(0, b, d.size()[0] - b)
            .view([-1, b])
            .transpose(0, 1); // (B, neg)
        let margin = self.cfg.margin;
        let loss = (positive - negative).clamp_min(-margin).mean(Kind::Float) + margin;
        loss.backward();
        let lr = self.cfg.learning_rate;
        tch::no_grad(|| {
            let _ = self
                .entities
                .index_add_(0, &entity_ids, &(entities.grad() * -lr));
            let _ = self
                .relations
                .index_add_(0, &relation_ids, &(relations.grad() * -lr));
        });
        loss.double_value(&[])
    }

    /// Filtered link prediction on `test`: for each triple, the rank of the true tail among all
    /// entities given (h, r), and of the true head given (r, t), not counting other triples of
    /// `known` that rank above it.
    pub fn evaluate(&self, test: &[[i64; 3]], known: &HashSet<[i64; 3]>) -> LinkMetrics {
        let (entities, relations) = (self.scored(&self.entities), self.scored(&self.relations));
        let p = f64::from(self.cfg.p_norm);
        let mut reciprocal = 0.0;
        let mut hits = 0usize;
        for chunk in test.chunks(64) {
            let column =
                |c: usize| Tensor::from_slice(&chunk.iter().map(|x| x[c]).collect::<Vec<_>>());
            let (h, t, r) = (
                entities.index_select(0, &column(0)),
                entities.index_select(0, &column(1)),
                relations.index_select(0, &column(2)),
            );
            // ‖h + r − e‖ for every tail e, ‖e + r − t‖ = ‖e − (t − r)‖ for every head e.
            let tails = Tensor::cdist(&(h + &r).unsqueeze(0), &entities.unsqueeze(0), p, None);
            let heads = Tensor::cdist(&(t - &r).unsqueeze(0), &entities.unsqueeze(0), p, None);
            let tails = Vec::<Vec<f32>>::try_from(tails.squeeze_dim(0)).unwrap_or_default();
            let heads = Vec::<Vec<f32>>::try_from(heads.squeeze_dim(0)).unwrap_or_default();
            for (k, &[h, t, r]) in chunk.iter().enumerate() {
                let tail_rank = filtered_rank(&tails[k], t, |e| known.contains(&[h, e, r]));
                let head_rank = filtered_rank(&heads[k], h, |e| known.contains(&[e, t, r]));
                for rank in [tail_rank, head_rank] {
                    reciprocal += 1.0 / rank as f64;
                    hits += usize::from(rank <= 10);
                }
            }
        }
        let queries = 2 * test.len();
        LinkMetrics {
            mrr: reciprocal / queries.max(1) as f64,
            hits_at_10: hits as f64 / queries.max(1) as f64,
            queries,
        }
    }

    /// Writes the tables as safetensors under OpenKE's state-dict names
    /// (`ent_embeddings.weight`, `rel_embeddings.weight`), unnormalised as ARL stores them.
    ///
    /// # Errors
    /// The file cannot be written (named).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let (e, r) = (self.entities.detach(), self.relations.detach());
        Tensor::write_safetensors(
            &[("ent_embeddings.weight", &e), ("rel_embeddings.weight", &r)],
            path,
        )
        .with_context(|| format!("writing {}", path.display()))
    }
}

/// `x / max(‖x‖₂, 1e-12)` along the last dimension (`F.normalize`).
fn normalized(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
        .clamp_min(1e-12)
}

/// 1 + the number of entities closer than `answer` that are not known true answers.
fn filtered_rank(distances: &[f32], answer: i64, is_known: impl Fn(i64) -> bool) -> usize {
    let target = distances[answer as usize];
    1 + distances
        .iter()
        .enumerate()
        .filter(|(e, d)| **d < target && !is_known(*e as i64))
        .count()
}

/// Splits off about `fraction` of the distinct triples as a test set, keeping every test
/// triple's head and tail in at least one training triple (so they have trained embeddings).
/// All copies of a duplicated triple go to the same side.
pub fn split_holdout(
    triples: &[[i64; 3]],
    fraction: f64,
    seed: u64,
) -> (Vec<[i64; 3]>, Vec<[i64; 3]>) {
    let mut copies: HashMap<[i64; 3], usize> = HashMap::new();
    let mut distinct = Vec::new();
    let mut degree: HashMap<i64, usize> = HashMap::new();
    for &triple in triples {
        let n = copies.entry(triple).or_default();
        if *n == 0 {
            distinct.push(triple);
        }
        *n += 1;
        *degree.entry(triple[0]).or_default() += 1;
        *degree.entry(triple[1]).or_default() += 1;
    }
    let wanted = (distinct.len() as f64 * fraction).round() as usize;
    distinct.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut test = HashSet::new();
    for &[h, t, r] in &distinct {
        if test.len() == wanted {
            break;
        }
        let n = copies[&[h, t, r]];
        if h != t && degree[&h] > n && degree[&t] > n {
            for e in [h, t] {
                degree.entry(e).and_modify(|d| *d -= n);
            }
            test.insert([h, t, r]);
        }
    }
    let train = triples
        .iter()
        .filter(|x| !test.contains(*x))
        .copied()
        .collect();
    let mut test: Vec<[i64; 3]> = test.into_iter().collect();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `groups` parents (ids 0..groups), each with `size` children that are `is_a` (relation 0)
    /// their parent and `sibling_of` (relation 1) the next child of the group, in a cycle.
    fn families(groups: i64, size: i64) -> Vec<[i64; 3]> {
        let mut triples = Vec::new();
        for g in 0..groups {
            let child = |k: i64| groups + g * size + k % size;
            for k in 0..size {
                triples.push([child(k), g, 0]);
                triples.push([child(k), child(k + 1), 1]);
            }
        }
        triples
    }

    fn small() -> TransEConfig {
        TransEConfig {
            dim: 16,
            epochs: 200,
            batches: 4,
            negatives: 4,
            learning_rate: 0.5,
            margin: 1.0,
            ..TransEConfig::default()
        }
    }

    #[test]
    fn training_beats_the_untrained_tables_and_a_seed_fixes_the_result() {
        let triples = families(4, 6);
        let (train, test) = split_holdout(&triples, 0.2, 3);
        assert_eq!(train.len() + test.len(), triples.len());
        let known: HashSet<[i64; 3]> = triples.iter().copied().collect();
        let run = || {
            let mut model = TransE::new(28, 2, small());
            let before = model.evaluate(&test, &known);
            let mut losses = Vec::new();
            model.train(&train, |_, loss| losses.push(loss)).unwrap();
            (
                before,
                model.evaluate(&test, &known),
                losses,
                model.entities.detach(),
            )
        };
        let (before, after, losses, table) = run();
        assert!(losses.last() < losses.first(), "{losses:?}");
        assert!(after.mrr > 2.0 * before.mrr, "{before:?} -> {after:?}");
        assert_eq!(after.queries, 2 * test.len());
        let (_, again, losses_again, table_again) = run();
        assert_eq!((after, losses), (again, losses_again));
        assert!(table.equal(&table_again), "same seed, same bits");
    }

    #[test]
    fn the_holdout_keeps_every_test_entity_in_training() {
        let mut triples = families(5, 10);
        triples.push(triples[0]); // a duplicate goes wherever its twin goes
        let (train, test) = split_holdout(&triples, 0.1, 7);
        assert_eq!(test.len(), 10, "a tenth of the 100 distinct triples");
        for [h, t, _] in &test {
            assert!(train.iter().any(|x| x[0] == *h || x[1] == *h));
            assert!(train.iter().any(|x| x[0] == *t || x[1] == *t));
        }
        for x in &test {
            assert!(!train.contains(x), "{x:?} on both sides");
        }
        assert_ne!(
            split_holdout(&triples, 0.1, 8).1,
            test,
            "the seed picks the split"
        );
    }

    #[test]
    fn ranks_skip_known_answers_and_the_corrupter_avoids_true_triples() {
        assert_eq!(filtered_rank(&[0.5, 0.1, 0.3, 0.9], 0, |_| false), 3);
        assert_eq!(filtered_rank(&[0.5, 0.1, 0.3, 0.9], 0, |e| e == 1), 2);
        let triples = [[0, 1, 0], [0, 2, 0], [3, 1, 0]];
        let corrupter = Corrupter::new(&triples, 5, 1, true);
        // tails per head 1.5, heads per tail 1.5: even odds.
        assert!((corrupter.head_odds[0] - 0.5).abs() < 1e-12);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..200 {
            let c = corrupter.corrupt([0, 1, 0], &mut rng);
            assert!(!triples.contains(&c), "{c:?}");
        }
    }
}
