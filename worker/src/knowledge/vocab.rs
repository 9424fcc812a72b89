//! The entity vocabulary and knowledge subgraph of ARL_SPEC.md §2.2: CUIs mentioned more than a
//! threshold in the corpus, the triples between them, and ids by frequency in those triples.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::graph::Triple;

/// One entity of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entity {
    /// UMLS CUI.
    pub cui: String,
    /// Canonical name (empty when unknown).
    pub name: String,
}

/// The knowledge graph the model uses: entities and relations by id, and triples of ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnowledgeGraph {
    /// Entities; the index is the id.
    pub entities: Vec<Entity>,
    /// Relation names; the index is the id.
    pub relations: Vec<String>,
    /// `(head, tail, relation)` ids, duplicates kept (OpenKE order).
    pub triples: Vec<[i64; 3]>,
}

/// Mention counts per CUI over a corpus (mentions, not documents).
pub fn count_mentions<'a>(cuis: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for cui in cuis {
        *counts.entry(cui.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// CUIs counted more than `min_count` times.
pub fn frequent(counts: &BTreeMap<String, u64>, min_count: u64) -> HashSet<String> {
    counts
        .iter()
        .filter(|(_, n)| **n > min_count)
        .map(|(cui, _)| cui.clone())
        .collect()
}

/// Keys ordered by descending count, ties by descending key.
fn by_frequency<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    let mut ordered: Vec<(&str, u64)> = counts.into_iter().collect();
    ordered.sort_unstable_by(|a, b| (b.1, b.0).cmp(&(a.1, a.0)));
    ordered.into_iter().map(|(key, _)| key).collect()
}

impl KnowledgeGraph {
    /// The subgraph of `triples` whose head and tail are both in `keep`. Entities are the CUIs of
    /// the kept triples (a kept CUI without a triple is dropped), numbered by descending number of
    /// occurrences in the kept triples, ties by descending CUI; relations likewise.
    pub fn extract(
        triples: &[Triple],
        keep: &HashSet<String>,
        names: &HashMap<String, String>,
    ) -> Self {
        let kept: Vec<&Triple> = triples
            .iter()
            .filter(|t| keep.contains(&t.head) && keep.contains(&t.tail))
            .collect();
        let entities = by_frequency(kept.iter().flat_map(|t| [t.head.as_str(), t.tail.as_str()]));
        let relations = by_frequency(kept.iter().map(|t| t.relation.as_str()));
        let index = |keys: &[&str]| -> HashMap<String, i64> {
            keys.iter()
                .enumerate()
                .map(|(i, k)| ((*k).to_owned(), i as i64))
                .collect()
        };
        let (entity_id, relation_id) = (index(&entities), index(&relations));
        Self {
            triples: kept
                .iter()
                .map(|t| {
                    [
                        entity_id[&t.head],
                        entity_id[&t.tail],
                        relation_id[&t.relation],
                    ]
                })
                .collect(),
            entities: entities
                .iter()
                .map(|cui| Entity {
                    cui: (*cui).to_owned(),
                    name: names.get(*cui).cloned().unwrap_or_default(),
                })
                .collect(),
            relations: relations.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    /// Entity id of each CUI.
    pub fn entity_ids(&self) -> HashMap<&str, i64> {
        self.entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.cui.as_str(), i as i64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(h: &str, t: &str, r: &str) -> Triple {
        Triple {
            head: h.into(),
            tail: t.into(),
            relation: r.into(),
        }
    }

    #[test]
    fn frequent_cuis_bound_the_subgraph_and_ids_follow_triple_frequency() {
        let mentions = [
            "C1", "C1", "C1", "C2", "C2", "C2", "C3", "C3", "C3", "C4", "C9",
        ];
        let counts = count_mentions(mentions);
        assert_eq!(counts["C1"], 3);
        let keep = frequent(&counts, 2);
        assert_eq!(keep.len(), 3, "C4 and C9 are at or under the threshold");
        let triples = [
            triple("C1", "C2", "isa"),
            triple("C3", "C2", "isa"),
            triple("C3", "C2", "isa"),
            triple("C1", "C4", "isa"),
            triple("C2", "C1", "part_of"),
        ];
        let names = HashMap::from([("C2".to_owned(), "Two".to_owned())]);
        let graph = KnowledgeGraph::extract(&triples, &keep, &names);
        // Occurrences in kept triples: C2 4, C3 2, C1 2 (tie: C3 > C1 descending).
        let cuis: Vec<&str> = graph.entities.iter().map(|e| e.cui.as_str()).collect();
        assert_eq!(cuis, ["C2", "C3", "C1"]);
        assert_eq!(graph.entities[0].name, "Two");
        assert_eq!(graph.relations, ["isa", "part_of"]);
        assert_eq!(graph.triples, [[2, 0, 0], [1, 0, 0], [1, 0, 0], [0, 2, 1]]);
        assert_eq!(graph.entity_ids()["C1"], 2);
    }
}
