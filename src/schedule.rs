//! Learning-rate scaling and schedule (paper §B.1; official `model.py::WarmUpAndCosineDecay`).
//!
//! The base LR is scaled by the batch size — linear: `lr · B / 256`, square root: `lr · √B` — then
//! ramps up linearly over the warm-up steps and decays to 0 with a cosine over the remaining steps,
//! stepped per iteration. Scaled LRs above 1 (0.3 · 4096/256 = 4.8) are expected.

use serde::{Deserialize, Serialize};

/// How the base learning rate grows with the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    /// `lr · B / 256` (paper default with LARS).
    Linear,
    /// `lr · √B` (paper App. B.1, better for small batches / long training).
    Sqrt,
}

impl LrScaling {
    /// The scaled learning rate for batch size `batch`.
    pub fn scale(self, base_lr: f64, batch: usize) -> f64 {
        match self {
            LrScaling::Linear => base_lr * batch as f64 / 256.0,
            LrScaling::Sqrt => base_lr * (batch as f64).sqrt(),
        }
    }
}

/// Linear warm-up to `peak`, then cosine decay to 0 at `total_steps`.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmupCosine {
    /// The LR reached at the end of warm-up.
    pub peak: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
}

impl WarmupCosine {
    /// The LR used for update number `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if decay_steps == 0 {
            return self.peak;
        }
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}
