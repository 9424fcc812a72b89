//! Rank 0's events as a person sees them: a progress bar for the steps, and a line for every
//! other event (resume, checkpoints, validation, results, stop).

use arl_contract::Event;
use arl_contract::events::StepReport;

use crate::console;

/// Shows `event`.
pub fn show(event: &Event) {
    match event {
        Event::Preflight {
            world_size,
            rank_sum,
        } => console::line(&format!(
            "preflight passed: {world_size} ranks joined, all-reduced rank sum {rank_sum}"
        )),
        Event::Start {
            job, start, end, ..
        } => console::start_bar(job, *end, *start),
        Event::Step(report) => console::advance(report.step, &step_message(report)),
        Event::Initialised { files } => {
            for file in files {
                console::line(&format!(
                    "model.init.{} from {} ({}, {} tensors, sha256 {:.12})",
                    file.key, file.path, file.format, file.tensors, file.sha256
                ));
            }
        }
        Event::Resumed { step, from } => {
            console::line(&format!("resumed at step {step} from {from}"));
        }
        Event::Skipped { step, ranks } => console::line(&format!(
            "step {step} skipped: non-finite gradients on ranks {ranks:?}"
        )),
        Event::CheckpointStaged {
            step,
            stall_ms,
            waited_ms,
        } => console::line(&format!(
            "checkpoint of step {step} staged ({:.0} ms of training time)",
            stall_ms + waited_ms
        )),
        Event::CheckpointCommitted {
            step,
            bytes,
            write_s,
            deleted,
        } => {
            let deleted = if deleted.is_empty() {
                String::new()
            } else {
                format!("; retention deleted steps {deleted:?}")
            };
            console::line(&format!(
                "checkpoint of step {step} committed ({:.1} MB written in {write_s:.1} s){deleted}",
                *bytes as f64 / 1e6
            ));
        }
        Event::Stopped { step, signal } => {
            console::line(&format!("stopped by {signal} after step {step}"));
        }
        Event::Validation {
            epoch,
            metric,
            best,
            ..
        } => {
            let best = if *best { " (best so far)" } else { "" };
            console::line(&format!(
                "epoch {epoch}: validation {}{best}",
                metric.describe()
            ));
        }
        Event::ZeroShot { metric } => console::line(&format!("zero-shot: {}", metric.describe())),
        Event::Result(result) => console::line(&format!(
            "test ({}): {}",
            result.test_split,
            result.test.describe()
        )),
    }
}

/// A step's numbers in one line.
fn step_message(report: &StepReport) -> String {
    let part = |name: &str| report.losses.get(name).copied().unwrap_or(f64::NAN);
    let parts = if report.losses.is_empty() {
        String::new()
    } else {
        format!(
            " (mlm {:.3} mim {:.3} itm {:.3} align {:.3})",
            part("mlm"),
            part("mim"),
            part("itm"),
            part("align")
        )
    };
    let lr = report.lr.get("base").copied().unwrap_or(f64::NAN);
    format!(
        "loss {:.4}{parts}, lr {lr:.2e}, {:.1} samples/s, data wait {:.0} %",
        report.loss,
        report.samples_per_s,
        100.0 * report.data_wait,
    )
}
