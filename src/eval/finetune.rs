//! Semi-supervised fine-tuning on a fraction of the labels (paper §4.2, App. B.5; v2 §2):
//! class-balanced label subsets drawn with a seed and saved as an index file, the encoder (plus the
//! first K head layers, v2's "fine-tune from head layer K") and a new linear classifier trained
//! end to end with cross-entropy, Nesterov SGD, cosine schedule, crop + flip augmentation only.
//! With a randomly initialised network this is the supervised-from-scratch baseline.

use crate::augment::AugmentConfig;
use crate::data::loader::{Loader, Shard};
use crate::data::{BadImages, Dataset, Subset};
use crate::eval::{extract, Features};
use crate::model::SimClr;
use crate::eval::linear::LinearClassifier;
use crate::optim::{Optimizer, OptimizerKind, Rule};
use crate::schedule::{LrScaling, WarmupCosine};
use crate::train::{self, supervised::{Classify, CrossEntropy, Labelled}};
use crate::distributed;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Draws `fraction` of each class's images (rounded; at least one each), seeded. Errors name the
/// fraction and the class that would get no example.
pub fn label_subset(labels: &[usize], classes: usize, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("--label-fraction {fraction}: must be in (0, 1] (e.g. 0.01 for 1%, 0.1 for 10%)");
    }
    crate::data::class_balanced(labels, classes, seed, |c, n| match (fraction * n as f64).round() as usize {
        0 => bail!(
            "--label-fraction {fraction}: class {c} has {n} images, so it would get no labelled example; use at least {:.2e}",
            0.5 / n.max(1) as f64
        ),
        take => Ok(take),
    })
}

/// Writes a subset as one image index per line.
pub fn write_subset(file: &Path, subset: &[usize]) -> Result<()> {
    let text: String = subset.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
}

/// Reads a subset written by [`write_subset`], checking every index is below `len`.
pub fn read_subset(file: &Path, len: usize) -> Result<Vec<usize>> {
    let text = crate::files::read_to_string(file).with_context(|| format!("--subset {}: cannot read", file.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let i: usize = line.trim().parse().with_context(|| format!("--subset {} line {}: not an image index", file.display(), n + 1))?;
        if i >= len {
            bail!("--subset {} line {}: index {i} is out of range (the dataset has {len} images)", file.display(), n + 1);
        }
        out.push(i);
    }
    if out.is_empty() {
        bail!("--subset {}: names no image (one training-image index per line); give a subset file with at least one index", file.display());
    }
    Ok(out)
}

impl Finetune {
    /// Checks the settings, naming the flag of each.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::nonzero("--epochs", self.epochs)?;
        check::nonzero("--batch-size", self.batch)?;
        check::positive("--lr", self.lr)?;
        check::momentum("--momentum", self.momentum)?;
        check::finite_at_least("--weight-decay", self.weight_decay, 0.0)
    }
}

/// Fine-tuning settings.
#[derive(Clone, Debug, Serialize)]
pub struct Finetune {
    /// Head layers kept under the classifier (0: classify h).
    pub from_head_layer: usize,
    /// Epochs over the labelled subset.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Base learning rate, scaled by the batch size as `lr_scaling` says (paper App. B.5:
    /// 0.05 × B / 256), then cosine-decayed to 0.
    pub lr: f64,
    /// How the base learning rate scales with the batch size.
    pub lr_scaling: LrScaling,
    /// Nesterov momentum.
    pub momentum: f64,
    /// Weight decay (0 by default, as the paper).
    pub weight_decay: f64,
    /// Seed of the data order and augmentation.
    pub seed: u64,
}

/// The network being fine-tuned: encoder, kept head layers, new linear classifier.
#[derive(Module, Debug)]
pub struct Classifier {
    net: SimClr,
    fc: Linear,
}

impl Classifier {
    /// The encoder of `model` and its first `from_head_layer` head layers under a new linear
    /// classifier into `classes` drawn from `seed`. No forward pass: the classifier's input size
    /// comes from the weights, so BN running statistics stay as pretraining left them.
    pub fn new(model: SimClr, from_head_layer: usize, classes: usize, seed: u64, device: &Device) -> Result<Self> {
        if from_head_layer > model.head.len() {
            bail!("--from-head-layer {from_head_layer}: the model's head has only {} layers", model.head.len());
        }
        let dim = model.head.out_dim_after(from_head_layer, model.encoder.out_dim());
        let net = SimClr { encoder: model.encoder, head: model.head.truncated(from_head_layer), probe: None, probe_layer: 0, input_resize: model.input_resize };
        let fc = crate::model::seeded(seed, device, || LinearConfig::new(dim, classes).init(device));
        Ok(Classifier { net, fc })
    }

}

impl Classify<4> for Classifier {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.net.forward(x).pop().expect("the network returns h at least"))
    }
}

/// Fine-tuning's view of its steps: a progress bar, each epoch's mean loss logged, and an error
/// once the loss is not a finite number.
struct EpochLoss {
    epochs: usize,
    steps_per_epoch: usize,
    /// The mean loss of the epoch so far (of the last epoch, at the end).
    loss: f64,
    bar: indicatif::ProgressBar,
}

