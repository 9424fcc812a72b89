//! The fine-tuning model: ARL with a task head, and one fusion pass per (image, text) pair with
//! unmasked text and entity inputs (ARL_SPEC.md §5.5). Heads: `vqa_head` and `cls_head`
//! (Linear, LayerNorm, GELU, Linear on the pooled pair), `irtr_head` (a match score, from ITM
//! row 1).

use anyhow::{Context, ensure};
use tch::{Device, Kind, Tensor, nn};

use crate::data::labels::Labels;
use crate::data::stream::Sample;
use crate::data::text::TextTokenizer;
use crate::knowledge::inputs::EntityInputs;
use crate::model::align::AlignHead;
use crate::model::arl::ArlModel;
use crate::model::heads::{ClassifierHead, RetrievalHead};
use crate::train::collate::{EntityMap, tokenize_sample};
use arl_contract::config::finetune::Task;

/// Pretraining heads that fine-tuning does not use; they are frozen (the reference does not
/// build them, and keeps the ITM head it copies the retrieval head from frozen).
pub const UNUSED_HEADS: [&str; 3] = ["mlm_head.", "mim_head.", "itm_head."];

/// The task's head.
#[derive(Debug)]
pub enum Head {
    /// VQA answers or classes.
    Classifier(ClassifierHead),
    /// One match score per pair.
    Retrieval(RetrievalHead),
}

impl Head {
    /// Builds the head of `task` with `outputs` classes under `vs` (`vqa_head`, `cls_head` or
    /// `irtr_head`); the retrieval head starts as `model`'s ITM match row.
    pub fn new(vs: &nn::Path, task: Task, model: &ArlModel, hidden: i64, outputs: i64) -> Self {
        let path = vs / task.head();
        match task {
            Task::Vqa | Task::Cls => Self::Classifier(ClassifierHead::new(path, hidden, outputs)),
            Task::Irtr => Self::Retrieval(RetrievalHead::from_itm(path, hidden, &model.itm_head)),
        }
    }

    /// Pooled pairs (N, 2D) → logits (N, classes) or scores (N, 1).
    pub fn forward(&self, pooled: &Tensor) -> Tensor {
        match self {
            Self::Classifier(head) => head.forward(pooled),
            Self::Retrieval(head) => pooled.apply(&head.fc),
        }
    }
}

/// Tokenised texts with their entity slots.
#[derive(Debug)]
pub struct Texts {
    /// Token ids (N, Lt).
    pub ids: Tensor,
    /// Attention (N, Lt).
    pub keep: Tensor,
    /// Entity id per slot (N, S), −100 empty.
    pub entity_ids: Tensor,
    /// Mention positions (N, S, Lt).
    pub positions: Tensor,
}

impl Texts {
    /// The texts of `samples`, in order.
    ///
    /// # Errors
    /// A sample without its text, or a text the tokenizer rejects (named).
    pub fn encode(
        tokenizer: &TextTokenizer,
        map: &EntityMap,
        samples: &[&Sample],
    ) -> anyhow::Result<Self> {
        ensure!(!samples.is_empty(), "no texts to encode");
        let mut ids = Vec::new();
        let mut keep = Vec::new();
        let mut entity_ids = Vec::new();
        let mut positions = Vec::new();
        for sample in samples {
            let (tokens, mentions) = tokenize_sample(tokenizer, map, sample)?;
            let entities = EntityInputs::new(&mentions, tokens.ids.len());
            ids.push(Tensor::from_slice(&tokens.ids));
            keep.push(Tensor::from_slice(&tokens.attention));
            entity_ids.push(entities.ent_ids);
            positions.push(entities.pos_matrix);
        }
        Ok(Self {
            ids: Tensor::stack(&ids, 0),
            keep: Tensor::stack(&keep, 0),
            entity_ids: Tensor::stack(&entity_ids, 0),
            positions: Tensor::stack(&positions, 0),
        })
    }

    /// Texts `from..from + len`.
    pub fn narrow(&self, from: i64, len: i64) -> Self {
        Self {
            ids: self.ids.narrow(0, from, len),
            keep: self.keep.narrow(0, from, len),
            entity_ids: self.entity_ids.narrow(0, from, len),
            positions: self.positions.narrow(0, from, len),
        }
    }

    /// On `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            ids: self.ids.to_device(device),
            keep: self.keep.to_device(device),
            entity_ids: self.entity_ids.to_device(device),
            positions: self.positions.to_device(device),
        }
    }
}

/// ARL with a task head.
#[derive(Debug)]
pub struct TaskModel {
    /// The encoders and the fusion module.
    pub model: ArlModel,
    /// The head.
    pub head: Head,
}

impl TaskModel {
    /// Images (B, 3, S, S) → projected image tokens (B, Nv, D).
    pub fn encode_images(&self, images: &Tensor) -> Tensor {
        self.model.embed_image(&self.model.vision.forward(images))
    }

    /// Texts → projected text tokens (N, Lt, D).
    pub fn encode_texts(&self, texts: &Texts, train: bool) -> Tensor {
        self.model.embed_text(&texts.ids, &texts.keep, train)
    }

