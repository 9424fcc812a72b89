//! The report of a scene: a findings section (each present finding in one of several wordings,
//! with its side, size or lobe, and the negation of some absent ones) and an impression. The
//! wordings are HPO names and synonyms where HPO has them, so paraphrases link to one CUI
//! ("cardiomegaly", "enlarged heart", "increased heart size" → C0018800). HPO gives pulmonary
//! nodules no UMLS CUI: their mentions link to the term's own id, HP:0033608.

use rand::Rng;
use rand::seq::SliceRandom;

use super::scene::{Lobe, Scene, Side};

/// A scene's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// FINDINGS section.
    pub findings: String,
    /// IMPRESSION section.
    pub impression: String,
}

fn pick<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options[rng.gen_range(0..options.len())]
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

fn lobe_phrase(lobe: Lobe) -> String {
    format!("the {}", lobe.words())
}

/// Sentences for the present findings, each `(finding, sentence)`.
fn present(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let mut out = Vec::new();
    if scene.cardiomegaly {
        out.push(match rng.gen_range(0..4) {
            0 => "Cardiomegaly.".to_owned(),
            1 => "The heart is enlarged; enlarged heart.".to_owned(),
            2 => "Increased heart size.".to_owned(),
            _ => "Stable cardiomegaly with enlarged heart.".to_owned(),
        });
    }
    if let Some((side, size)) = scene.effusion {
        let noun = pick(rng, &["pleural effusion", "fluid around lungs"]);
        out.push(match side {
            Side::Bilateral => format!("{} bilateral {noun}.", capitalise(size.word())),
            one => format!("{} {} {noun}.", capitalise(size.word()), one.word()),
        });
    }
    if let Some(side) = scene.pneumothorax {
        out.push(match rng.gen_range(0..3) {
            0 => format!("{} pneumothorax.", capitalise(side.word())),
            1 => format!("There is a {} pneumothorax.", side.word()),
            _ => format!("Collapsed lung on the {} with pneumothorax.", side.word()),
        });
    }
    match scene.nodules.as_slice() {
        [] => {}
        [one] => out.push(format!(
            "A {} mm pulmonary nodule in {}.",
            one.size_mm,
            lobe_phrase(one.lobe)
        )),
        many => out.push(format!(
            "{} pulmonary nodules, the largest {} mm.",
            ["Two", "Three"][many.len().min(3) - 2],
            many.iter().map(|n| n.size_mm).max().unwrap_or(0)
        )),
    }
    if let Some(lobe) = scene.atelectasis {
        let noun = pick(rng, &["atelectasis", "pulmonary atelectasis"]);
        out.push(format!(
            "{} {noun} in {}.",
            capitalise(pick(rng, &["plate-like", "linear", "subsegmental"])),
            lobe_phrase(lobe)
        ));
    }
    if scene.edema {
        out.push(
            pick(
                rng,
                &[
                    "Pulmonary edema.",
                    "Perihilar haziness consistent with pulmonary edema.",
                    "Lung edema with vascular congestion.",
                    "Findings of excess fluid in lungs.",
                ],
            )
            .to_owned(),
        );
    }
    if let Some(lobe) = scene.consolidation {
        let noun = pick(
            rng,
            &["pulmonary infiltrates", "lung infiltrates", "pneumonia"],
        );
        out.push(format!(
            "Patchy opacity in {} compatible with {noun}.",
            lobe_phrase(lobe)
        ));
    }
    out
}

/// Negations of absent findings.
fn absent(scene: &Scene) -> Vec<&'static str> {
    let mut out = Vec::new();
    if scene.pneumothorax.is_none() {
        out.push("No pneumothorax.");
    }
    if scene.effusion.is_none() {
        out.push("No pleural effusion.");
    }
    if scene.consolidation.is_none() {
        out.push("No focal consolidation or pneumonia.");
    }
    if !scene.edema {
        out.push("No pulmonary edema.");
    }
    if !scene.cardiomegaly {
        out.push("Heart size is normal, without cardiomegaly.");
    }
    out
}

impl Report {
    /// Writes the report of `scene`.
    pub fn write(scene: &Scene, rng: &mut impl Rng) -> Self {
        let found = present(scene, rng);
        let mut negated = absent(scene);
        negated.shuffle(rng);
        negated.truncate(rng.gen_range(1..=3));
        let mut sentences = found.clone();
        sentences.extend(negated.iter().map(|s| (*s).to_owned()));
        let findings = sentences.join(" ");
        let impression = if found.is_empty() {
            pick(
                rng,
                &[
                    "No acute cardiopulmonary process.",
                    "Normal chest radiograph.",
                    "No acute findings in the chest.",
                ],
            )
            .to_owned()
        } else {
            found[..found.len().min(2)].join(" ")
        };
        Self {
            findings,
            impression,
        }
    }
}