impl train::StepHook<Classifier> for EpochLoss {
    fn after_step(&mut self, end: train::StepEnd<'_, Classifier>) -> Result<train::Flow> {
        let (value, done, per_epoch) = (end.logged.get("loss").expect("the cross-entropy logs its loss"), end.done, self.steps_per_epoch);
        if !value.is_finite() {
            bail!("fine-tuning loss became {value} at step {done}; lower --lr");
        }
        if (done - 1) % per_epoch == 0 {
            self.loss = 0.0;
        }
        self.loss += value as f64 / per_epoch as f64;
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("epoch {}/{} loss {value:.4}", (done - 1) / per_epoch + 1, self.epochs));
        if done % per_epoch == 0 {
            self.bar.suspend(|| tracing::info!("fine-tune epoch {}/{}: loss {:.4}", done / per_epoch, self.epochs, self.loss));
        }
        Ok(train::Flow::Continue)
    }
}

/// What fine-tuning produced.
pub struct Finetuned {
    /// The fine-tuned network: encoder, the kept head layers, the classifier as its probe
    /// reading the last kept layer.
    pub model: SimClr,
    /// Test-set class scores of the fine-tuned network, one row per readable test image.
    pub test_scores: Vec<f32>,
    /// The labels of those rows (unreadable test images are left out of both).
    pub test_labels: Vec<usize>,
    /// Training-subset accuracy (un-augmented images, BN in inference mode).
    pub train_accuracy: f64,
    /// Mean cross-entropy of the last epoch.
    pub final_loss: f64,
    /// The learning rate after batch-size scaling (the cosine's start).
    pub peak_lr: f64,
    /// Optimiser steps taken.
    pub steps: usize,
}

/// Fine-tunes `model` on the images `subset` of `train` and scores `test`.
pub fn finetune(
    model: SimClr,
    image_size: usize,
    train: Arc<dyn Dataset>,
    subset: &[usize],
    test: &dyn Dataset,
    cfg: &Finetune,
    bad: &BadImages,
    device: &Device,
) -> Result<Finetuned> {
    cfg.validate()?;
    let classes = train.num_classes();
    if classes == 0 {
        bail!("fine-tuning needs a labelled dataset");
    }
    let ad = device.clone().autodiff();
    // Built on the plain device, then moved: a parameter drawn on the autodiff device is no leaf
    // once moved, and cannot be marked for training.
    let clf = Classifier::new(model, cfg.from_head_layer, classes, cfg.seed, device)?.to_device(&ad).train();
    let dim = clf.fc.weight.dims()[0];
    let batch = cfg.batch.min(subset.len());
    let steps_per_epoch = subset.len() / batch;
    let total = cfg.epochs * steps_per_epoch;
    let peak_lr = cfg.lr_scaling.scale(cfg.lr, batch);
    let schedule = WarmupCosine { peak: peak_lr, warmup_steps: 0, total_steps: total };
    // Crop and flip only: no colour distortion (strength 0), no blur.
    let aug = AugmentConfig { blur: false, ..AugmentConfig::simclr(image_size, 0.0) };
    let loader = Loader { ds: train.clone(), pool: subset.to_vec(), views: 1, aug, seed: cfg.seed, batch, shard: Shard::WHOLE, bad: bad.clone() }.spawn(0, total);
    let mut optim = Optimizer::new(Rule::new(OptimizerKind::Sgd, cfg.momentum, cfg.weight_decay));
    let mut progress = EpochLoss { epochs: cfg.epochs, steps_per_epoch, loss: 0.0, bar: crate::progress::bar(total as u64, "fine-tuning") };
    let next_batch = |_| -> Result<Labelled<4>> {
        let b = loader.recv().context("the data loader stopped")??;
        let x = Tensor::<4>::from_data(TensorData::new(b.pixels, [batch, 3, image_size, image_size]), &ad);
        let labels: Vec<usize> = b.images.iter().map(|&i| train.label(i).context("an image of the subset has no label")).collect::<Result<_>>()?;
        Ok(Labelled { x, y: crate::eval::linear::one_hot(&labels, classes, &ad) })
    };
    let clf = train::run(clf, &mut optim, &train::Whole(CrossEntropy::<4>), |step| schedule.lr(step), 0..total, distributed::alone(), next_batch, &mut progress)?;
    progress.bar.finish_and_clear();
    let epoch_loss = progress.loss;
    let clf = clf.valid();
    let head = LinearClassifier {
        mean: vec![0.0; dim],
        std: vec![1.0; dim],
        weight: crate::floats(clf.fc.weight.val()),
        bias: crate::floats(clf.fc.bias.clone().expect("the classifier has a bias").val()),
        l2: cfg.weight_decay,
    };
    let layer = cfg.from_head_layer;
    let inner = device.clone().inner();
    let score = |f: &Features| head.scores(f, &inner);
    let test_f = extract(&clf.net, layer, test, image_size, 256, bad, device)?;
    let train_f = extract(&clf.net, layer, &Subset::new(train.clone(), subset.to_vec()), image_size, 256, bad, device)?;
    let train_accuracy = crate::eval::topk_accuracy(&score(&train_f), classes, &train_f.labels, 1)?;
    let Classifier { net, fc } = clf;
    let model = SimClr { probe: Some(fc), probe_layer: layer, ..net };
    Ok(Finetuned { model, test_scores: score(&test_f), test_labels: test_f.labels, train_accuracy, final_loss: epoch_loss, peak_lr, steps: total })
}
