//! What makes a sample usable by the model, checked before it reaches a batch: its text is there
//! and tokenises within the model's positions, its mentions lie inside its text, its entity ids
//! exist, and its labels are in range of the task's head. A failure is that sample's error (the
//! loader counts and names it); it never reaches an embedding lookup or a loss as an index out
//! of range.

use anyhow::{Context, bail, ensure};

use super::labels::Labels;
use super::stream::Sample;
use super::text::TextTokenizer;

/// The labels a task reads, and how many ids its head has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelRange {
    /// Labels are not read (pretraining, retrieval).
    Unused,
    /// One class id per text, below this count.
    Classes(i64),
    /// VQA answer ids, below this count.
    Answers(i64),
}

/// The checks of one job's samples.
#[derive(Debug, Clone)]
pub struct SampleCheck {
    /// The job's tokenizer (fixed length).
    pub tokenizer: TextTokenizer,
    /// The text tower's positions.
    pub positions: usize,
    /// Entity ids a row may use (`0..entity_ids`): the knowledge vocabulary's size, or the
    /// length of the dataset's own CUI table.
    pub entity_ids: i64,
    /// The labels the task reads.
    pub labels: LabelRange,
}

impl SampleCheck {
    /// Checks `sample`.
    ///
    /// # Errors
    /// What is wrong with it; the caller adds where the sample is.
    pub fn check(&self, sample: &Sample) -> anyhow::Result<()> {
        let row = &sample.row;
        let text = row.captions.get(sample.text).with_context(|| {
            format!(
                "no text {} (the row has {})",
                sample.text,
                row.captions.len()
            )
        })?;
        let tokens = self.tokenizer.encode(text)?;
        ensure!(
            tokens.ids.len() <= self.positions,
            "{} tokens, more than the model's {} positions",
            tokens.ids.len(),
            self.positions
        );
        let chars = text.chars().count() as i64;
        for &[start, end, id] in row.txt_ents.get(sample.text).map_or(&[][..], Vec::as_slice) {
            ensure!(
                0 <= start && start < end && end <= chars,
                "mention [{start}, {end}) lies outside its text of {chars} characters"
            );
            self.entity(id, "a mention")?;
        }
        for &id in &row.img_ents {
            self.entity(id, "the image")?;
        }
        self.labels(sample)
    }

    fn entity(&self, id: i64, of: &str) -> anyhow::Result<()> {
        ensure!(
            (0..self.entity_ids).contains(&id),
            "entity id {id} of {of} is outside the {} entity ids",
            self.entity_ids
        );
        Ok(())
    }

    fn labels(&self, sample: &Sample) -> anyhow::Result<()> {
        let t = sample.text;
        match (self.labels, &sample.row.labels) {
            (LabelRange::Unused, _) => Ok(()),
            (LabelRange::Classes(classes), Labels::Class(ids)) => {
                let id = *ids
                    .get(t)
                    .with_context(|| format!("no class for text {t}"))?;
                ensure!(
                    (0..classes).contains(&id),
                    "class id {id} is outside the {classes} classes"
                );
                Ok(())
            }
            (LabelRange::Answers(answers), Labels::Vqa(questions)) => {
                let question = questions
                    .get(t)
                    .with_context(|| format!("no answer for question {t}"))?;
                ensure!(
                    question.labels.len() == question.scores.len(),
                    "{} answer ids but {} scores",
                    question.labels.len(),
                    question.scores.len()
                );
                for (&id, &score) in question.labels.iter().zip(&question.scores) {
                    ensure!(
                        (0..answers).contains(&id),
                        "answer id {id} is outside the {answers} answers"
                    );
                    ensure!(score.is_finite(), "answer {id} has score {score}");
                }
                Ok(())
            }
            (expected, labels) => bail!(
                "the task reads {expected:?} labels, the row has {:?} ones",
                labels.kind()
            ),
        }
    }
}
