//! What rank 0 says about each step: one JSON line on standard output (the launcher's progress
//! and `rank0.jsonl`) and the same numbers as TensorBoard scalars, plus a MIM reconstruction
//! image every `image_every` steps. A TensorBoard write that fails is reported once and ends
//! the TensorBoard log, not the run.

use std::path::Path;

use super::reconstruction::mim_strip;
use super::tensorboard::EventWriter;

/// The numbers of one optimiser step (rank means where a value is per rank).
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Steps done.
    pub step: u64,
    /// Total, MLM, MIM, ITM and alignment losses.
    pub losses: [f64; 5],
    /// MLM and ITM accuracy.
    pub accuracy: [f64; 2],
    /// Learning rate of each parameter group, by name.
    pub lr: Vec<(&'static str, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Samples per second over all ranks.
    pub samples_per_s: f64,
    /// Fraction of the step spent waiting for data.
    pub data_wait: f64,
}

const LOSS_NAMES: [&str; 5] = ["total", "mlm", "mim", "itm", "align"];

impl StepReport {
    /// The JSON line (keys `loss`, `mlm`, …, `lr` of the first group, `lr_<group>`).
    pub fn json(&self) -> serde_json::Value {
        let mut line = serde_json::json!({
            "step": self.step, "loss": self.losses[0], "mlm": self.losses[1],
            "mim": self.losses[2], "itm": self.losses[3], "align": self.losses[4],
            "mlm_accuracy": self.accuracy[0], "itm_accuracy": self.accuracy[1],
            "lr": self.lr.first().map_or(0.0, |(_, lr)| *lr),
            "grad_norm": self.grad_norm, "samples_per_s": self.samples_per_s,
            "data_wait": self.data_wait,
        });
        for (group, lr) in &self.lr {
            line[format!("lr_{group}")] = (*lr).into();
        }
        line
    }

    /// The TensorBoard scalars: `loss/*`, `accuracy/*`, `lr/*`, `grad_norm`, `throughput/*`.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut scalars: Vec<(String, f64)> = LOSS_NAMES
            .iter()
            .zip(self.losses)
            .map(|(name, value)| (format!("loss/{name}"), value))
            .collect();
        scalars.push(("accuracy/mlm".to_owned(), self.accuracy[0]));
        scalars.push(("accuracy/itm".to_owned(), self.accuracy[1]));
        scalars.extend(self.lr.iter().map(|(g, lr)| (format!("lr/{g}"), *lr)));
        scalars.push(("grad_norm".to_owned(), self.grad_norm));
        scalars.push(("throughput/samples_per_s".to_owned(), self.samples_per_s));
        scalars.push(("throughput/data_wait_fraction".to_owned(), self.data_wait));
        scalars
    }
}

/// The MIM pass of a step, for its picture.
pub struct MimPicture<'a> {
    /// The micro-batch's images (B, 3, S, S), CLIP-normalised.
    pub images: &'a tch::Tensor,
    /// Decoder output (B, g², P²·3).
    pub pred: &'a tch::Tensor,
    /// Removed patches (B, g²).
    pub mask: &'a tch::Tensor,
    /// Patch size.
    pub patch: i64,
}

/// Rank 0's step log: JSON lines, and TensorBoard when enabled.
pub struct Reporter {
    events: Option<EventWriter>,
    image_every: u64,
}

impl Reporter {
    /// Logs to standard output and, when `dir` is given, to event files there; `start` is the
    /// step the run starts from (a resume marks the next one, so that TensorBoard drops what
    /// the interrupted run logged from there on).
    ///
    /// # Errors
    /// The TensorBoard folder or file cannot be created (named).
    pub fn new(dir: Option<&Path>, start: u64, image_every: u64) -> anyhow::Result<Self> {
        let events = match dir {
            Some(dir) => Some(EventWriter::create(dir, (start > 0).then_some(start + 1))?),
            None => None,
        };
        Ok(Self {
            events,
            image_every,
        })
    }

    /// Whether step `step` (counted from 1) gets a reconstruction image.
    pub fn wants_image(&self, step: u64) -> bool {
        self.events.is_some() && self.image_every > 0 && step.is_multiple_of(self.image_every)
    }

    /// Prints the step's line and writes its scalars (and `picture`, when given).
    pub fn step(&mut self, report: &StepReport, picture: Option<MimPicture<'_>>) {
        println!("{}", report.json());
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let written = events
            .scalars(report.step, &report.scalars())
            .and_then(|()| match picture {
                Some(p) => {
                    let (png, size) = mim_strip(p.images, p.pred, p.mask, p.patch)?;
                    events.image(report.step, "mim/reconstruction", png, size)
                }
                None => Ok(()),
            })
            .and_then(|()| events.flush());
        if let Err(error) = written {
            tracing::warn!("TensorBoard logging stops: {error:#}");
            self.events = None;
        }
    }
}
