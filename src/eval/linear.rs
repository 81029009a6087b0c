//! Linear classifiers on frozen features (paper §4 "linear evaluation protocol", App. B.6).
//!
//! Two solvers of multinomial logistic regression, `min_W,b  CE(softmax(XW + b), y) + λ/2 ‖W‖²`:
//! - [`fit_lbfgs`]: full-batch L-BFGS to convergence, the L2 strength chosen on a held-out 10% of the
//!   training set over a log grid (as App. B.6 does for transfer), then refitted on all of it;
//! - [`fit_sgd`]: mini-batch SGD with Nesterov momentum and a cosine schedule, for large sets.
//!
//! Features are standardised with the training set's per-column mean and std first.

use crate::eval::Features;
use crate::optim::{Optimizer, OptimizerKind, Rule};
use crate::schedule::WarmupCosine;
use crate::train::{self, supervised::{CrossEntropy, Labelled}};
use crate::distributed;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A fitted linear classifier with its input standardisation.
#[derive(Clone, Debug, Serialize)]
pub struct LinearClassifier {
    /// Per-feature mean subtracted first.
    pub mean: Vec<f32>,
    /// Per-feature std divided by next.
    pub std: Vec<f32>,
    /// Weights, `dim × classes`, row-major.
    pub weight: Vec<f32>,
    /// Biases, one per class.
    pub bias: Vec<f32>,
    /// The L2 strength used.
    pub l2: f64,
}

impl LinearClassifier {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    /// Class scores, `n × classes` row-major.
    pub fn scores(&self, f: &Features, device: &Device) -> Vec<f32> {
        let x = standardized(f, &self.mean, &self.std, device);
        let c = self.classes();
        let w = Tensor::<2>::from_data(TensorData::new(self.weight.clone(), [f.dim, c]), device);
        let b = Tensor::<2>::from_data(TensorData::new(self.bias.clone(), [1, c]), device);
        crate::floats(x.matmul(w) + b.expand([f.n, c]))
    }
}

/// Per-column mean and standard deviation (std floored at 1e-6).
pub fn column_stats(f: &Features) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f64; f.dim];
    let mut sq = vec![0f64; f.dim];
    for row in f.data.chunks(f.dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let n = f.n.max(1) as f64;
    let std = mean.iter().zip(&sq).map(|(m, s)| ((s / n - (m / n).powi(2)).max(0.0).sqrt().max(1e-6)) as f32).collect();
    (mean.iter().map(|m| (m / n) as f32).collect(), std)
}

fn standardized(f: &Features, mean: &[f32], std: &[f32], device: &Device) -> Tensor<2> {
    let data: Vec<f32> = f.data.chunks(f.dim).flat_map(|row| row.iter().enumerate().map(|(j, v)| (v - mean[j]) / std[j])).collect();
    Tensor::from_data(TensorData::new(data, [f.n, f.dim]), device)
}

/// One-hot rows `[labels.len(), classes]`.
pub(crate) fn one_hot(labels: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    one_hot_where_labelled(labels.iter().map(|&l| Some(l)), classes, device)
}

