//! Distillation (SimCLR v2 §2, eq. 2–3; Hinton, Vinyals & Dean 2015): a student trained on the
//! teacher's class probabilities at temperature τ, `L = −Σ_x Σ_y P_T(y|x; τ) log P_S(y|x; τ)`,
//! `P = softmax(logits / τ)`, optionally mixed with the cross-entropy of the labelled images
//! (eq. 3). The teacher's logits come with the batch: the objective is the same whether they are
//! computed on the fly or read from a cache.
//!
//! Scale, as the official notebook (`colabs/distillation_self_training.ipynb`, `add_kd_loss`):
//! the soft term is multiplied by τ², so that its gradient keeps its size when τ changes (the
//! gradient of the τ-softened cross-entropy shrinks as 1/τ² for large τ); at τ = 1 it is the
//! paper's eq. 2 exactly.

use super::supervised::{soft_cross_entropy, Classify};
use super::{Loss, Objective};
use crate::distributed::Collective;
use anyhow::Result;
use burn::tensor::activation::softmax;
use burn::tensor::Tensor;

/// The distillation loss of eq. 3 over a batch of `n` rows:
/// `(1/n) · [ w · Σ_labelled −log P_S(y|x) + (1 − w) · τ² · Σ_x Σ_y −P_T(y|x; τ) log P_S(y|x; τ) ]`,
/// `w` = [`Distillation::label_weight`] (the paper's α is 1 − w). Both sums run over the batch's
/// rows, so that over an epoch they are the paper's sums over the labelled set and over all
/// images. Logs `loss` (the total) and `agreement` (the share of rows whose student and teacher
/// top classes are the same).
#[derive(Clone, Copy, Debug)]
pub struct Distillation {
    /// τ of the teacher's and the student's softmax.
    pub temperature: f32,
    /// Weight w of the labelled rows' cross-entropy (0: distillation alone, the paper's default).
    pub label_weight: f32,
}

/// Images, the teacher's logits on them and the labels of the labelled ones.
pub struct Taught {
    /// The inputs (`[n, 3, S, S]`).
    pub x: Tensor<4>,
    /// The teacher's logits on `x` (`[n, classes]`), without gradient.
    pub teacher: Tensor<2>,
    /// One-hot labels `[n, classes]`, a row of zeros for an image without a label.
    pub labels: Tensor<2>,
}

impl<M: Classify<4>> Objective<M> for Distillation {
    type Batch = Taught;

    /// Each process distils alone: `ranks` unused.
    fn loss(&self, model: &M, batch: Taught, _: &'static dyn Collective) -> Result<Loss> {
        let (tau, w) = (self.temperature, self.label_weight);
        let rows = batch.teacher.dims()[0] as f32;
        let student = model.logits(batch.x);
        let teacher = batch.teacher.detach();
        let agree = student.clone().detach().argmax(1).equal(teacher.clone().argmax(1)).float().sum().div_scalar(rows);
        let targets = softmax(teacher.div_scalar(tau), 1);
        let mut total = soft_cross_entropy(student.clone().div_scalar(tau), targets).mul_scalar((1.0 - w) * tau * tau);
        if w > 0.0 {
            total = total + soft_cross_entropy(student, batch.labels).mul_scalar(w);
        }
        let total = total.div_scalar(rows);
        Ok(Loss { logged: vec![("loss", total.clone().detach()), ("agreement", agree)], total })
    }
}
