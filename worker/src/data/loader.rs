//! The rank's input pipeline: a producer thread draws each step's samples from the
//! [`RankStream`], decodes and transforms the images on a pool of threads, and hands finished
//! batches to the training thread through a bounded queue, so training never waits on a decode
//! it could have overlapped. Unreadable samples and undecodable images are skipped, logged and
//! counted; past a configured fraction the pipeline stops with an error naming the shard and row.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::dicom::{self, DicomOptions, Frames};
use super::image::{self, Rgb};
use super::sample_check::SampleCheck;
use super::shard::ShardEntry;
use super::stream::{BadSample, RankStream, Sample};

/// Which of ARL's transforms the images get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Resize the shorter side, centre crop (`clip`).
    Clip {
        /// Output side.
        size: u32,
    },
    /// RandomResizedCrop (`clip_resizedcrop`), seeded per step and sample.
    ResizedCrop {
        /// Output side.
        size: u32,
    },
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Decoding threads.
    pub threads: usize,
    /// Finished batches waiting for the training thread.
    pub queue_depth: usize,
    /// The transform.
    pub transform: Transform,
    /// Fraction of samples that may be bad before the run stops (checked after 100 samples,
    /// or from the first when 0).
    pub max_bad_fraction: f64,
    /// Seed of the random crops.
    pub seed: u64,
    /// The run's step of the first batch: a sample's crop depends on the run's step, so a
    /// resumed run crops as the uninterrupted one did.
    pub first_step: u64,
    /// How DICOM images (recognised by their `DICM` marker) are windowed; their first frame is
    /// used.
    pub dicom: DicomOptions,
    /// The job's checks of each sample's text, entities and labels (none: images only).
    pub check: Option<Arc<SampleCheck>>,
}

/// One step's batch for the training thread.
#[derive(Debug)]
pub struct Batch {
    /// (B, 3, S, S), CLIP-normalised.
    pub images: Tensor,
    /// The samples, in the same order (images decoded, so their bytes are dropped).
    pub samples: Vec<Sample>,
    /// Samples skipped in this step.
    pub bad: Vec<BadSample>,
}

/// The running pipeline.
pub struct Loader {
    batches: Receiver<anyhow::Result<Batch>>,
    producer: Option<JoinHandle<()>>,
}

/// Decodes a DICOM (its first frame), JPEG or PNG image.
///
/// # Errors
/// Bytes that are none of these, or a broken image.
pub fn decode(bytes: &[u8], options: &DicomOptions) -> anyhow::Result<Rgb> {
    if dicom::is_dicom(bytes) {
        let mut frames = dicom::decode(bytes, options, Frames::First)?;
        return frames
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the DICOM image has no frames"));
    }
    image::decode(bytes)
}

/// Decodes and transforms one sample's image.
fn transform(sample: &Sample, cfg: &LoaderConfig, seed: u64) -> anyhow::Result<Rgb> {
    let decoded = decode(&sample.row.image, &cfg.dicom)?;
    match cfg.transform {
        Transform::Clip { size } => image::clip(&decoded, size),
        Transform::ResizedCrop { size } => {
            let key = (u64::from(sample.at.shard) << 32) | u64::from(sample.at.item);
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            image::clip_resized_crop(&decoded, size, &mut rng)
        }
    }
}

/// Tracks bad samples against the allowed fraction.
struct BadCounter {
    seen: u64,
    bad: u64,
    max_fraction: f64,
}

impl BadCounter {
    fn check(&mut self, step: usize, good: usize, bad: &[BadSample]) -> anyhow::Result<()> {
        self.seen += (good + bad.len()) as u64;
        self.bad += bad.len() as u64;
        for sample in bad {
            tracing::warn!(step, reason = %sample.reason, "skipped a bad sample");
        }
        let enforce = self.max_fraction == 0.0 || self.seen >= 100;
        if let Some(last) = bad.last()
            && enforce
            && self.bad as f64 > self.max_fraction * self.seen as f64
        {
            anyhow::bail!(
                "{} of {} samples were bad, more than max_bad_fraction = {}; the last: {}",
                self.bad,
                self.seen,
                self.max_fraction,
                last.reason
            );
        }
        Ok(())
    }
}

/// Runs `work` for one sample, turning a panic inside it into that sample's error (a decoder's
/// bug must cost one sample, not the run, and never shift the pairing of images and texts).
pub fn contained<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(anyhow::anyhow!("panicked while reading: {message}"))
    })
}