/// One-hot rows `[rows, classes]`, one a label, a row of zeros where there is none.
pub(crate) fn one_hot_where_labelled(labels: impl ExactSizeIterator<Item = Option<usize>>, classes: usize, device: &Device) -> Tensor<2> {
    let rows = labels.len();
    let mut data = vec![0f32; rows * classes];
    for (i, l) in labels.enumerate() {
        if let Some(l) = l {
            data[i * classes + l] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(data, [rows, classes]), device)
}

/// Penalised cross-entropy and its gradient at `params` = `[W (dim × C) row-major, b (C)]`.
fn objective(x: &Tensor<2>, y: &Tensor<2>, params: &[f64], l2: f64) -> (f64, Vec<f64>) {
    let [n, d] = x.dims();
    let c = y.dims()[1];
    let device = x.device();
    let w_host: Vec<f32> = params[..d * c].iter().map(|&v| v as f32).collect();
    let b_host: Vec<f32> = params[d * c..].iter().map(|&v| v as f32).collect();
    let w = Tensor::<2>::from_data(TensorData::new(w_host, [d, c]), &device);
    let b = Tensor::<2>::from_data(TensorData::new(b_host, [1, c]), &device);
    let logits = x.clone().matmul(w) + b.expand([n, c]);
    let ce: f32 = (log_softmax(logits.clone(), 1) * y.clone()).sum().neg().into_scalar();
    let residual = softmax(logits, 1) - y.clone();
    let grad_w = crate::floats(x.clone().transpose().matmul(residual.clone()));
    let grad_b = crate::floats(residual.sum_dim(0));
    let n = n as f64;
    let w_sq: f64 = params[..d * c].iter().map(|v| v * v).sum();
    let loss = ce as f64 / n + 0.5 * l2 * w_sq;
    let mut grad: Vec<f64> = grad_w.iter().zip(&params[..d * c]).map(|(g, w)| *g as f64 / n + l2 * w).collect();
    grad.extend(grad_b.iter().map(|g| *g as f64 / n));
    (loss, grad)
}

/// Minimises `f` (returning value and gradient) from `x0` with L-BFGS (memory 10) and a
/// backtracking Armijo line search; stops when the gradient's max-norm is below `tol` or the value
/// stops changing.
pub fn lbfgs(mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>), x0: Vec<f64>, max_iter: usize, tol: f64) -> Vec<f64> {
    const MEMORY: usize = 10;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    for _ in 0..max_iter {
        if g.iter().fold(0f64, |m, v| m.max(v.abs())) < tol {
            break;
        }
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            dir = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
            history.clear();
        }
        let mut step = if history.is_empty() { 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0) } else { 1.0 };
        let (mut x_new, mut f_new, mut g_new);
        loop {
            x_new = x.iter().zip(&dir).map(|(xi, di)| xi + step * di).collect::<Vec<_>>();
            (f_new, g_new) = f(&x_new);
            if f_new <= fx + 1e-4 * step * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            history.push_back((s, y, 1.0 / sy));
            if history.len() > MEMORY {
                history.pop_front();
            }
        }
        let converged = (fx - f_new).abs() <= 1e-10 * fx.abs().max(1.0);
        x = x_new;
        fx = f_new;
        g = g_new;
        if converged {
            break;
        }
    }
    x
}

/// Fits logistic regression with L2 strength `l2` by L-BFGS, starting from `init` if given.
pub fn fit_lbfgs_fixed(train: &Features, classes: usize, l2: f64, init: Option<&LinearClassifier>, device: &Device) -> LinearClassifier {
    let (mean, std) = column_stats(train);
    let x = standardized(train, &mean, &std, device);
    let y = one_hot(&train.labels, classes, device);
    let x0 = match init {
        Some(c) => c.weight.iter().chain(&c.bias).map(|&v| v as f64).collect(),
        None => vec![0.0; train.dim * classes + classes],
    };
    let params = lbfgs(|p| objective(&x, &y, p, l2), x0, 500, 1e-6);
    let (w, b) = params.split_at(train.dim * classes);
    LinearClassifier {
        mean,
        std,
        weight: w.iter().map(|&v| v as f32).collect(),
        bias: b.iter().map(|&v| v as f32).collect(),
        l2,
    }
}

