//! Semi-supervised fine-tuning on a fraction of the labels (paper §4.2, App. B.5; v2 §2):
//! class-balanced label subsets drawn with a seed and saved as an index file, the encoder (plus the
//! first K head layers, v2's "fine-tune from head layer K") and a new linear classifier trained
//! end to end with cross-entropy, Nesterov SGD, cosine schedule, crop + flip augmentation only.
//! With a randomly initialised network this is the supervised-from-scratch baseline. Its loop
//! ([`train_classifier`]: crop + flip views, the cosine schedule, the engine's steps) also trains
//! distillation's students ([`crate::distill`]).

use crate::augment::AugmentConfig;
use crate::data::loader::{Batch, Loader, Shard};
use crate::data::{BadImages, Dataset, Subset};
use crate::eval::extract;
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

/// How a classifier network trains: `finetune`, `distill`, `ablate`'s supervised baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    /// Epochs over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Base learning rate, scaled by the batch size as `lr_scaling` says (paper App. B.5:
    /// 0.05 × B / 256), then cosine-decayed to 0.
    pub lr: f64,
    /// How the base learning rate scales with the batch size.
    pub lr_scaling: LrScaling,
    /// The update rule (fine-tuning: SGD with Nesterov momentum, as the paper).
    pub optimizer: OptimizerKind,
    /// Momentum.
    pub momentum: f64,
    /// Weight decay (0 for fine-tuning, as the paper).
    pub weight_decay: f64,
    /// Smallest random-crop area of the training views, a fraction of the image in (0, 1].
    pub crop_min_area: f32,
    /// Colour distortion strength of the training views (paper App. A; 0: crop and flip only, as
    /// fine-tuning; `ablate`'s supervised cells of Table 1 set it).
    pub color_strength: f32,
    /// Seed of the data order and augmentation.
    pub seed: u64,
}

impl Fit {
    /// The update rule these settings make.
    pub fn rule(&self) -> Rule {
        Rule::new(self.optimizer, self.momentum, self.weight_decay)
    }

    /// Checks the settings, naming the flag of each.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::nonzero("--epochs", self.epochs)?;
        check::nonzero("--batch-size", self.batch)?;
        check::positive("--lr", self.lr)?;
        check::momentum("--momentum", self.momentum)?;
        check::finite_at_least("--weight-decay", self.weight_decay, 0.0)?;
        check::finite_at_least("colour strength", self.color_strength as f64, 0.0)?;
        if !(self.crop_min_area > 0.0 && self.crop_min_area <= 1.0) {
            bail!("--crop-min-area {}: must be in (0, 1] (the paper's 0.08; 1: no crop)", self.crop_min_area);
        }
        Ok(())
    }
}

/// Fine-tuning settings.
#[derive(Clone, Debug, Serialize)]
pub struct Finetune {
    /// Head layers kept under the classifier (0: classify h).
    pub from_head_layer: usize,
    /// The optimisation.
    #[serde(flatten)]
    pub fit: Fit,
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

    /// The network as a [`SimClr`] whose probe is the classifier, reading the last kept layer:
    /// what checkpoints hold and every command reads.
    pub fn into_model(self) -> SimClr {
        let Classifier { net, fc } = self;
        SimClr { probe: Some(fc), probe_layer: net.head.len(), ..net }
    }

    /// The classifier [`Classifier::into_model`] made `model` from; an error for a network whose
    /// probe does not read its last head layer (a pretraining run's).
    pub fn from_model(model: SimClr) -> Result<Self> {
        if model.probe_layer != model.head.len() {
            bail!("the network's classifier reads layer {} of its {} head layers: not a fine-tuned or distilled network", model.probe_layer, model.head.len());
        }
        let fc = model.probe.context("the network has no classifier")?;
        Ok(Classifier { net: SimClr { probe: None, probe_layer: 0, ..model }, fc })
    }
}

impl Classify<4> for Classifier {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.net.forward(x).pop().expect("the network returns h at least"))
    }
}

