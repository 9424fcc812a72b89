//! Entity mentions of a dataset's texts, as ARL stores them (ARL_SPEC.md §2.1, §4.1): per text
//! `[start_char, end_char, entity_id]`, per image the ids of all its mentions. The ids index the
//! dataset's own CUI table (kept in its manifest), so a dataset is linked once and can be used
//! with any knowledge vocabulary.

use std::collections::HashMap;

use crate::knowledge::linker::Linker;

/// Names numbered in first-seen order (entity CUIs, VQA answers).
#[derive(Debug, Default, Clone)]
pub struct Numbering {
    names: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Numbering {
    /// The id of `name`, added when new.
    pub fn id(&mut self, name: &str) -> i64 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as i64;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The names by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// The dataset's entities: id → CUI, in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct EntityTable {
    cuis: Numbering,
}

/// A row's mentions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowEntities {
    /// Ids of every mention of the row's texts, sorted, without repeats (as ARL's
    /// `sorted(set(...))`).
    pub img_ents: Vec<i64>,
    /// Per text, its mentions.
    pub txt_ents: Vec<Vec<[i64; 3]>>,
}

impl EntityTable {
    /// The id of `cui`, added when new.
    pub fn id(&mut self, cui: &str) -> i64 {
        self.cuis.id(cui)
    }

    /// The CUIs by id.
    pub fn cuis(&self) -> &[String] {
        self.cuis.names()
    }

    /// Links every text of a row (negated mentions included, as ARL keeps them).
    pub fn annotate(&mut self, linker: &Linker, texts: &[String]) -> RowEntities {
        let mut row = RowEntities::default();
        for text in texts {
            let mentions: Vec<[i64; 3]> = linker
                .link(text)
                .into_iter()
                .map(|m| [m.start_char as i64, m.end_char as i64, self.id(&m.cui)])
                .collect();
            row.img_ents.extend(mentions.iter().map(|m| m[2]));
            row.txt_ents.push(mentions);
        }
        row.img_ents.sort_unstable();
        row.img_ents.dedup();
        row
    }
}