/// Samples checked, decoded and transformed, in order.
#[derive(Debug)]
pub struct Prepared {
    /// (B, 3, S, S) of the good samples; `None` when none was good.
    pub images: Option<Tensor>,
    /// The good samples (image bytes dropped).
    pub samples: Vec<Sample>,
    /// The others, each named by shard, row and text, with its reason.
    pub bad: Vec<BadSample>,
}

/// Checks, decodes and transforms `samples` (of step `step`, whose crops it seeds) on
/// `cfg.threads` scoped threads; `shards` (the manifest's) name the bad ones.
pub fn prepare(
    samples: Vec<Sample>,
    step: u64,
    cfg: &LoaderConfig,
    shards: &[ShardEntry],
) -> Prepared {
    let seed = cfg.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let one = |sample: &Sample| {
        contained(|| {
            if let Some(check) = &cfg.check {
                check.check(sample)?;
            }
            transform(sample, cfg, seed)
        })
    };
    let chunk = samples.len().div_ceil(cfg.threads.max(1)).max(1);
    let decoded: Vec<anyhow::Result<Rgb>> = std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    scope.spawn(move || part.iter().map(one).collect()),
                )
            })
            .collect();
        // One result per sample, always: a thread lost whole fails each of its samples.
        handles
            .into_iter()
            .flat_map(|(len, handle)| {
                handle
                    .join()
                    .unwrap_or_else(|_: Box<dyn std::any::Any + Send>| {
                        (0..len)
                            .map(|_| Err(anyhow::anyhow!("its decoding thread died")))
                            .collect::<Vec<_>>()
                    })
            })
            .collect()
    });
    assert_eq!(decoded.len(), samples.len(), "one decode result per sample");
    let mut prepared = Prepared {
        images: None,
        samples: Vec::new(),
        bad: Vec::new(),
    };
    let mut tensors = Vec::new();
    for (mut sample, result) in samples.into_iter().zip(decoded) {
        match result {
            Ok(rgb) => {
                tensors.push(image::normalized_tensor(&rgb));
                sample.row.image = Vec::new();
                prepared.samples.push(sample);
            }
            Err(error) => {
                let shard = shards
                    .get(sample.at.shard as usize)
                    .map_or("?", |s| s.name.as_str());
                prepared.bad.push(BadSample {
                    at: sample.at,
                    reason: format!("{}: {error:#}", sample.origin(shard)),
                });
            }
        }
    }
    prepared.images = (!tensors.is_empty()).then(|| Tensor::stack(&tensors, 0));
    prepared
}

impl Loader {
    /// Starts the producer for `steps` steps.
    pub fn start(mut stream: RankStream, cfg: LoaderConfig, steps: usize) -> Self {
        let (tx, rx) = sync_channel(cfg.queue_depth.max(1));
        let producer = std::thread::spawn(move || {
            let mut counter = BadCounter {
                seen: 0,
                bad: 0,
                max_fraction: cfg.max_bad_fraction,
            };
            for step in 0..steps {
                let result = stream.next_batch().and_then(|read| {
                    let shards = &stream.source().manifest().shards;
                    let mut prepared =
                        prepare(read.samples, cfg.first_step + step as u64, &cfg, shards);
                    let mut bad = read.bad;
                    bad.append(&mut prepared.bad);
                    counter.check(step, prepared.samples.len(), &bad)?;
                    let images = prepared.images.ok_or_else(|| {
                        anyhow::anyhow!("step {step}: every sample was bad: {:?}", bad.first())
                    })?;
                    Ok(Batch {
                        images,
                        samples: prepared.samples,
                        bad,
                    })
                });
                let failed = result.is_err();
                if tx.send(result).is_err() || failed {
                    return;
                }
            }
        });
        Self {
            batches: rx,
            producer: Some(producer),
        }
    }

    /// The next batch (waits for the producer).
    ///
    /// # Errors
    /// Too many bad samples, or the producer has stopped.
    pub fn next_batch(&self) -> anyhow::Result<Batch> {
        self.batches
            .recv()
            .map_err(|_| anyhow::anyhow!("the input pipeline has stopped"))?
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock the producer (its sends fail once the receiver is gone), then wait for it.
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.batches, dead));
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_in_one_sample_is_that_sample_s_error() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let caught: anyhow::Result<()> = super::contained(|| panic!("bad pixels in row 7"));
        std::panic::set_hook(hook);
        let error = format!("{:#}", caught.unwrap_err());
        assert!(
            error.contains("panicked while reading: bad pixels in row 7"),
            "{error}"
        );
        assert_eq!(super::contained(|| Ok(3)).unwrap(), 3);
    }
}
