//! Batch normalisation in training mode (Ioffe & Szegedy, 2015) — after every convolution of the
//! ResNet and every hidden layer of the projection head (§2.1, App. B.9) — as one operation with
//! its own backward.
//!
//! Burn 0.22.1 builds a training-mode BN on every backend out of generic tensor operations: about
//! ten passes over the activation forward (two of them layout copies) and fifteen backward, each
//! writing a fresh tensor. Here it is one Burn autodiff operation per backend:
//!
//! - flex (`f32`): per channel, one pass for the batch statistics and one for
//!   `y = γ·(x − μ)/√(σ² + ε) + β`; backward one pass for `Σ dy` and `Σ dy·x̂` and one for
//!   `dx = γ/√(σ² + ε) · (dy − Σdy/M − x̂·Σ(dy·x̂)/M)` (M values per channel).
//! - libtorch: `native_batch_norm` recorded in libtorch's autograd graph, as PyTorch runs it.
//!
//! In a data-parallel run with sync BN (the ranks in [`Compute::sync_bn`]) the statistics and the
//! backward's per-channel sums are over every rank's part of the batch: flex sums them inside its two passes,
//! libtorch takes an operation of ours (libtorch's SyncBatchNorm kernels are CUDA-only), and every
//! other backend (wgpu, vulkan) composes the BN of tensor operations around a differentiable sum
//! over the ranks ([`synced_train`]), whose backward autodiff derives.
//!
//! [`batch_norm_relu`] folds the ReLU that follows most BNs of the ResNet into the same operation
//! (on flex the backward recomputes `y` from `x` to mask `dy`; no extra tensor is kept).
//!
//! The running statistics are updated exactly as Burn's `BatchNorm` updates them (momentum on the
//! biased batch variance), so checkpoints and evaluation do not depend on the backend; not at all
//! where the compute says so ([`Compute::freeze_running_stats`]: the gradient cache's first pass). Every other
//! case — another backend on one rank, evaluation, a frozen layer — is Burn's `BatchNorm::forward`.

use crate::ops::compute::Compute;
use crate::distributed::Collective;
use crate::ops::all_reduce::all_reduce_sum;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// `norm` applied to `x` (`[batch, channels, ...]`), updating its running statistics in training;
/// with the statistics of `compute.sync_bn`'s ranks when set.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>, compute: &Compute) -> Tensor<D> {
    normalize(norm, x, false, compute)
}

/// `relu(norm(x))` as [`batch_norm`] followed by a ReLU.
pub fn batch_norm_relu<const D: usize>(norm: &BatchNorm, x: Tensor<D>, compute: &Compute) -> Tensor<D> {
    normalize(norm, x, true, compute)
}

fn normalize<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, compute: &Compute) -> Tensor<D> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    let update = !compute.freeze_running_stats;
    #[cfg(any(feature = "flex", feature = "tch"))]
    if training && super::has_own_ops(&x) {
        return own::train(norm, x, relu, compute.sync_bn, update);
    }
    if training && (compute.sync_bn.is_some() || !update) {
        return train_composed(norm, x, relu, compute.sync_bn.unwrap_or(crate::distributed::alone()), update);
    }
    let y = norm.forward(x);
    if relu { burn::tensor::activation::relu(y) } else { y }
}

/// Training-mode BN (and ReLU if `relu`) of `x` with the statistics of every rank's part of the
/// batch, on any backend: per-channel sums of this rank's values summed over the ranks by
/// [`all_reduce_sum`], then `y = γ·(x − μ)/√(σ² + ε) + β` in tensor operations. Autodiff gives the
/// sync-BN backward: the sum over the ranks' gradients that reaches each rank's statistics is
/// `Σdy` and `Σdy·(x − μ)` over the whole batch. On one rank it is plain training-mode BN.
pub fn synced_train<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, world: &'static dyn Collective) -> Tensor<D> {
    train_composed(norm, x, relu, world, true)
}

/// [`synced_train`], the running statistics updated only if `update`.
fn train_composed<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, world: &'static dyn Collective, update: bool) -> Tensor<D> {
    let channels = x.dims()[1];
    let count = (x.shape().num_elements() / channels * world.ranks()) as f64;
    let mean = all_reduce_sum(per_channel_sum(x.clone()), world).div_scalar(count);
    let centred = x - along_channels::<D>(mean.clone());
    let variance = all_reduce_sum(per_channel_sum(centred.clone().square()), world).div_scalar(count);
    let scale = norm.gamma.val() * variance.clone().add_scalar(norm.epsilon).sqrt().recip();
    let y = centred * along_channels::<D>(scale) + along_channels::<D>(norm.beta.val());
    if update {
        update_running(norm, mean, variance);
    }
    if relu { burn::tensor::activation::relu(y) } else { y }
}

/// Per-channel sums of `[batch, channels, ...]` values, as `[channels]`.
fn per_channel_sum<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let channels = x.dims()[1];
    (0..D).filter(|&d| d != 1).fold(x, |t, d| t.sum_dim(d)).reshape([channels])
}

/// A `[channels]` vector shaped `[1, channels, 1, …]` to broadcast against a `D`-dimensional batch.
fn along_channels<const D: usize>(v: Tensor<1>) -> Tensor<D> {
    let mut dims = [1; D];
    dims[1] = v.dims()[0];
    v.reshape(dims)
}

/// `norm`'s running statistics moved towards the batch `mean` and biased `variance` by its
/// momentum, as Burn's `BatchNorm` moves them.
fn update_running(norm: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let running = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let old = state.value_sync().to_device(&device);
        state.update(old.mul_scalar(1.0 - norm.momentum).add(batch.detach().mul_scalar(norm.momentum)).detach());
    };
    running(&norm.running_mean, mean);
    running(&norm.running_var, variance);
}

#[cfg(any(feature = "flex", feature = "tch"))]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use crate::distributed::Collective;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Backend};
    use burn::nn::BatchNorm;
    use burn::tensor::Tensor;

    /// Training-mode BN of `x` by [`OwnBatchNorm`]; if `update`, the running statistics as Burn's
    /// `BatchNorm` (`burn-nn`'s `forward_train`) updates them.
    pub(super) fn train<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, sync: Option<&'static dyn Collective>, update: bool) -> Tensor<D> {
        let (out, mean, variance) = <burn::backend::Dispatch as OwnBatchNorm>::batch_norm_train_own(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.epsilon,
            relu,
            sync,
        );
        if update {
            super::update_running(norm, Tensor::from_dispatch(mean), Tensor::from_dispatch(variance));
        }
        Tensor::from_dispatch(out)
    }

    /// Training-mode batch normalisation (followed by a ReLU if `relu`) returning the output, the
    /// batch mean and the biased batch variance (the statistics without gradient); with `sync`,
    /// the statistics and the backward's sums over its ranks.
    #[backend_extension(Flex: cfg(feature = "flex"), LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait OwnBatchNorm: Backend {
        /// BN of `x` with per-channel `gamma`, `beta` and `epsilon`.
        fn batch_norm_train_own(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
            sync: Option<&'static dyn Collective>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    #[cfg(feature = "flex")]
    mod flex;

    #[cfg(feature = "tch")]
    mod libtorch;
}
