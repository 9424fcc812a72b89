//! What every rank tells its launcher about its progress, one [`Beat`] per line on the pipe
//! that `ARL_PROGRESS_FD` names: the step and phase it is in, each step it completes, and each
//! collective it enters and leaves. The launcher's hang watchdog and its collective flight
//! recorder read this stream; a rank that is stopped or stuck writes nothing.
//!
//! Lines: `phase STEP NAME`, `stepped STEP`, `enter SEQ OP SIZE,SIZE,…`, `leave SEQ`,
//! `storage wait OBJECT`, `storage ok`.

use anyhow::{Context, bail};

/// Where a rank is within a step (before its first phase: start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Waiting for the step's batch.
    Data,
    /// A forward pass.
    Forward,
    /// A backward pass.
    Backward,
    /// Collectives of the step (flags, gradients, logged values, replica checksums).
    Collective,
    /// Clipping and the optimiser update.
    Optimizer,
    /// Saving (or committing) a checkpoint.
    Checkpoint,
    /// An evaluation pass.
    Evaluation,
}

impl Phase {
    const ALL: [Self; 7] = [
        Self::Data,
        Self::Forward,
        Self::Backward,
        Self::Collective,
        Self::Optimizer,
        Self::Checkpoint,
        Self::Evaluation,
    ];

    /// Its name in beats and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Forward => "forward",
            Self::Backward => "backward",
            Self::Collective => "collective",
            Self::Optimizer => "optimizer",
            Self::Checkpoint => "checkpoint",
            Self::Evaluation => "evaluation",
        }
    }

    /// Whether the phase may legitimately last much longer than a step (the watchdog gives it
    /// the slow limit).
    pub fn is_slow(self) -> bool {
        matches!(self, Self::Checkpoint | Self::Evaluation)
    }
}

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// The rank entered `phase` of step `step` (steps counted from 1).
    Phase {
        /// The step.
        step: u64,
        /// The phase.
        phase: Phase,
    },
    /// The rank completed step `step`.
    Stepped {
        /// The step.
        step: u64,
    },
    /// The rank entered collective number `seq` of its group.
    Enter {
        /// Sequence number, from 1, the same on every rank for the same call.
        seq: u64,
        /// The operation.
        op: String,
        /// Elements of each tensor.
        sizes: Vec<i64>,
    },
    /// The rank left collective `seq` successfully.
    Leave {
        /// Its sequence number.
        seq: u64,
    },
    /// The rank is waiting for storage to read `object` (none: storage answers again).
    Storage {
        /// The object it waits for.
        object: Option<String>,
    },
}

impl Beat {
    /// The line (without its newline).
    pub fn line(&self) -> String {
        match self {
            Self::Phase { step, phase } => format!("phase {step} {}", phase.name()),
            Self::Stepped { step } => format!("stepped {step}"),
            Self::Enter { seq, op, sizes } => {
                let sizes: Vec<String> = sizes.iter().map(i64::to_string).collect();
                format!("enter {seq} {op} {}", sizes.join(","))
            }
            Self::Leave { seq } => format!("leave {seq}"),
            Self::Storage {
                object: Some(object),
            } => format!("storage wait {object}"),
            Self::Storage { object: None } => "storage ok".to_owned(),
        }
    }

    /// Parses a line.
    ///
    /// # Errors
    /// A line that is no beat (quoted).
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> anyhow::Result<u64> {
            fields
                .get(i)
                .context("missing field")?
                .parse()
                .context("not a number")
        };
        let beat = match fields[0] {
            "phase" => {
                let name = fields.get(2).copied().unwrap_or_default();
                Self::Phase {
                    step: number(1)?,
                    phase: Phase::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .with_context(|| format!("unknown phase {name:?}"))?,
                }
            }
            "stepped" => Self::Stepped { step: number(1)? },
            "enter" => Self::Enter {
                seq: number(1)?,
                op: fields.get(2).context("missing operation")?.to_string(),
                sizes: match fields.get(3).copied().unwrap_or_default() {
                    "" => Vec::new(),
                    sizes => sizes
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .context("bad sizes")?,
                },
            },
            "leave" => Self::Leave { seq: number(1)? },
            "storage" => match (fields.get(1).copied(), line.splitn(3, ' ').nth(2)) {
                (Some("wait"), Some(object)) if !object.is_empty() => Self::Storage {
                    object: Some(object.to_owned()),
                },
                (Some("ok"), None) => Self::Storage { object: None },
                _ => bail!("bad storage beat"),
            },
            _ => bail!("unknown beat"),
        };
        Ok(beat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_beat_reads_back_and_garbage_is_refused() {
        let beats = [
            Beat::Phase {
                step: 7,
                phase: Phase::Backward,
            },
            Beat::Stepped { step: 7 },
            Beat::Enter {
                seq: 12,
                op: "allreduce".into(),
                sizes: vec![3, 1024],
            },
            Beat::Enter {
                seq: 13,
                op: "barrier".into(),
                sizes: vec![],
            },
            Beat::Leave { seq: 12 },
            Beat::Storage {
                object: Some("s3://data/shards/shard-00003.arrow".into()),
            },
            Beat::Storage { object: None },
        ];
        for beat in beats {
            assert_eq!(Beat::parse(&beat.line()).unwrap(), beat);
        }
        for bad in [
            "",
            "phase 3 lunch",
            "stepped x",
            "enter 1 allreduce 3,x",
            "hello 1",
            "storage wait",
            "storage ok now",
        ] {
            assert!(Beat::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Phase::Checkpoint.is_slow() && !Phase::Collective.is_slow());
    }
}
