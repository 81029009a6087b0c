//! Cross-entropy against labels (paper §4 and App. B.5–B.6): fine-tuning the encoder with a linear
//! classifier, the supervised baseline of `ablate`, and the linear probe trained by SGD on frozen
//! features.

use super::{Loss, Objective};
use crate::distributed::Collective;
use anyhow::Result;
use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;

/// A network that maps a batch of `D`-dimensional inputs to class logits `[rows, classes]`.
pub trait Classify<const D: usize> {
    /// The logits of each row of `x`.
    fn logits(&self, x: Tensor<D>) -> Tensor<2>;
}

impl Classify<2> for burn::nn::Linear {
    fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward(x)
    }
}

/// Mean cross-entropy of the logits against one-hot labels, over inputs of dimension `D`. Logs
/// `loss`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropy<const D: usize>;

/// Inputs and their one-hot labels.
pub struct Labelled<const D: usize> {
    /// The inputs (images `[n, 3, S, S]`, or features `[n, d]`).
    pub x: Tensor<D>,
    /// One-hot labels `[n, classes]`.
    pub y: Tensor<2>,
}

impl<const D: usize, M: Classify<D>> Objective<M> for CrossEntropy<D> {
    type Batch = Labelled<D>;

    /// Each rank's own batch (fine-tuning and the probe run on every rank alone): `ranks` unused.
    fn loss(&self, model: &M, batch: Labelled<D>, _: &'static dyn Collective) -> Result<Loss> {
        let rows = batch.y.dims()[0];
        let loss = soft_cross_entropy(model.logits(batch.x), batch.y).div_scalar(rows as f32);
        Ok(Loss { logged: vec![("loss", loss.clone().detach())], total: loss })
    }
}

/// `−Σ_rows Σ_y targets · log softmax(logits)`: the cross-entropy of `logits` (`[rows, classes]`)
/// against target distributions (one-hot labels, a teacher's probabilities; a row of zeros adds
/// nothing), summed over the rows.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum().neg()
}
