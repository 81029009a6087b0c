//! Ctrl-C and SIGTERM during pretraining. The first one asks the run to stop: the training loop
//! finishes the step under way, writes a checkpoint and returns, and the command says how to resume
//! (batch schedulers send SIGTERM before they kill a job). A second one ends the process at once,
//! leaving the checkpoints as they were: each is written whole or not at all.

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Handles SIGINT and SIGTERM from now on, as the module says (exit status 128 + the signal's
/// number on the second one). Without it the signals end the process as usual.
pub fn install() -> anyhow::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // The shutdown goes first: it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &REQUESTED)?;
        signal_hook::flag::register(signal, &REQUESTED)?;
    }
    Ok(())
}

/// Whether a first signal has asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
