//! This rank's heartbeat to its launcher ([`arl_contract::heartbeat`]): the step and phase it
//! is in, the steps it completes and the collectives it enters and leaves, one line each on the
//! pipe `ARL_PROGRESS_FD` names. Without that variable (a worker started by hand) it is silent.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use arl_c10d::Collective;
use arl_contract::heartbeat::{Beat, Phase};
use arl_contract::rank_env::{PROGRESS_FD_VAR, RESTART_COUNT_VAR};

/// The step in progress (from 1; 0 before the first).
static STEP: AtomicU64 = AtomicU64::new(0);

/// The pipe, opened on first use.
fn pipe() -> Option<&'static Mutex<File>> {
    static PIPE: OnceLock<Option<Mutex<File>>> = OnceLock::new();
    PIPE.get_or_init(|| {
        let fd: u32 = std::env::var(PROGRESS_FD_VAR).ok()?.parse().ok()?;
        // The launcher's pipe, opened anew through its descriptor (no unsafe adoption of it).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"));
        match file {
            Ok(file) => Some(Mutex::new(file)),
            Err(error) => {
                tracing::warn!("{PROGRESS_FD_VAR}={fd} cannot be written: {error}");
                None
            }
        }
    })
    .as_ref()
}

/// Sends one beat (a failed write is ignored: the launcher is gone, and so will this rank be).
fn send(beat: &Beat) {
    if let Some(pipe) = pipe() {
        let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(pipe, "{}", beat.line());
    }
}

/// Step `step` begins, with its data.
pub fn begin_step(step: u64) {
    STEP.store(step, Ordering::Relaxed);
    phase(Phase::Data);
}

/// The current step enters `phase`.
pub fn phase(phase: Phase) {
    send(&Beat::Phase {
        step: STEP.load(Ordering::Relaxed),
        phase,
    });
}

/// The current step is done.
pub fn stepped() {
    send(&Beat::Stepped {
        step: STEP.load(Ordering::Relaxed),
    });
}

/// Reports a collective of the group (see [`arl_c10d::ProcessGroup::observe`]).
pub fn collective(collective: Collective<'_>) {
    send(&match collective {
        Collective::Enter { seq, op, sizes } => Beat::Enter {
            seq,
            op: op.to_owned(),
            sizes: sizes.to_vec(),
        },
        Collective::Leave { seq } => Beat::Leave { seq },
    });
}

/// This rank waits for storage to read `object` (none: storage answers again).
pub fn storage(object: Option<&str>) {
    send(&Beat::Storage {
        object: object.map(str::to_owned),
    });
}

/// Restarts of the world so far in this launch (0 outside a launcher).
pub fn restart_count() -> u32 {
    std::env::var(RESTART_COUNT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
