//! Progress bars of the long steps (pretraining, feature extraction, L-BFGS fitting, fine-tuning),
//! all drawn by `indicatif` on stderr: hidden by `--quiet` ([`set_quiet`]) and, by indicatif
//! itself, whenever stderr is not a terminal (logs, CI, pipes).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Hides every progress bar of this process from now on (`--quiet`), or shows them again.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A bar of `len` units named `what` (`"extracting features"`), hidden under `--quiet`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if QUIET.load(Ordering::Relaxed) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} eta {eta}").expect("a valid template"));
    bar.set_prefix(what.to_string());
    bar
}
