//! SimCLR v2's third stage (arXiv 2006.10029 §2, "Self-training / knowledge distillation via
//! unlabeled examples"): the fine-tuned network as teacher, in inference mode, labels every
//! training image with its class probabilities, and a student (the same architecture without
//! projection head: self-distillation; or a smaller one: big-to-small) is trained from scratch on
//! them ([`crate::train::distill::Distillation`]), optionally with the labelled images'
//! cross-entropy mixed in (eq. 3). Views are crop + flip, as fine-tuning's; the teacher sees the
//! student's view.
//!
//! The teacher's logits are computed on the fly, each step on that step's views: the views differ
//! every epoch (they are the loader's, a function of seed, epoch and image), so a cache of them
//! would cost the same teacher passes and only pay when several students share the seed; the
//! measurements are in `Distilled::timing` and the README.

use crate::data::loader::Batch;
use crate::data::{BadImages, Dataset};
use crate::eval::finetune::{self, view_pixels, Classifier, EpochEnd, Fit, Start};
use crate::model::SimClr;
use crate::train::distill::{Distillation, Taught};
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Distillation settings.
#[derive(Clone, Debug, Serialize)]
pub struct Distill {
    /// τ of eq. 2 (the official notebook's default, 1).
    pub temperature: f32,
    /// Weight w of the labelled images' cross-entropy, in [0, 1] (the paper's α is 1 − w).
    pub label_weight: f32,
    /// The optimisation.
    #[serde(flatten)]
    pub fit: Fit,
}

impl Distill {
    /// Checks the settings, naming the flag of each.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature {}: must be a positive number (1: the teacher's probabilities as they are; below 1 sharper, above softer)", self.temperature);
        }
        if !(0.0..=1.0).contains(&self.label_weight) {
            bail!("--label-weight {}: must be in [0, 1] (0: the teacher alone, 1: the labels alone)", self.label_weight);
        }
        self.fit.validate()
    }
}

/// Where distillation's time went, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timing {
    /// The teacher's forward passes (its logits on every step's views).
    pub teacher_s: f64,
    /// The student's steps (forward, backward, update) and the loading of their views.
    pub student_s: f64,
}

/// What distillation produced.
pub struct Distilled {
    /// The student: its encoder, its classifier as the probe reading h.
    pub model: SimClr,
    /// The student's test-set class scores, one row per readable test image.
    pub test_scores: Vec<f32>,
    /// The teacher's, on the same rows.
    pub teacher_scores: Vec<f32>,
    /// The labels of those rows.
    pub test_labels: Vec<usize>,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// The learning rate after batch-size scaling.
    pub peak_lr: f64,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Where the time went.
    pub timing: Timing,
}

/// Distils `teacher` (a network with a classifier: its probe) into the student of `start` (a
/// classifier on h: [`new_student`], or a resumed one) on every image of `train`, views of side
/// `image_size`; the images `labelled` (empty: none) also bring their labels, weighted as
/// `cfg.label_weight` says. Scores both networks on `test`. `epoch_end` sees the student after
/// each epoch.
#[allow(clippy::too_many_arguments)]
pub fn distill(
    teacher: &SimClr,
    start: Start,
    image_size: usize,
    train: Arc<dyn Dataset>,
    labelled: &[usize],
    test: &dyn Dataset,
    cfg: &Distill,
    bad: &BadImages,
    epoch_end: &mut dyn FnMut(EpochEnd<'_>) -> Result<()>,
    device: &Device,
) -> Result<Distilled> {
    cfg.validate()?;
    let classes = teacher_classes(teacher)?;
    if train.num_classes() != 0 && train.num_classes() != classes {
        bail!("the teacher classifies into {classes} classes and the dataset has {}: give the dataset it was fine-tuned on", train.num_classes());
    }
    if cfg.label_weight > 0.0 && labelled.is_empty() {
        bail!("--label-weight {}: needs the labelled images (--subset, the file `simclr finetune` wrote)", cfg.label_weight);
    }
    let mut label_of = vec![None; train.len()];
    for &i in labelled {
        let slot = label_of.get_mut(i).with_context(|| format!("labelled image {i} is past the {} training images", train.len()))?;
        *slot = Some(train.label(i).with_context(|| format!("labelled image {i} has no label"))?);
    }
    let inner = device.clone().inner();
    let teacher = teacher.valid().to_device(&inner);
    let mut timing = Timing::default();
    let started = Instant::now();
    let taught = |b: Batch, ad: &Device| -> Result<Taught> {
        let t = Instant::now();
        let logits = teacher.probe_logits(&teacher.forward(view_pixels(&b, image_size, &inner))).expect("the teacher has a classifier");
        let logits = Tensor::<2>::from_data(logits.into_data(), ad);
        timing.teacher_s += t.elapsed().as_secs_f64();
        let labels = crate::eval::linear::one_hot_where_labelled(b.images.iter().map(|&i| label_of[i]), classes, ad);
        Ok(Taught { x: view_pixels(&b, image_size, ad), teacher: logits, labels })
    };
    let objective = Distillation { temperature: cfg.temperature, label_weight: cfg.label_weight };
    let every: Vec<usize> = (0..train.len()).collect();
    let trained = finetune::train_classifier(start, train, &every, image_size, &cfg.fit, objective, bad, "distillation", taught, epoch_end, device)?;
    timing.student_s = started.elapsed().as_secs_f64() - timing.teacher_s;
    let model = trained.clf.into_model();
    let (test_scores, test_labels) = finetune::probe_scores(&model, test, image_size, bad, device)?;
    let (teacher_scores, _) = finetune::probe_scores(&teacher, test, image_size, bad, device)?;
    Ok(Distilled { model, test_scores, teacher_scores, test_labels, final_loss: trained.final_loss, peak_lr: trained.peak_lr, steps: trained.steps, timing })
}

/// A new student: the encoder of `network` (a fresh network; its head and probe are dropped) under
/// a new classifier into `classes` drawn from `seed`.
pub fn new_student(network: SimClr, classes: usize, seed: u64, device: &Device) -> Result<Classifier> {
    Classifier::new(network, 0, classes, seed, device)
}

/// The classes of `teacher`'s classifier; an error naming the fix for a network without one.
pub fn teacher_classes(teacher: &SimClr) -> Result<usize> {
    match &teacher.probe {
        Some(probe) => Ok(probe.weight.dims()[1]),
        None => bail!("the teacher has no classifier: give the checkpoint `simclr finetune` wrote (its --out), or one pretrained with its online probe"),
    }
}
