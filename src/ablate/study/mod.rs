//! Each study of `simclr ablate` in one place: its cells (the paper's settings and numbers), its
//! tables, the verdicts on the paper's findings and its figures.

mod augment;
mod head;
mod scale;
mod temperature;

use super::report::{Claim, Frame, Noise};
use super::{Cell, CellResult, Preset, Study};
use crate::config::Config;
use anyhow::Result;
use std::path::Path;

/// What defines a study.
pub(super) trait Definition: Sync {
    /// The study's cells at `preset`, built on `base` (without the untrained baseline, which every
    /// study gets).
    fn cells(&self, preset: Preset, base: &Config) -> Vec<Cell>;
    /// The report's tables of `results` (Markdown), the paper's numbers beside ours.
    fn tables(&self, results: &[CellResult]) -> String;
    /// Whether each of the paper's directions holds in `results` (Markdown list items), told apart
    /// from `noise`.
    fn findings(&self, results: &[CellResult], noise: Noise) -> String;
    /// The paper's claims this study tests at `preset`, each a contrast of its cells declared
    /// before the runs (the report's verdicts).
    fn claims(&self, preset: Preset) -> Vec<Claim>;
    /// Draws the study's figures into `out`, each in `frame` (the untrained line, the noise of a
    /// run); returns their file names.
    fn figures(&self, out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>>;
}

impl Study {
    /// The study's definition.
    pub(super) fn definition(self) -> &'static dyn Definition {
        match self {
            Study::Augment => &augment::Augment,
            Study::Head => &head::Head,
            Study::Temperature => &temperature::Temperature,
            Study::Scale => &scale::Scale,
        }
    }
}
