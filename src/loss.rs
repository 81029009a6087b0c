//! The NT-Xent objective (normalised temperature-scaled cross entropy; paper §2.1, eq. 1;
//! official `objective.py`).
//!
//! For a batch of N images there are 2N views; rows `i` and `i + N` of `z` are the two views of
//! image `i`. With `s(u, v) = uᵀv / (‖u‖‖v‖)`:
//!
//! `ℓ(i, j) = −log( exp(s(z_i, z_j)/τ) / Σ_{k≠i} exp(s(z_i, z_k)/τ) )` for each of the 2N anchors
//! (each view is the anchor once, its pair the positive, the other 2N − 2 views the negatives).
//!
//! **Scale, as the official code**: `add_contrastive_loss` returns `mean(loss_a + loss_b)`, the
//! first views' mean ℓ plus the second views' mean ℓ, i.e. Σ ℓ / N — twice the mean over the 2N
//! anchors of the paper's Algorithm 1. The scale matters with LARS: BN parameters and biases are
//! not trust-scaled, so their step is proportional to it, and inside the trust ratio the weight
//! decay λw weighs against it. Official hyper-parameters (LR, weight decay) assume this scale.
//!
//! The logged statistics are the official `contrast_acc` and `contrast_entropy`, computed on
//! `logits_ab` alone: each first view against the N second views. The accuracy is the fraction of
//! first views whose own second view has the highest similarity; the entropy the mean entropy of
//! `softmax(logits_ab)` over those N candidates.
//!
//! **Several ranks** ([`nt_xent_gathered`]): each rank computes the rows of its own views against
//! the columns of every rank's views, as the official `tf2/objective.py` does, and the ranks' parts
//! add up to the one-process values.

use crate::views::{Gathered, Views};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor};

/// Subtracted from the self-similarity logits so they take no part in the softmax.
const LARGE_NUM: f32 = 1e9;

/// The loss and the statistics the training loop logs.
pub struct NtXent {
    /// Scalar loss Σ ℓ / N (shape `[1]`), differentiable.
    pub loss: Tensor<1>,
    /// Official `contrast_acc`: fraction of first views whose second view ranks first among the N
    /// second views (shape `[1]`, detached).
    pub accuracy: Tensor<1>,
    /// Official `contrast_entropy`: mean entropy of `softmax(logits_ab)` (shape `[1]`, detached).
    pub entropy: Tensor<1>,
}

/// Rows of `z` scaled to unit L2 norm (norms below 1e-12 are clamped, as `F.normalize`).
pub fn l2_normalize(z: Tensor<2>) -> Tensor<2> {
    let dims = z.dims();
    let norm = z.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    z / norm.expand(dims)
}

/// NT-Xent of `z` (`[2N, D]`, views of image `i` at rows `i` and `i + N`) at temperature `tau`.
pub fn nt_xent(z: Tensor<2>, tau: f32) -> NtXent {
    nt_xent_with(z, tau, true)
}

/// [`nt_xent`], or without `l2_normalize` the same objective on raw dot products `z_iᵀz_k / τ`
/// (paper Table 5's "ℓ2 norm: no" rows).
pub fn nt_xent_with(z: Tensor<2>, tau: f32, l2_normalize: bool) -> NtXent {
    let [rows, _] = z.dims();
    assert!(rows >= 4 && rows % 2 == 0, "NT-Xent needs 2N rows with N >= 2, got {rows}");
    nt_xent_gathered(&Gathered::whole(Views::new(z)), tau, l2_normalize)
}

/// This rank's part of the NT-Xent of a global batch gathered over the ranks (official
/// `tf2/objective.py`): its own 2n views are the anchors, against the 2N views of every rank, so
/// the logits are `[2n, 2N]` on each rank rather than `[2N, 2N]`. Every value returned (the loss,
/// the accuracy and the entropy) is this rank's share of the global one — a sum over its anchors
/// divided by the global N — so the ranks' values add up to the one-process values; with one
/// process they are those values.
pub fn nt_xent_gathered(views: &Gathered, tau: f32, l2_normalize: bool) -> NtXent {
    let (n, total) = (views.local_images(), views.images());
    let device = views.local.device();
    let unit = |z: &Tensor<2>| if l2_normalize { self::l2_normalize(z.clone()) } else { z.clone() };
    let (anchors, all) = (unit(&views.local), unit(&views.all));
    let own: Vec<usize> = (0..2 * n).map(|row| views.global_row(row)).collect();
    let positives: Vec<usize> = own.iter().map(|&row| views.partner(row)).collect();
    // Each anchor's own column, then its positive's, picked by index: no dense `[2n, 2N]` masks,
    // so the loss of a big batch (the gradient cache's) holds only its logits and their softmax.
    let own_logit = Tensor::full([2 * n, 1], -LARGE_NUM, &device);
    let logits = anchors.matmul(all.transpose()).div_scalar(tau).scatter(1, columns(&own, &device), own_logit, IndexingUpdateOp::Add);
    let logits_ab = logits.clone().detach().slice([0..n, total..2 * total]);
    let loss = log_softmax(logits, 1).gather(1, columns(&positives, &device)).sum().neg().div_scalar(total as f32);
    let (accuracy, entropy) = contrast_stats(logits_ab, views.offset, total);
    NtXent { loss, accuracy, entropy }
}

/// The official `contrast_acc` and `contrast_entropy` of `logits_ab` (`[n, N]`: row i is the first
/// view of global image `offset + i`, whose positive is column `offset + i`): argmax hits, and
/// `−Σ p log(p + 1e-8)` of the row softmax, each summed over the rows and divided by `total` (N).
fn contrast_stats(logits_ab: Tensor<2>, offset: usize, total: usize) -> (Tensor<1>, Tensor<1>) {
    let [n, _] = logits_ab.dims();
    let own: Vec<usize> = (offset..offset + n).collect();
    let accuracy = logits_ab.clone().argmax(1).equal(columns(&own, &logits_ab.device())).float().sum().div_scalar(total as f32);
    let p = softmax(logits_ab, 1);
    let entropy = (p.clone() * p.add_scalar(1e-8).log()).sum().neg().div_scalar(total as f32);
    (accuracy, entropy)
}

/// `[cols.len(), 1]`: row `i` holds column index `cols[i]`.
fn columns(cols: &[usize], device: &Device) -> Tensor<2, Int> {
    crate::ops::indices(cols, device).reshape([cols.len(), 1])
}
