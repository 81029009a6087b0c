//! Per-epoch monitors of a pretraining run, as hooks the training loop calls at every epoch end
//! (and at a run's last step): the kNN monitor, a cheap view of representation quality between
//! the real evaluations, and the training-curves picture. A caller may pass its own
//! ([`crate::pretrain::pretrain_with`]); [`standard`] gives the ones a config asks for.

use crate::config::Config;
use crate::curves::{plot, RunCurves};
use crate::data::{self, Dataset, Split, Subset};
use crate::eval::knn::Knn;
use crate::eval::{extract, topk_accuracy};
use crate::model::SimClr;
use anyhow::{bail, Result};
use burn::tensor::Device;
use std::sync::Arc;

/// Where the run stands when a hook is called.
pub struct EpochEnd<'a> {
    /// Epochs finished (1-based), or the epoch in progress at the last step of a run that
    /// `--max-steps` stops mid-epoch.
    pub epoch: usize,
    /// Whether `epoch` is complete (false only at such a mid-epoch last step).
    pub complete: bool,
    /// Steps done.
    pub step: usize,
    /// The network being trained (autodiff; BN in training mode).
    pub model: &'a SimClr,
    /// The run's resolved config (its `image_size` and `num_classes` filled in).
    pub cfg: &'a Config,
    /// The training device.
    pub device: &'a Device,
}

/// Something run at the end of each epoch of pretraining.
pub trait EpochHook {
    /// Runs after an epoch; returns named values to log as one `metrics.jsonl` row (with the epoch
    /// and step) and in the epoch's log line, or nothing. Called after the epoch's metrics rows are
    /// written.
    fn after_epoch(&mut self, end: &EpochEnd) -> Result<Vec<(&'static str, f64)>>;
}

/// The hooks `cfg` asks for: the kNN monitor when `knn_every` > 0, then the curves picture.
pub fn standard(cfg: &Config) -> Result<Vec<Box<dyn EpochHook>>> {
    let mut hooks: Vec<Box<dyn EpochHook>> = Vec::new();
    if cfg.monitor.knn_every > 0 {
        hooks.push(Box::new(KnnMonitor::new(cfg)?));
    }
    hooks.push(Box::new(CurvesPlot));
    Ok(hooks)
}

/// Images of the labelled training split the kNN monitor keeps as its memory bank (at most).
pub const KNN_BANK: usize = 10_000;

/// Every `every` epochs, weighted-kNN top-1 on the test split (k = 200, T = 0.1) against a memory
/// bank of at most [`KNN_BANK`] images of the *labelled* training split (STL-10: its 5,000 train
/// images, not the unlabelled ones), drawn class-balanced with the run's seed and the same at every
/// epoch. Logged as `knn_top1`.
pub struct KnnMonitor {
    every: usize,
    bank: Subset,
    test: Arc<dyn Dataset>,
    classes: usize,
}

impl KnnMonitor {
    /// Opens the labelled train and test splits of `cfg`'s dataset and draws the bank.
    pub fn new(cfg: &Config) -> Result<Self> {
        let train = data::open(&cfg.source(), Split::Train)?;
        let classes = train.num_classes();
        if classes == 0 {
            bail!("--knn-every {}: the kNN monitor needs a labelled dataset, and --dataset {} has no labels; use --knn-every 0", cfg.monitor.knn_every, cfg.data.dataset.name());
        }
        let test = data::open(&cfg.source(), Split::Test)?;
        let bank = knn_bank(train.as_ref(), cfg.run.seed)?;
        Ok(Self { every: cfg.monitor.knn_every, bank: Subset::new(train, bank), test, classes })
    }
}

/// The kNN monitor's memory bank: a class-balanced sample of at most [`KNN_BANK`] images of the
/// labelled `train`, drawn with `seed` (each class keeps at least one image).
pub fn knn_bank(train: &dyn Dataset, seed: u64) -> Result<Vec<usize>> {
    let labels: Vec<usize> = (0..train.len()).map(|i| train.label(i).ok_or_else(|| anyhow::anyhow!("training image {i} has no label"))).collect::<Result<_>>()?;
    let fraction = (KNN_BANK as f64 / labels.len().max(1) as f64).min(1.0);
    data::class_balanced(&labels, train.num_classes(), seed, |_, n| Ok(((fraction * n as f64).round() as usize).max(1)))
}

impl EpochHook for KnnMonitor {
    fn after_epoch(&mut self, end: &EpochEnd) -> Result<Vec<(&'static str, f64)>> {
        if !end.complete || end.epoch % self.every != 0 {
            return Ok(vec![]);
        }
        let (size, bad) = (end.cfg.model.image_size, end.cfg.bad_images());
        let bank = extract(end.model, 0, &self.bank, size, 256, &bad, end.device)?;
        let queries = extract(end.model, 0, self.test.as_ref(), size, 256, &bad, end.device)?;
        let scores = Knn::default().scores(&bank, &queries, self.classes, &end.device.clone().inner());
        Ok(vec![("knn_top1", topk_accuracy(&scores, self.classes, &queries.labels, 1)?)])
    }
}

/// Redraws `OUT/curves.png` from `OUT/metrics.jsonl` at every epoch end.
pub struct CurvesPlot;

impl EpochHook for CurvesPlot {
    fn after_epoch(&mut self, end: &EpochEnd) -> Result<Vec<(&'static str, f64)>> {
        plot(&[RunCurves::read(&end.cfg.run.out)?], &end.cfg.run.out.join("curves.png"))?;
        Ok(vec![])
    }
}
