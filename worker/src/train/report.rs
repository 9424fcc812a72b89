//! What rank 0 says: every [`Event`] as one JSON line on standard output (the launcher's
//! progress and the job's `rank0.jsonl`), and each step's numbers as TensorBoard scalars, plus a
//! MIM reconstruction image every `image_every` steps. A TensorBoard write that fails is
//! reported once and ends the TensorBoard log, not the run. Given a job's [`Throughput`], each
//! step's report gets its achieved TFLOP/s and MFU.

use std::io::Write;
use std::path::Path;

use arl_contract::Event;
use arl_contract::events::StepReport;

use super::reconstruction::mim_strip;
use super::tensorboard::EventWriter;
use super::throughput::Throughput;

/// Writes `event` as one line on standard output (flushed: the launcher reads it as it comes).
pub fn emit(event: Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.line());
    let _ = out.flush();
}

/// The MIM pass of a step, for its picture.
pub struct MimPicture {
    /// The micro-batch's images (B, 3, S, S), CLIP-normalised.
    pub images: tch::Tensor,
    /// Decoder output (B, g², P²·3).
    pub pred: tch::Tensor,
    /// Removed patches (B, g²).
    pub mask: tch::Tensor,
    /// Patch size.
    pub patch: i64,
}

/// Rank 0's step log: events, and TensorBoard when enabled.
pub struct Reporter {
    events: Option<EventWriter>,
    image_every: u64,
    throughput: Option<Throughput>,
}

impl Reporter {
    /// Logs events and, when `dir` is given, TensorBoard event files there; `resume_step` is
    /// the first step TensorBoard keeps from a resumed run (it drops what the interrupted run
    /// logged from there on).
    ///
    /// # Errors
    /// The TensorBoard folder or file cannot be created (named).
    pub fn new(
        dir: Option<&Path>,
        resume_step: Option<u64>,
        image_every: u64,
    ) -> anyhow::Result<Self> {
        let events = match dir {
            Some(dir) => Some(EventWriter::create(dir, resume_step)?),
            None => None,
        };
        Ok(Self {
            events,
            image_every,
            throughput: None,
        })
    }

    /// Reports each step's TFLOP/s and MFU from `throughput`.
    pub fn with_throughput(mut self, throughput: Throughput) -> Self {
        self.throughput = Some(throughput);
        self
    }

    /// Whether step `step` (counted from 1) gets a reconstruction image.
    pub fn wants_image(&self, step: u64) -> bool {
        self.events.is_some() && self.image_every > 0 && step.is_multiple_of(self.image_every)
    }

    /// Emits the job's start (with the restart count of this launch, also written to
    /// TensorBoard as `run/restarts` at step `start`).
    pub fn start(&mut self, job: &str, start: u64, end: u64) {
        let restart = crate::heartbeat::restart_count();
        emit(Event::Start {
            job: job.to_owned(),
            start,
            end,
            restart,
        });
        self.scalars(start, &[("run/restarts".to_owned(), f64::from(restart))]);
    }

    /// Emits the step's event and writes its scalars (and `picture`, when given), with its
    /// TFLOP/s and MFU when the reporter has a [`Throughput`].
    pub fn step(&mut self, mut report: StepReport, picture: Option<MimPicture>) {
        if let Some(throughput) = &self.throughput {
            let tflops = throughput.tflops(report.samples_per_s);
            report.tflops = Some(tflops);
            report.mfu = throughput.mfu(tflops);
        }
        let (step, scalars) = (report.step, report.scalars());
        emit(Event::Step(report));
        self.write(|events| {
            events.scalars(step, &scalars)?;
            match picture {
                Some(p) => {
                    let (png, size) = mim_strip(&p.images, &p.pred, &p.mask, p.patch)?;
                    events.image(step, "mim/reconstruction", png, size)
                }
                None => Ok(()),
            }
        });
    }

    /// Writes `scalars` at `step` (evaluations).
    pub fn scalars(&mut self, step: u64, scalars: &[(String, f64)]) {
        self.write(|events| events.scalars(step, scalars));
    }

    fn write(&mut self, what: impl FnOnce(&mut EventWriter) -> anyhow::Result<()>) {
        let Some(events) = self.events.as_mut() else {
            return;
        };
        if let Err(error) = what(events).and_then(|()| events.flush()) {
            tracing::warn!("TensorBoard logging stops: {error:#}");
            self.events = None;
        }
    }
}
