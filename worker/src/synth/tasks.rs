//! The fine-tuning tasks drawn from a scene: VQA questions in ARL's style (closed yes/no on
//! presence, open questions on side, size, count, lobe and the primary finding) and the
//! classification label (the primary finding).

use rand::Rng;

use super::scene::{FINDINGS, Scene, Side};

/// One question with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The question.
    pub text: String,
    /// The answer, normalised (lower case, no articles or punctuation).
    pub answer: String,
    /// 0 closed (yes/no), 1 open.
    pub answer_type: i64,
}

fn presence_question(finding: &str) -> &'static str {
    match finding {
        "pneumothorax" => "Is there a pneumothorax?",
        "pleural effusion" => "Is there a pleural effusion?",
        "consolidation" => "Is there consolidation in the lungs?",
        "pulmonary edema" => "Is there pulmonary edema?",
        "cardiomegaly" => "Is the heart enlarged?",
        "atelectasis" => "Is there atelectasis?",
        _ => "Is there a pulmonary nodule?",
    }
}

fn open(text: &str, answer: impl Into<String>) -> Question {
    Question {
        text: text.to_owned(),
        answer: answer.into(),
        answer_type: 1,
    }
}

/// The questions about `scene`: two presence questions (one about a present finding when
/// there is one), then the open questions its findings allow.
pub fn questions(scene: &Scene, rng: &mut impl Rng) -> Vec<Question> {
    let findings = &FINDINGS[..FINDINGS.len() - 1];
    let present: Vec<&str> = findings.iter().copied().filter(|f| scene.has(f)).collect();
    let mut asked = Vec::new();
    if !present.is_empty() {
        asked.push(present[rng.gen_range(0..present.len())]);
    }
    while asked.len() < 2 {
        let f = findings[rng.gen_range(0..findings.len())];
        if !asked.contains(&f) {
            asked.push(f);
        }
    }
    let mut out: Vec<Question> = asked
        .into_iter()
        .map(|f| Question {
            text: presence_question(f).to_owned(),
            answer: if scene.has(f) { "yes" } else { "no" }.to_owned(),
            answer_type: 0,
        })
        .collect();
    if let Some((side, size)) = scene.effusion {
        out.push(open("Which side is the pleural effusion on?", side.word()));
        out.push(open("How large is the pleural effusion?", size.word()));
    }
    if let Some(side) = scene.pneumothorax {
        out.push(open("Which side is the pneumothorax on?", side.word()));
    }
    if !scene.nodules.is_empty() || rng.gen_bool(0.3) {
        out.push(open(
            "How many pulmonary nodules are there?",
            scene.nodules.len().to_string(),
        ));
    }
    if let [one] = scene.nodules.as_slice() {
        out.push(open(
            "In which lobe is the pulmonary nodule?",
            one.lobe.words(),
        ));
    }
    if let Some(lobe) = scene.consolidation {
        let side = if lobe.side == Side::Left {
            "left"
        } else {
            "right"
        };
        out.push(open("Which lung has consolidation?", side));
    }
    out.push(open(
        "What is the primary finding?",
        FINDINGS[scene.primary()],
    ));
    out
}

/// The indication line of the classification task: neutral about the finding, so the class
/// must come from the image.
pub fn indication(rng: &mut impl Rng) -> String {
    let symptoms = [
        "cough",
        "shortness of breath",
        "chest pain",
        "fever",
        "fatigue",
    ];
    let sex = if rng.gen_bool(0.5) { "man" } else { "woman" };
    format!(
        "Chest radiograph of a {}-year-old {sex} with {}.",
        rng.gen_range(20..90),
        symptoms[rng.gen_range(0..symptoms.len())]
    )
}
