//! Batch normalisation in training mode (Ioffe & Szegedy, 2015) — after every convolution of the
//! ResNet and every hidden layer of the projection head (§2.1, App. B.9) — with libtorch's own
//! kernels on the `tch` backend.
//!
//! Burn 0.22.1 builds a training-mode BN on every backend out of generic tensor operations: about
//! eight passes over the activation forward and fifteen backward, each writing a fresh tensor. On a
//! libtorch device [`batch_norm`] records the normalisation in libtorch's autograd graph instead
//! (`native_batch_norm`: a statistics pass and an output pass; one fused backward), as PyTorch runs
//! it. The running statistics are updated exactly as Burn's `BatchNorm` updates them (momentum on the
//! biased batch variance), so checkpoints and evaluation do not depend on the backend. Every other
//! case — another backend, evaluation, a frozen layer — is Burn's `BatchNorm::forward`.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// `norm` applied to `x` (`[batch, channels, ...]`), updating its running statistics in training.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if x.device().is_autodiff() && norm.training.is_enabled() && matches!(x.device().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(_)) {
        return libtorch::train(norm, x);
    }
    norm.forward(x)
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod libtorch {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use crate::libtorch::AutodiffTensor;
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, LibTorch};
    use burn::nn::BatchNorm;
    use burn::tensor::Tensor;

    /// Training-mode BN of `x` with libtorch's kernels; the running statistics as Burn's `BatchNorm`
    /// (`burn-nn`'s `forward_train`) updates them.
    pub(super) fn train<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
        let device = x.device();
        let (out, mean, variance) = <burn::backend::Dispatch as NativeBatchNorm>::batch_norm_train_native(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.epsilon,
        );
        let (mean, variance) = (Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(variance));
        let running = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
            let old = state.value_sync().to_device(&device);
            state.update(old.mul_scalar(1.0 - norm.momentum).add(batch.mul_scalar(norm.momentum)).detach());
        };
        running(&norm.running_mean, mean);
        running(&norm.running_var, variance);
        Tensor::from_dispatch(out)
    }

    /// Training-mode batch normalisation returning the output, the batch mean and the biased batch
    /// variance (the statistics without gradient).
    #[backend_extension(LibTorch, Autodiff)]
    pub trait NativeBatchNorm: Backend {
        /// BN of `x` with per-channel `gamma`, `beta` and `epsilon`.
        fn batch_norm_train_native(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// libtorch's BN: output, mean, biased variance (from its saved `1/√(var + ε)`).
    fn torch_batch_norm(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, epsilon: f64) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
        let (out, mean, inv_std) = x.internal_native_batch_norm_legit_no_stats(Some(gamma), Some(beta), true, 0.0, epsilon);
        // Fresh tensors: libtorch keeps `mean` and `inv_std` for its backward, and Burn may update
        // the statistics it is handed in place.
        let variance = (inv_std.detach().square().reciprocal() - epsilon).clamp_min(0.0);
        (out, mean.detach().copy(), variance)
    }

    impl NativeBatchNorm for LibTorch {
        fn batch_norm_train_native(x: TchTensor, gamma: TchTensor, beta: TchTensor, epsilon: f64) -> (TchTensor, TchTensor, TchTensor) {
            let (out, mean, variance) = torch_batch_norm(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
            (TchTensor::new(out), TchTensor::new(mean), TchTensor::new(variance))
        }
    }

    impl<C: CheckpointStrategy> NativeBatchNorm for Autodiff<LibTorch, C> {
        fn batch_norm_train_native(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let (out, (mean, variance)) = crate::libtorch::record::<C, 3, _>([x, gamma, beta], |[x, gamma, beta]| {
                let (out, mean, variance) = torch_batch_norm(x, gamma, beta, epsilon);
                (out, (mean, variance))
            });
            (out, AutodiffTensor::<C>::new(TchTensor::new(mean)), AutodiffTensor::<C>::new(TchTensor::new(variance)))
        }
    }
}
