//! The knowledge graph in OpenKE's text layout, as ARL writes it to `data/knowledge/`: each file
//! starts with its row count; `entity2id.txt` rows are `CUI<TAB>id<TAB>name` (OpenKE's own
//! `name<TAB>id` also reads), `relation2id.txt` rows `relation<TAB>id`, `train2id.txt` rows
//! `head tail relation` (tab- or space-separated).

use std::path::Path;

use anyhow::Context;

use super::vocab::{Entity, KnowledgeGraph};
use super::{ParseError, read_text};

/// File names of the layout.
pub const ENTITY_FILE: &str = "entity2id.txt";
/// See [`ENTITY_FILE`].
pub const RELATION_FILE: &str = "relation2id.txt";
/// See [`ENTITY_FILE`].
pub const TRIPLE_FILE: &str = "train2id.txt";

/// Writes the three files into `dir` (created if missing).
///
/// # Errors
/// A file cannot be written (named).
pub fn write(graph: &KnowledgeGraph, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entities = format!("{}\n", graph.entities.len());
    for (id, e) in graph.entities.iter().enumerate() {
        entities.push_str(&format!("{}\t{id}\t{}\n", e.cui, e.name));
    }
    let mut relations = format!("{}\n", graph.relations.len());
    for (id, r) in graph.relations.iter().enumerate() {
        relations.push_str(&format!("{r}\t{id}\n"));
    }
    let mut triples = format!("{}\n", graph.triples.len());
    for [h, t, r] in &graph.triples {
        triples.push_str(&format!("{h}\t{t}\t{r}\n"));
    }
    for (name, text) in [
        (ENTITY_FILE, entities),
        (RELATION_FILE, relations),
        (TRIPLE_FILE, triples),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads the three files from `dir`.
///
/// # Errors
/// A missing file, a count that disagrees with the rows, ids that are not exactly `0..count`, or
/// a triple naming an entity or relation that does not exist (file and line named).
pub fn read(dir: &Path) -> anyhow::Result<KnowledgeGraph> {
    let entities = read_table(&dir.join(ENTITY_FILE))?
        .into_iter()
        .map(|mut f| Entity {
            cui: std::mem::take(&mut f[0]),
            name: f.get(2).cloned().unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    let relations: Vec<String> = read_table(&dir.join(RELATION_FILE))?
        .into_iter()
        .map(|mut f| std::mem::take(&mut f[0]))
        .collect();
    let path = dir.join(TRIPLE_FILE);
    let text = read_text(&path)?;
    let (ne, nr) = (entities.len() as i64, relations.len() as i64);
    let mut triples = Vec::new();
    for (line, row) in counted_rows(&text, &path)? {
        let bad = || ParseError::new(&path, line, format!("not three ids: {row:?}"));
        let ids: Vec<i64> = row
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [h, t, r] = ids[..] else {
            return Err(bad().into());
        };
        if !(0..ne).contains(&h) || !(0..ne).contains(&t) || !(0..nr).contains(&r) {
            let message = format!("ids ({h}, {t}, {r}) outside {ne} entities and {nr} relations");
            return Err(ParseError::new(&path, line, message).into());
        }
        triples.push([h, t, r]);
    }
    Ok(KnowledgeGraph {
        entities,
        relations,
        triples,
    })
}

/// The rows after the count line, with their 1-based line numbers; the count must match.
fn counted_rows<'a>(text: &'a str, path: &Path) -> Result<Vec<(usize, &'a str)>, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| ParseError::new(path, 1, "empty file (expected a count line)"))?;
    let count: usize = first
        .trim()
        .parse()
        .map_err(|_| ParseError::new(path, 1, format!("expected a count, got {first:?}")))?;
    let rows: Vec<(usize, &str)> = lines.map(|(i, l)| (i + 1, l)).collect();
    if rows.len() != count {
        let message = format!("count says {count} rows, file has {}", rows.len());
        return Err(ParseError::new(path, 1, message));
    }
    Ok(rows)
}

/// A table of tab-separated rows whose second field is the id, returned in id order; the ids
/// must be exactly `0..count`.
fn read_table(path: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let text = read_text(path)?;
    let rows = counted_rows(&text, path)?;
    let mut table: Vec<Option<Vec<String>>> = vec![None; rows.len()];
    for (line, row) in rows {
        let fields: Vec<String> = row.split('\t').map(str::to_owned).collect();
        let id = fields
            .get(1)
            .and_then(|id| id.trim().parse::<usize>().ok())
            .ok_or_else(|| ParseError::new(path, line, format!("no id in column 2: {row:?}")))?;
        match table.get_mut(id) {
            Some(slot @ None) => *slot = Some(fields),
            Some(Some(_)) => {
                return Err(ParseError::new(path, line, format!("id {id} repeated")).into());
            }
            None => {
                let message = format!("id {id} outside 0..{}", table.len());
                return Err(ParseError::new(path, line, message).into());
            }
        }
    }
    Ok(table.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> KnowledgeGraph {
        KnowledgeGraph {
            entities: vec![
                Entity {
                    cui: "C0018800".into(),
                    name: "Cardiomegaly".into(),
                },
                Entity {
                    cui: "C0018787".into(),
                    name: "Heart".into(),
                },
            ],
            relations: vec!["finding_site_of".into()],
            triples: vec![[1, 0, 0], [1, 0, 0]],
        }
    }

    #[test]
    fn the_layout_round_trips_with_counts_first() {
        let dir = std::env::temp_dir().join(format!("arl-openke-{}", std::process::id()));
        write(&graph(), &dir).unwrap();
        let text = std::fs::read_to_string(dir.join(ENTITY_FILE)).unwrap();
        assert_eq!(text, "2\nC0018800\t0\tCardiomegaly\nC0018787\t1\tHeart\n");
        assert_eq!(read(&dir).unwrap(), graph());
        std::fs::write(dir.join(TRIPLE_FILE), "2\n1 0 0\n0 5 0\n").unwrap();
        let error = read(&dir).unwrap_err().to_string();
        assert!(
            error.ends_with("train2id.txt:3: ids (0, 5, 0) outside 2 entities and 1 relations"),
            "{error}"
        );
        std::fs::write(dir.join(RELATION_FILE), "2\nisa\t0\n").unwrap();
        let error = read(&dir).unwrap_err().to_string();
        assert!(
            error.ends_with("relation2id.txt:1: count says 2 rows, file has 1"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
