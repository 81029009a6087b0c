//! The NT-Xent objective (normalised temperature-scaled cross entropy; paper §2.1, eq. 1;
//! official `objective.py`).
//!
//! For a batch of N images there are 2N views; rows `i` and `i + N` of `z` are the two views of
//! image `i`. With `s(u, v) = uᵀv / (‖u‖‖v‖)`:
//!
//! `ℓ(i, j) = −log( exp(s(z_i, z_j)/τ) / Σ_{k≠i} exp(s(z_i, z_k)/τ) )`, and the loss is the mean of
//! ℓ over all 2N anchors (each view is the anchor once, its pair the positive, the other 2N − 2
//! views the negatives).
//!
//! As the official code logs them, we also report the contrastive accuracy (fraction of anchors
//! whose positive has the highest similarity) and the mean entropy of the contrastive
//! distribution over the 2N − 1 candidates.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Added to the self-similarity logits so they take no part in the softmax.
const LARGE_NUM: f32 = 1e9;

/// The loss and the statistics the training loop logs.
pub struct NtXent {
    /// Scalar loss (shape `[1]`), differentiable.
    pub loss: Tensor<1>,
    /// Fraction of anchors whose positive is ranked first (shape `[1]`, detached).
    pub accuracy: Tensor<1>,
    /// Mean entropy of the contrastive distribution (shape `[1]`, detached).
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
    let [rows, _] = z.dims();
    assert!(rows >= 4 && rows % 2 == 0, "NT-Xent needs 2N rows with N >= 2, got {rows}");
    let n = rows / 2;
    let device = z.device();
    let z = l2_normalize(z);
    let logits = z.clone().matmul(z.transpose()).div_scalar(tau) - self_mask(rows, &device).mul_scalar(LARGE_NUM);
    let log_prob = log_softmax(logits, 1);
    let positives = positive_mask(rows, &device);
    let loss = (log_prob.clone() * positives).sum().neg().div_scalar(rows as f32);

    let log_prob = log_prob.detach();
    let entropy = (log_prob.clone().exp() * log_prob.clone()).sum().neg().div_scalar(rows as f32);
    let partner: Vec<i64> = (0..rows).map(|i| ((i + n) % rows) as i64).collect();
    let partner = Tensor::<1, Int>::from_data(TensorData::new(partner, [rows]), &device).reshape([rows, 1]);
    let accuracy = log_prob.argmax(1).equal(partner).float().mean();
    NtXent { loss, accuracy, entropy }
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