/// The L2 grid searched by [`fit_lbfgs`]: 10⁻⁶ … 10⁰.
pub const L2_GRID: [f64; 7] = [1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

/// Logistic regression by L-BFGS with the L2 strength chosen on a held-out 10% of `train`
/// (split by `seed`), refitted on all of `train`. Returns the classifier and each grid value's
/// validation accuracy.
pub fn fit_lbfgs(train: &Features, classes: usize, seed: u64, device: &Device) -> anyhow::Result<(LinearClassifier, Vec<(f64, f64)>)> {
    let mut order: Vec<usize> = (0..train.n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held = (train.n / 10).max(1);
    let (val_idx, fit_idx) = order.split_at(held);
    let (fit, val) = (train.subset(fit_idx), train.subset(val_idx));
    let mut scores = Vec::new();
    let mut prev: Option<LinearClassifier> = None;
    let bar = crate::progress::bar(L2_GRID.len() as u64 + 1, "L-BFGS fits (L2 grid, then all of train)");
    for &l2 in &L2_GRID {
        bar.set_message(format!("L2 {l2:.0e}"));
        let clf = fit_lbfgs_fixed(&fit, classes, l2, prev.as_ref(), device);
        let acc = crate::eval::topk_accuracy(&clf.scores(&val, device), classes, &val.labels, 1)?;
        scores.push((l2, acc));
        prev = Some(clf);
        bar.inc(1);
    }
    let best = scores.iter().fold(scores[0], |b, s| if s.1 > b.1 { *s } else { b }).0;
    bar.set_message(format!("L2 {best:.0e} on all of train"));
    let clf = fit_lbfgs_fixed(train, classes, best, None, device);
    bar.finish_and_clear();
    Ok((clf, scores))
}

/// Settings of the SGD solver.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SgdProbe {
    /// Epochs over the cached features.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Peak learning rate (cosine-decayed to 0).
    pub lr: f64,
    /// Nesterov momentum.
    pub momentum: f64,
    /// Weight decay on the weights (not the bias).
    pub weight_decay: f64,
}

impl Default for SgdProbe {
    fn default() -> Self {
        Self { epochs: 30, batch: 256, lr: 0.1, momentum: 0.9, weight_decay: 0.0 }
    }
}

impl SgdProbe {
    /// Checks the settings, naming the flag of each.
    pub fn validate(&self) -> anyhow::Result<()> {
        use crate::config::check;
        check::nonzero("--sgd-epochs", self.epochs)?;
        check::nonzero("the SGD probe's batch size", self.batch)?;
        check::positive("--sgd-lr", self.lr)?;
        check::momentum("the SGD probe's momentum", self.momentum)?;
        check::finite_at_least("the SGD probe's weight decay", self.weight_decay, 0.0)
    }
}

/// Logistic regression by mini-batch Nesterov SGD with a cosine schedule, shuffled by `seed`.
pub fn fit_sgd(train: &Features, classes: usize, cfg: SgdProbe, seed: u64, device: &Device) -> LinearClassifier {
    let (mean, std) = column_stats(train);
    let ad = device.clone().autodiff();
    let linear: Linear = LinearConfig::new(train.dim, classes).with_initializer(burn::module::Initializer::Zeros).init(&ad);
    let mut optim = Optimizer::new(Rule::new(OptimizerKind::Sgd, cfg.momentum, cfg.weight_decay));
    let steps_per_epoch = train.n.div_ceil(cfg.batch);
    let schedule = WarmupCosine { peak: cfg.lr, warmup_steps: 0, total_steps: cfg.epochs * steps_per_epoch };
    let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
    let next_batch = |step: usize| -> anyhow::Result<Labelled<2>> {
        let epoch = step / steps_per_epoch;
        if order.0 != epoch {
            order = (epoch, (0..train.n).collect());
            order.1.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch as u64));
        }
        let at = (step % steps_per_epoch) * cfg.batch;
        let part = train.subset(&order.1[at..(at + cfg.batch).min(train.n)]);
        Ok(Labelled { x: standardized(&part, &mean, &std, &ad), y: one_hot(&part.labels, classes, &ad) })
    };
    let linear = train::run(linear, &mut optim, &train::Whole(CrossEntropy::<2>), |step| schedule.lr(step), 0..cfg.epochs * steps_per_epoch, distributed::alone(), next_batch, &mut ())
        .expect("the batches of features in memory and the cross-entropy of a linear layer do not fail");
    let linear = linear.valid();
    LinearClassifier {
        mean,
        std,
        weight: crate::floats(linear.weight.val()),
        bias: crate::floats(linear.bias.expect("the probe has a bias").val()),
        l2: cfg.weight_decay,
    }
}

/// How the linear probe is fitted.
#[derive(Clone, Copy, Debug)]
pub enum Fit {
    /// L-BFGS to convergence, L2 chosen on a held-out 10% of the training features ([`fit_lbfgs`]).
    Lbfgs,
    /// Mini-batch Nesterov SGD with a cosine schedule ([`fit_sgd`]).
    Sgd(SgdProbe),
}

/// The linear evaluation protocol's result on one layer's features.
pub struct Probe {
    /// The fitted classifier.
    pub classifier: LinearClassifier,
    /// The L2 search of L-BFGS: (L2, held-out accuracy) of each candidate (empty for SGD).
    pub l2_validation: Vec<(f64, f64)>,
    /// Top-1 accuracy on the training features.
    pub train_top1: f64,
    /// The classifier's scores of each test row (`[test rows, classes]`).
    pub test_scores: Vec<f32>,
    /// Top-1 accuracy on the test features.
    pub test_top1: f64,
}

/// The linear evaluation protocol (paper §4, App. B.5) on frozen features: a multinomial logistic
/// regression fitted on `train` as `fit` says (seeded by `seed`), scored on `train` and `test`.
/// `linear-eval`, `ablate` and `demo` all evaluate through it.
pub fn probe(train: &Features, test: &Features, classes: usize, fit: Fit, seed: u64, device: &Device) -> anyhow::Result<Probe> {
    let device = device.clone().inner();
    let (classifier, l2_validation) = match fit {
        Fit::Lbfgs => fit_lbfgs(train, classes, seed, &device)?,
        Fit::Sgd(sgd) => {
            sgd.validate()?;
            (fit_sgd(train, classes, sgd, seed, &device), vec![])
        }
    };
    let train_top1 = crate::eval::topk_accuracy(&classifier.scores(train, &device), classes, &train.labels, 1)?;
    let test_scores = classifier.scores(test, &device);
    let test_top1 = crate::eval::topk_accuracy(&test_scores, classes, &test.labels, 1)?;
    Ok(Probe { classifier, l2_validation, train_top1, test_scores, test_top1 })
}