/// A classifier's view of its steps: a progress bar, each epoch's mean loss logged, the network
/// handed to `epoch_end` after each epoch, and an error once the loss is not a finite number.
struct EpochLoss<'a> {
    stage: &'static str,
    epochs: usize,
    steps_per_epoch: usize,
    /// The mean loss of the epoch so far (of the last epoch, at the end).
    loss: f64,
    bar: indicatif::ProgressBar,
    epoch_end: &'a mut dyn FnMut(EpochEnd<'_>) -> Result<()>,
}

/// A classifier's state at the end of one of its training epochs.
pub struct EpochEnd<'a> {
    /// Epochs done.
    pub epoch: usize,
    /// Steps done.
    pub steps: usize,
    /// The network.
    pub clf: &'a Classifier,
    /// The optimiser.
    pub optim: &'a Optimizer,
}

impl train::StepHook<Classifier> for EpochLoss<'_> {
    fn after_step(&mut self, end: train::StepEnd<'_, Classifier>) -> Result<train::Flow> {
        let (value, done, per_epoch) = (end.logged.get("loss").expect("a classifier's objective logs its loss"), end.done, self.steps_per_epoch);
        if !value.is_finite() {
            bail!("{} loss became {value} at step {done}; lower --lr", self.stage);
        }
        if (done - 1) % per_epoch == 0 {
            self.loss = 0.0;
        }
        self.loss += value as f64 / per_epoch as f64;
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("epoch {}/{} loss {value:.4}", (done - 1) / per_epoch + 1, self.epochs));
        if done % per_epoch == 0 {
            let epoch = done / per_epoch;
            self.bar.suspend(|| tracing::info!("{} epoch {epoch}/{}: loss {:.4}", self.stage, self.epochs, self.loss));
            (self.epoch_end)(EpochEnd { epoch, steps: done, clf: end.model, optim: end.optim })?;
        }
        Ok(train::Flow::Continue)
    }
}

/// A trained classifier.
pub struct Trained {
    /// The network, on the plain device.
    pub clf: Classifier,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// The learning rate after batch-size scaling (the cosine's start).
    pub peak_lr: f64,
    /// Optimiser steps taken.
    pub steps: usize,
}

/// Where a classifier's training starts: its network (built on the plain device), the optimiser
/// and the steps already done (0, or a resumed run's).
pub struct Start {
    /// The network.
    pub clf: Classifier,
    /// The optimiser, with its state.
    pub optim: Optimizer,
    /// Steps done.
    pub step: usize,
}

impl Start {
    /// A new training of `clf`, with a new optimiser of `fit`'s rule.
    pub fn fresh(clf: Classifier, fit: &Fit) -> Self {
        Start { clf, optim: Optimizer::new(fit.rule()), step: 0 }
    }
}

/// Trains the network of `start` on crop + flip views of side `image_size` of the images `pool`
/// of `train`, `fit.batch` a step, from `start.step` to the end of `fit.epochs`, minimising
/// `objective` on the batches `batch_of` makes of the loader's (on the autodiff device it is
/// given). `stage` names the training in the progress bar and the log; `epoch_end` sees the
/// network after each epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_classifier<O: train::Objective<Classifier>>(
    start: Start,
    train: Arc<dyn Dataset>,
    pool: &[usize],
    image_size: usize,
    fit: &Fit,
    objective: O,
    bad: &BadImages,
    stage: &'static str,
    mut batch_of: impl FnMut(Batch, &Device) -> Result<O::Batch>,
    epoch_end: &mut dyn FnMut(EpochEnd<'_>) -> Result<()>,
    device: &Device,
) -> Result<Trained> {
    fit.validate()?;
    let ad = device.clone().autodiff();
    // Built on the plain device, then moved: a parameter drawn on the autodiff device is no leaf
    // once moved, and cannot be marked for training.
    let Start { clf, mut optim, step: first } = start;
    let clf = clf.to_device(&ad).train();
    let batch = fit.batch.min(pool.len());
    let steps_per_epoch = pool.len() / batch;
    let total = fit.epochs.checked_mul(steps_per_epoch).with_context(|| format!("--epochs {}: too many steps to count; use fewer epochs", fit.epochs))?;
    let peak_lr = fit.lr_scaling.scale(fit.lr, batch);
    let schedule = WarmupCosine { peak: peak_lr, warmup_steps: 0, total_steps: total };
    // Crop and flip, colour distortion at `fit.color_strength` (none for fine-tuning), no blur;
    // resized as the network's run.
    let aug = AugmentConfig { blur: false, min_area: fit.crop_min_area, resize: clf.net.input_resize, ..AugmentConfig::simclr(image_size, fit.color_strength) };
    if first >= total {
        bail!("{stage} is complete: step {first} of the {total} that --epochs {} makes; start it afresh into a new --out, or give more --epochs", fit.epochs);
    }
    let loader = Loader { ds: train, pool: pool.to_vec(), views: 1, aug, seed: fit.seed, batch, shard: Shard::WHOLE, bad: bad.clone() }.spawn(first, total);
    let bar = crate::progress::bar(total as u64, stage);
    bar.set_position(first as u64);
    let mut progress = EpochLoss { stage, epochs: fit.epochs, steps_per_epoch, loss: 0.0, bar, epoch_end };
    let next_batch = |_| batch_of(loader.recv().context("the data loader stopped")??, &ad);
    let clf = train::run(clf, &mut optim, &train::Whole(objective), |step| schedule.lr(step), first..total, distributed::alone(), next_batch, &mut progress)?;
    progress.bar.finish_and_clear();
    Ok(Trained { clf: clf.valid(), final_loss: progress.loss, peak_lr, steps: total })
}

