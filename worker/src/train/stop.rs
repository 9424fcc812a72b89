//! Stop requests. SIGINT, SIGTERM and SIGUSR1 (the launcher forwards them; SLURM sends one
//! ahead of a time limit with `--signal`) only raise a flag; the loop reads it at each step
//! boundary, every rank learns of it in the step's flag reduction, and the run saves a
//! checkpoint and ends cleanly. A second signal does not kill the worker: the launcher
//! escalates if the user insists.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The signals that ask for a clean stop.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// The last stop signal received, if any.
#[derive(Clone)]
pub struct StopRequest(Arc<AtomicUsize>);

impl StopRequest {
    /// Catches the stop signals from now on.
    ///
    /// # Errors
    /// A handler cannot be installed.
    pub fn install() -> anyhow::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        for signal in STOP_SIGNALS {
            signal_hook::flag::register_usize(signal, received.clone(), signal as usize)
                .with_context(|| format!("catching signal {signal}"))?;
        }
        Ok(Self(received))
    }

    /// The signal that asked for a stop (its number), if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

/// A signal's conventional name.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}
