//! The launcher's terminal: at most one progress bar (steps, a message, ETA) on standard error
//! when it is a terminal, with every other line printed above it; without a terminal (batch
//! logs) the bar is hidden and its updates come as plain lines.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Prints `text` on standard error, above the progress bar if one is shown.
pub fn line(text: &str) {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
    match bar.as_ref().filter(|b| !b.is_hidden()) {
        Some(bar) => bar.println(text),
        None => eprintln!("{text}"),
    }
}

/// Shows a bar named `prefix` of `total` steps starting at `position`.
pub fn start_bar(prefix: &str, total: u64, position: u64) {
    let bar = ProgressBar::new(total).with_position(position);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] step {pos}/{len} {msg} ({elapsed} elapsed, ETA {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar.reset_eta();
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
}

/// Moves the bar to `position` with `message`; without a visible bar, prints them as a line
/// with the ETA.
pub fn advance(position: u64, message: &str) {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bar) = bar.as_ref() else {
        eprintln!("step {position}: {message}");
        return;
    };
    bar.set_position(position);
    bar.set_message(message.to_owned());
    if bar.is_hidden() {
        let total = bar.length().unwrap_or(position);
        eprintln!(
            "step {position}/{total}: {message}, ETA {}",
            indicatif::HumanDuration(bar.eta())
        );
    }
}

/// Removes the bar (its last state stays on screen).
pub fn finish_bar() {
    if let Some(bar) = BAR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bar.abandon();
    }
}
