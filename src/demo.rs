//! `simclr demo`: pretrain a small ResNet on the built-in Fashion-MNIST subset, then compare a
//! linear probe on its frozen features with the same probe on (a) the very network pretraining
//! started from and (b) a randomly initialised network with torchvision's default init — a strong
//! baseline on Fashion-MNIST, which a few minutes of CPU pretraining only just beats.

use crate::config::{AugmentSettings, Config, DataSettings, ModelSettings, OptimSettings, RunSettings};
use crate::data::{self, DatasetKind, Split};
use crate::eval::extract;
use crate::eval::linear::{probe, Fit};
use crate::model::SimClr;
use crate::pretrain::pretrain;
use crate::resnet::Arch;
use anyhow::Result;
use burn::tensor::Device;
use std::path::PathBuf;

/// Linear-probe test accuracies of the demo.
#[derive(Debug, Clone, Copy)]
pub struct DemoResult {
    /// Probe on the pretrained encoder's h.
    pub pretrained: f64,
    /// Probe on the same network before pretraining (zero-γ initialisation).
    pub initial: f64,
    /// Probe on a random network with the default (γ = 1) initialisation.
    pub random: f64,
}

/// The demo's pretraining config: ResNet-18 at width 0.25, CIFAR stem, 28 px views.
pub fn demo_config(out: PathBuf, epochs: usize) -> Config {
    Config {
        data: DataSettings { dataset: DatasetKind::Builtin, ..Default::default() },
        model: ModelSettings { arch: Arch::Resnet18, width: 0.25, ..Default::default() },
        augment: AugmentSettings { color_strength: 0.5, ..Default::default() },
        optim: OptimSettings { batch_size: 128, epochs, lr: 1.0, warmup_epochs: 1.0, temperature: 0.5, ..Default::default() },
        run: RunSettings { out, ..Default::default() },
        ..Config::default()
    }
}

/// Test accuracy of a linear probe on layer h of `model`, fitted on the built-in train split.
pub fn probe_accuracy(model: &SimClr, image_size: usize, device: &Device) -> Result<f64> {
    let train = data::builtin(Split::Train);
    let test = data::builtin(Split::Test);
    let bad = crate::data::BadImages::Fail;
    let f_train = extract(model, 0, &train, image_size, 500, &bad, device)?;
    let f_test = extract(model, 0, &test, image_size, 500, &bad, device)?;
    Ok(probe(&f_train, &f_test, 10, Fit::Lbfgs, 0, device)?.test_top1)
}

/// Runs the demo: pretraining as `cfg` says, then the two probes.
pub fn run(cfg: &Config, device: &Device, progress: bool) -> Result<DemoResult> {
    let trained = pretrain(cfg, false, device, progress)?;
    let size = 28;
    let pretrained = probe_accuracy(&trained.eval_model(), size, device)?;
    let compute = cfg.run.compute(device)?;
    let initial = probe_accuracy(&cfg.model(size).init_seeded(cfg.run.seed, device).with_compute(compute), size, device)?;
    let random_model = crate::eval::random_init_baseline(cfg, size).init_seeded(cfg.run.seed, device).with_compute(compute);
    let random = probe_accuracy(&random_model, size, device)?;
    Ok(DemoResult { pretrained, initial, random })
}