    /// The head's output for N pairs of encoded texts (N, Lt, D) and images (N, Nv, D), with
    /// the entity vectors (Ne, De) of the graph.
    ///
    /// # Errors
    /// Autocast cannot be switched off for the head.
    pub fn pairs(
        &self,
        texts: &Texts,
        text: &Tensor,
        image: &Tensor,
        vectors: &Tensor,
        train: bool,
    ) -> anyhow::Result<Tensor> {
        let fused = self.model.fuse(
            text,
            &texts.keep,
            image,
            &AlignHead::gather(vectors, &texts.entity_ids),
            &texts.entity_ids,
            &texts.positions,
            train,
        );
        // The head in float32 even under autocast: near-equal scores should not collapse into
        // ties at bfloat16's resolution (ties count against the gold in retrieval).
        let pooled = fused.cls_feats.to_kind(Kind::Float);
        Ok(arl_c10d::autocast_bf16(pooled.device(), false, || {
            self.head.forward(&pooled)
        })?)
    }
}

/// The training targets of a batch.
#[derive(Debug)]
pub enum Targets {
    /// Answer scores (B, answers).
    Vqa(Tensor),
    /// Class ids (B).
    Cls(Tensor),
    /// Retrieval: the positive is column 0 of each image's candidates.
    Irtr,
}

impl Targets {
    /// The targets of `samples` for `task` with `outputs` classes.
    ///
    /// # Errors
    /// A sample without the task's labels (named).
    pub fn of(task: Task, samples: &[Sample], outputs: i64) -> anyhow::Result<Self> {
        match task {
            Task::Vqa => {
                let rows = samples
                    .iter()
                    .map(|s| {
                        let mut row = vec![0f32; outputs as usize];
                        for (class, score) in vqa_target(s)? {
                            let cell = row.get_mut(class as usize).with_context(|| {
                                format!("{:?}: answer id {class} of {outputs}", s.row.image_id)
                            })?;
                            *cell = score as f32;
                        }
                        Ok(Tensor::from_slice(&row))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Self::Vqa(Tensor::stack(&rows, 0)))
            }
            Task::Cls => {
                let labels = samples
                    .iter()
                    .map(class_label)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Self::Cls(Tensor::from_slice(&labels)))
            }
            Task::Irtr => Ok(Self::Irtr),
        }
    }

    /// The loss of `outputs` (B, classes), or retrieval scores (B·(1+K), 1) with each image's
    /// positive first. VQA: BCE-with-logits, mean over B×C, times C (the reference's scale).
    pub fn loss(&self, outputs: &Tensor, candidates: i64) -> Tensor {
        match self {
            Self::Vqa(scores) => {
                let classes = outputs.size()[1] as f64;
                outputs.binary_cross_entropy_with_logits::<Tensor>(
                    &scores.to_device(outputs.device()),
                    None,
                    None,
                    tch::Reduction::Mean,
                ) * classes
            }
            Self::Cls(labels) => {
                outputs.cross_entropy_for_logits(&labels.to_device(outputs.device()))
            }
            Self::Irtr => {
                let scores = outputs.view([-1, candidates]);
                let positives = Tensor::zeros([scores.size()[0]], (Kind::Int64, scores.device()));
                scores.cross_entropy_for_logits(&positives)
            }
        }
    }
}

/// The (answer id, score) pairs of a VQA sample's question.
///
/// # Errors
/// The row has no VQA labels for the text (named).
pub fn vqa_target(sample: &Sample) -> anyhow::Result<Vec<(i64, f64)>> {
    match &sample.row.labels {
        Labels::Vqa(answers) => {
            let label = answers.get(sample.text).with_context(|| {
                format!(
                    "{:?} has no answer for question {}",
                    sample.row.image_id, sample.text
                )
            })?;
            Ok(label
                .labels
                .iter()
                .copied()
                .zip(label.scores.iter().copied())
                .collect())
        }
        _ => anyhow::bail!("{:?} is not a VQA row", sample.row.image_id),
    }
}

/// The answer type (0 closed, 1 open) of a VQA sample's question.
///
/// # Errors
/// The row has no VQA labels for the text (named).
pub fn answer_type(sample: &Sample) -> anyhow::Result<i64> {
    match &sample.row.labels {
        Labels::Vqa(answers) => answers
            .get(sample.text)
            .map(|a| a.answer_type)
            .with_context(|| format!("{:?}: no question {}", sample.row.image_id, sample.text)),
        _ => anyhow::bail!("{:?} is not a VQA row", sample.row.image_id),
    }
}

/// The class of a classification sample's text.
///
/// # Errors
/// The row has no class for the text (named).
pub fn class_label(sample: &Sample) -> anyhow::Result<i64> {
    match &sample.row.labels {
        Labels::Class(classes) => classes.get(sample.text).copied().with_context(|| {
            format!(
                "{:?} has no class for text {}",
                sample.row.image_id, sample.text
            )
        }),
        _ => anyhow::bail!("{:?} is not a classification row", sample.row.image_id),
    }
}
