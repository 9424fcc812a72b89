//! TensorBoard event files: `events.out.tfevents.*` in a folder, TFRecord framing (length and
//! payload each followed by a masked CRC-32C) around `tensorflow.Event` protocol buffers with
//! scalar and PNG image summaries. Only the messages and fields written here are declared.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use prost::Message;

/// `tensorflow.Event` (the fields of its `what` one-of that are written, as optional fields).
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
    #[prost(message, optional, tag = "6")]
    session_log: Option<SessionLog>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    image: Option<Image>,
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `SessionLog.START`: readers drop the events of later steps written before it (a resume).
const SESSION_START: i32 = 1;

/// The CRC of TFRecord framing.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One event file, appended to in order.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created), opened with the file-version event; `resumed_at`
    /// adds a session start at that step, so readers drop what an earlier run logged after it.
    ///
    /// # Errors
    /// The folder or file cannot be created (named).
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.{}",
            now.as_secs(),
            std::process::id(),
            now.subsec_nanos()
        ));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        writer.write(Event {
            file_version: Some("brain.Event:2".to_owned()),
            ..event(0)
        })?;
        if let Some(step) = resumed_at {
            writer.write(Event {
                session_log: Some(SessionLog {
                    status: SESSION_START,
                }),
                ..event(step)
            })?;
        }
        writer.flush()?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars `(tag, value)` at `step`, as one event.
    ///
    /// # Errors
    /// The write fails (the file named).
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> anyhow::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
                image: None,
            })
            .collect();
        self.write(Event {
            summary: Some(Summary { value }),
            ..event(step)
        })
    }

    /// A PNG image (`height` × `width`, RGB) under `tag` at `step`.
    ///
    /// # Errors
    /// The write fails (the file named).
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: Vec<u8>,
        (height, width): (u32, u32),
    ) -> anyhow::Result<()> {
        let image = Image {
            height: height as i32,
            width: width as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        self.write(Event {
            summary: Some(Summary {
                value: vec![Value {
                    tag: tag.to_owned(),
                    simple_value: None,
                    image: Some(image),
                }],
            }),
            ..event(step)
        })
    }

    /// Pushes what was written to the file.
    ///
    /// # Errors
    /// The write fails (the file named).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write(&mut self, event: Event) -> anyhow::Result<()> {
        let payload = event.encode_to_vec();
        let length = (payload.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(payload.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc(&length).to_le_bytes());
        record.extend_from_slice(&payload);
        record.extend_from_slice(&masked_crc(&payload).to_le_bytes());
        self.out
            .write_all(&record)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// An empty event at `step`, stamped now.
fn event(step: u64) -> Event {
    let wall_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    Event {
        wall_time,
        step: step as i64,
        file_version: None,
        summary: None,
        session_log: None,
    }
}
