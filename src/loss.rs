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

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Added to the self-similarity logits so they take no part in the softmax.
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
    let n = rows / 2;
    let device = z.device();
    let z = if l2_normalize { self::l2_normalize(z) } else { z };
    let logits = z.clone().matmul(z.transpose()).div_scalar(tau) - self_mask(rows, &device).mul_scalar(LARGE_NUM);
    let logits_ab = logits.clone().detach().slice([0..n, n..rows]);
    let log_prob = log_softmax(logits, 1);
    let positives = positive_mask(rows, &device);
    let loss = (log_prob * positives).sum().neg().div_scalar(n as f32);
    let (accuracy, entropy) = contrast_stats(logits_ab);
    NtXent { loss, accuracy, entropy }
}

/// The official `contrast_acc` and `contrast_entropy` of `logits_ab` (`[N, N]`, row i's positive
/// at column i): argmax hits, and `−mean Σ p log(p + 1e-8)` of the row softmax.
fn contrast_stats(logits_ab: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    let [n, _] = logits_ab.dims();
    let own: Vec<i64> = (0..n as i64).collect();
    let own = Tensor::<1, Int>::from_data(TensorData::new(own, [n]), &logits_ab.device()).reshape([n, 1]);
    let accuracy = logits_ab.clone().argmax(1).equal(own).float().mean();
    let p = softmax(logits_ab, 1);
    let entropy = (p.clone() * p.add_scalar(1e-8).log()).sum().neg().div_scalar(n as f32);
    (accuracy, entropy)
}

/// `[rows, rows]` with ones on the diagonal.
fn self_mask(rows: usize, device: &Device) -> Tensor<2> {
    mask_from(rows, |i| i, device)
}

/// `[rows, rows]` with a one at each anchor's positive, `(i + N) mod 2N`.
fn positive_mask(rows: usize, device: &Device) -> Tensor<2> {
    mask_from(rows, |i| (i + rows / 2) % rows, device)
}

fn mask_from(rows: usize, col: impl Fn(usize) -> usize, device: &Device) -> Tensor<2> {
    let mut data = vec![0f32; rows * rows];
    for i in 0..rows {
        data[i * rows + col(i)] = 1.0;
    }
    Tensor::from_data(TensorData::new(data, [rows, rows]), device)
}