/// The pixels of a loader's batch of one view per image, `[n, 3, S, S]` on `device`.
pub fn view_pixels(batch: &Batch, image_size: usize, device: &Device) -> Tensor<4> {
    Tensor::<4>::from_data(TensorData::new(batch.pixels.clone(), [batch.images.len(), 3, image_size, image_size]), device)
}

/// The class scores of `model`'s probe (a fine-tuned network's classifier) on every readable
/// image of `ds`, preprocessed for evaluation, with their labels (empty for unlabelled images).
/// An error for a network without a probe.
pub fn probe_scores(model: &SimClr, ds: &dyn Dataset, image_size: usize, bad: &BadImages, device: &Device) -> Result<(Vec<f32>, Vec<usize>)> {
    let probe = model.probe.as_ref().context("the network has no classifier (probe) to score with")?;
    let dim = probe.weight.dims()[0];
    let head = LinearClassifier {
        mean: vec![0.0; dim],
        std: vec![1.0; dim],
        weight: crate::floats(probe.weight.val()),
        bias: probe.bias.as_ref().map_or_else(|| vec![0.0; probe.weight.dims()[1]], |b| crate::floats(b.val())),
        l2: 0.0,
    };
    let f = extract(model, model.probe_layer, ds, image_size, 256, bad, device)?;
    Ok((head.scores(&f, &device.clone().inner()), f.labels))
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
#[allow(clippy::too_many_arguments)]
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
    cfg.fit.validate()?;
    let classes = train.num_classes();
    if classes == 0 {
        bail!("fine-tuning needs a labelled dataset");
    }
    let clf = Classifier::new(model, cfg.from_head_layer, classes, cfg.fit.seed, device)?;
    let labelled = |b: Batch, ad: &Device| -> Result<Labelled<4>> {
        let labels: Vec<usize> = b.images.iter().map(|&i| train.label(i).context("an image of the subset has no label")).collect::<Result<_>>()?;
        Ok(Labelled { x: view_pixels(&b, image_size, ad), y: crate::eval::linear::one_hot(&labels, classes, ad) })
    };
    let trained = train_classifier(Start::fresh(clf, &cfg.fit), train.clone(), subset, image_size, &cfg.fit, CrossEntropy::<4>, bad, "fine-tuning", labelled, &mut |_| Ok(()), device)?;
    let model = trained.clf.into_model();
    let (test_scores, test_labels) = probe_scores(&model, test, image_size, bad, device)?;
    let (train_scores, train_labels) = probe_scores(&model, &Subset::new(train.clone(), subset.to_vec()), image_size, bad, device)?;
    let train_accuracy = crate::eval::topk_accuracy(&train_scores, classes, &train_labels, 1)?;
    Ok(Finetuned { model, test_scores, test_labels, train_accuracy, final_loss: trained.final_loss, peak_lr: trained.peak_lr, steps: trained.steps })
}
