//! A run that does nothing but checkpoint, for the kill-during-save tests of
//! `tests/tests/checkpoints.rs`: it resumes after the newest committed checkpoint at LOCATION
//! and saves step after step through the asynchronous writer, until it is killed. Every byte
//! of a step's tensors is derived from the step, so a reader can tell files of different saves
//! apart. Prints `submitted N` and `committed N` lines.
//!
//! Usage: `checkpoint_child LOCATION` (object-store settings from the environment).

use std::io::Write;

use arl_checkpoints::{AsyncSaver, Checkpoints, Retention, SaverConfig, TrainingState};
use arl_tests::checkpoint_child::stage_step;

fn main() {
    let location = std::env::args()
        .nth(1)
        .expect("usage: checkpoint_child LOCATION");
    if let Err(error) = run(&location) {
        println!("error {error:#}");
        std::process::exit(1);
    }
}

fn run(location: &str) -> anyhow::Result<()> {
    let mut checkpoints = Checkpoints::open(location)?;
    checkpoints.max_file_bytes = 8 << 20;
    let first = checkpoints.latest()?.map_or(1, |m| m.state.step + 1);
    let config = SaverConfig {
        retention: Retention {
            keep_last: 2,
            keep_every: 0,
        },
    };
    let mut saver = AsyncSaver::new(checkpoints, config)?;
    let mut out = std::io::stdout();
    for step in first.. {
        let mut begin = saver.begin()?;
        stage_step(&mut begin.staging, step)?;
        let state = TrainingState::new(step, 2);
        saver.submit(begin.staging, state)?;
        writeln!(out, "submitted {step}")?;
        for outcome in saver.poll() {
            writeln!(out, "committed {}", outcome?.step)?;
        }
    }
    Ok(())
}
