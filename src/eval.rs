//! Evaluation of a learned representation (paper §4, App. B.6): features of un-augmented images
//! from the frozen network, then a multinomial logistic-regression probe on them.
//!
//! Features are standardised with the training set's mean and std, and the probe minimises
//! cross-entropy + `l2/2 · ‖W‖²` by full-batch Adam until the loss stops improving.

use crate::augment::{augment, AugmentConfig};
use crate::data::Dataset;
use crate::head::SimClr;
use crate::optim::{Optimizer, Rule};
use anyhow::{bail, Result};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Features of a labelled dataset, row-major `n × dim`.
#[derive(Clone, Debug)]
pub struct Features {
    /// Values.
    pub data: Vec<f32>,
    /// Number of rows.
    pub n: usize,
    /// Dimension of a row.
    pub dim: usize,
    /// Label of each row.
    pub labels: Vec<usize>,
}

/// Output `layer` of the network (0 = h, k = head layer k) for every image of `ds`, resized to
/// `image_size` without augmentation, computed in batches of `batch` with BN in inference mode.
pub fn extract(model: &SimClr, layer: usize, ds: &dyn Dataset, image_size: usize, batch: usize, device: &Device) -> Result<Features> {
    let model = model.valid();
    let device = device.clone().inner();
    let model = model.to_device(&device);
    let aug = AugmentConfig::identity(image_size);
    let mut data = Vec::new();
    let mut labels = Vec::with_capacity(ds.len());
    let mut dim = 0;
    for start in (0..ds.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(ds.len())).collect();
        let pixels: Vec<Vec<f32>> = idx
            .par_iter()
            .map(|&i| Ok(augment(&ds.image(i)?, &aug, &mut ChaCha8Rng::seed_from_u64(0)).data))
            .collect::<Result<_>>()?;
        let x = Tensor::<4>::from_data(TensorData::new(pixels.concat(), [idx.len(), 3, image_size, image_size]), &device);
        let mut hiddens = model.forward(x);
        if layer >= hiddens.len() {
            bail!("layer {layer} does not exist: the model has h (0) and {} head layers", hiddens.len() - 1);
        }
        let f = hiddens.swap_remove(layer);
        dim = f.dims()[1];
        data.extend(crate::floats(f));
        for &i in &idx {
            match ds.label(i) {
                Some(l) => labels.push(l),
                None => bail!("image {i} has no label: a linear probe needs a labelled dataset"),
            }
        }
    }
    Ok(Features { n: labels.len(), dim, data, labels })
}

/// A fitted multinomial logistic-regression probe.
pub struct LinearProbe {
    mean: Vec<f32>,
    std: Vec<f32>,
    linear: Linear,
    device: Device,
}

/// Probe settings.
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Maximum full-batch steps.
    pub max_steps: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { l2: 1e-4, max_steps: 500, lr: 0.05 }
    }
}

impl LinearProbe {
    /// Fits the probe on `train` with `classes` classes.
    pub fn fit(train: &Features, classes: usize, cfg: ProbeConfig, device: &Device) -> Self {
        let (mean, std) = column_stats(train);
        let inner = device.clone().inner();
        let ad = inner.clone().autodiff();
        let x = standardized(train, &mean, &std, &ad);
        let y = one_hot(&train.labels, classes, &ad);
        let mut linear = LinearConfig::new(train.dim, classes).init(&ad);
        let mut optim = Optimizer::new(Rule::new(crate::optim::OptimizerKind::Adamw, 0.9, 0.0));
        let mut best = f32::INFINITY;
        let mut stale = 0;
        for _ in 0..cfg.max_steps {
            let logits = linear.forward(x.clone());
            let ce = (log_softmax(logits, 1) * y.clone()).sum().neg().div_scalar(train.n as f32);
            let loss = ce + linear.weight.val().square().sum().mul_scalar(cfg.l2 / 2.0);
            let grads = GradientsParams::from_grads(loss.backward(), &linear);
            linear = optim.step(cfg.lr, linear, grads);
            let value: f32 = loss.into_scalar();
            if value < best - 1e-5 {
                best = value;
                stale = 0;
            } else {
                stale += 1;
                if stale >= 20 {
                    break;
                }
            }
        }
        Self { mean, std, linear: linear.valid(), device: inner }
    }

    /// Predicted class of each row.
    pub fn predict(&self, feats: &Features) -> Vec<usize> {
        let x = standardized(feats, &self.mean, &self.std, &self.device);
        let pred: Tensor<2, Int> = self.linear.forward(x).argmax(1);
        pred.into_data().convert::<i64>().try_to_vec::<i64>().expect("argmax gives integers").into_iter().map(|p| p as usize).collect()
    }

    /// Fraction of rows classified correctly.
    pub fn accuracy(&self, feats: &Features) -> f64 {
        let pred = self.predict(feats);
        pred.iter().zip(&feats.labels).filter(|(p, l)| p == l).count() as f64 / feats.n.max(1) as f64
    }
}

/// Per-column mean and standard deviation (std floored at 1e-6).
fn column_stats(f: &Features) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f64; f.dim];
    let mut sq = vec![0f64; f.dim];
    for row in f.data.chunks(f.dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let n = f.n as f64;
    let std = mean.iter().zip(&sq).map(|(m, s)| ((s / n - (m / n).powi(2)).max(0.0).sqrt().max(1e-6)) as f32).collect();
    (mean.iter().map(|m| (m / n) as f32).collect(), std)
}

fn standardized(f: &Features, mean: &[f32], std: &[f32], device: &Device) -> Tensor<2> {
    let data: Vec<f32> = f.data.chunks(f.dim).flat_map(|row| row.iter().enumerate().map(|(j, v)| (v - mean[j]) / std[j])).collect();
    Tensor::from_data(TensorData::new(data, [f.n, f.dim]), device)
}

fn one_hot(labels: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        data[i * classes + l] = 1.0;
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), classes]), device)
}
