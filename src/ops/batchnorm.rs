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
//! In a data-parallel run with sync BN (the ranks in [`Compute::sync_bn`]) the statistics and the backward's
//! per-channel sums are over every rank's part of the batch: flex sums them inside its two passes,
//! libtorch takes an operation of ours (libtorch's SyncBatchNorm kernels are CUDA-only), and every
//! other backend (wgpu, vulkan) composes the BN of tensor operations around a differentiable sum
//! over the ranks ([`synced_train`]), whose backward autodiff derives.
//!
//! [`batch_norm_relu`] folds the ReLU that follows most BNs of the ResNet into the same operation
//! (on flex the backward recomputes `y` from `x` to mask `dy`; no extra tensor is kept).
//!
//! The running statistics are updated exactly as Burn's `BatchNorm` updates them (momentum on the
//! biased batch variance), so checkpoints and evaluation do not depend on the backend. Every other
//! case — another backend on one rank, evaluation, a frozen layer — is Burn's `BatchNorm::forward`.

use crate::device::Compute;
use crate::distributed::Collective;
use crate::ops::all_reduce::all_reduce_sum;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// `norm` applied to `x` (`[batch, channels, ...]`), updating its running statistics in training;
/// with the statistics of `compute.sync_bn`'s ranks when set.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>, compute: &Compute) -> Tensor<D> {
    normalize(norm, x, false, compute.sync_bn)
}

/// `relu(norm(x))` as [`batch_norm`] followed by a ReLU.
pub fn batch_norm_relu<const D: usize>(norm: &BatchNorm, x: Tensor<D>, compute: &Compute) -> Tensor<D> {
    normalize(norm, x, true, compute.sync_bn)
}

fn normalize<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, sync: Option<&'static dyn Collective>) -> Tensor<D> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    #[cfg(any(feature = "flex", feature = "tch"))]
    if training && super::has_own_ops(&x) {
        return own::train(norm, x, relu, sync);
    }
    if let Some(world) = sync.filter(|_| training) {
        return synced_train(norm, x, relu, world);
    }
    let y = norm.forward(x);
    if relu { burn::tensor::activation::relu(y) } else { y }
}

/// Training-mode BN (and ReLU if `relu`) of `x` with the statistics of every rank's part of the
/// batch, on any backend: per-channel sums of this rank's values summed over the ranks by
/// [`all_reduce_sum`], then `y = γ·(x − μ)/√(σ² + ε) + β` in tensor operations. Autodiff gives the
/// sync-BN backward: the sum over the ranks' gradients that reaches each rank's statistics is
/// `Σdy` and `Σdy·(x − μ)` over the whole batch. On one rank it is plain training-mode BN.
pub fn synced_train<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, world: &dyn Collective) -> Tensor<D> {
    let channels = x.dims()[1];
    let count = (x.shape().num_elements() / channels * world.ranks()) as f64;
    let mean = all_reduce_sum(per_channel_sum(x.clone())).div_scalar(count);
    let centred = x - along_channels::<D>(mean.clone());
    let variance = all_reduce_sum(per_channel_sum(centred.clone().square())).div_scalar(count);
    let scale = norm.gamma.val() * variance.clone().add_scalar(norm.epsilon).sqrt().recip();
    let y = centred * along_channels::<D>(scale) + along_channels::<D>(norm.beta.val());
    update_running(norm, mean, variance);
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

    /// Training-mode BN of `x` by [`OwnBatchNorm`]; the running statistics as Burn's `BatchNorm`
    /// (`burn-nn`'s `forward_train`) updates them.
    pub(super) fn train<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool, sync: Option<&'static dyn Collective>) -> Tensor<D> {
        let (out, mean, variance) = <burn::backend::Dispatch as OwnBatchNorm>::batch_norm_train_own(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.epsilon,
            relu,
            sync,
        );
        super::update_running(norm, Tensor::from_dispatch(mean), Tensor::from_dispatch(variance));
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

    /// Flex: the two-pass forward and backward on slices.
    #[cfg(feature = "flex")]
    mod flex {
        use super::OwnBatchNorm;
        use crate::distributed::Collective;
        use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
        use burn::backend::autodiff::grads::Gradients;
        use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
        use burn::backend::autodiff::NodeId;
        use burn::backend::flex::FlexTensor;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, Flex, TensorMetadata};
        use burn::tensor::{Shape, TensorData};
        use rayon::prelude::*;

        /// Σᵢ f(aᵢ, bᵢ), in eight `f32` lanes (so that it vectorises) summed in `f64`.
        fn sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
            let mut lanes = [0f32; 8];
            let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
            let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(&a, &b)| f(a, b) as f64).sum();
            for (a, b) in a8.zip(b8) {
                for i in 0..8 {
                    lanes[i] += f(a[i], b[i]);
                }
            }
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
        }

        /// The image planes of channel `c` in `[batch, channels, pixels]` values.
        fn planes(values: &[f32], c: usize, channels: usize, pixels: usize) -> impl Iterator<Item = &[f32]> {
            values.chunks(pixels).skip(c).step_by(channels)
        }

        /// Per-channel mean and biased variance of `[batch, channels, pixels]` values; with
        /// `world` (sync BN), of every rank's values: the per-channel sums are summed over the ranks.
        fn statistics(x: &[f32], channels: usize, pixels: usize, world: Option<&dyn Collective>) -> (Vec<f32>, Vec<f32>) {
            let count = (x.len() / channels * world.map_or(1, |w| w.ranks())) as f64;
            let per_channel = |f: &(dyn Fn(usize) -> f64 + Sync)| {
                let mut sums: Vec<f64> = (0..channels).into_par_iter().map(f).collect();
                if let Some(world) = world {
                    world.sum_f64(&mut sums);
                }
                sums
            };
            let mean: Vec<f32> = per_channel(&|c| planes(x, c, channels, pixels).map(|p| sum(p, p, |v, _| v)).sum::<f64>()).iter().map(|s| (s / count) as f32).collect();
            let squares = per_channel(&|c| planes(x, c, channels, pixels).map(|p| sum(p, p, |v, _| (v - mean[c]) * (v - mean[c]))).sum::<f64>());
            (mean, squares.iter().map(|s| (s / count) as f32).collect())
        }

        fn floats(t: &FlexTensor) -> Vec<f32> {
            t.to_contiguous().as_slice::<f32>().expect("f32 tensor").to_vec()
        }

        fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
            FlexTensor::from_data(TensorData::new(values, shape))
        }

        /// Channels and values per image plane of a `[batch, channels, ...]` shape.
        fn layout(shape: &Shape) -> (usize, usize) {
            (shape[1], shape.iter().skip(2).product())
        }

        /// `1/√(σ² + ε)` per channel.
        fn inv_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
            variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect()
        }

        /// Channel `c`'s BN as `y = x·scale + shift`, the one form forward and ReLU mask both use.
        fn scale_shift(gamma: &[f32], beta: &[f32], inv: &[f32], mean: &[f32], c: usize) -> (f32, f32) {
            (gamma[c] * inv[c], beta[c] - gamma[c] * inv[c] * mean[c])
        }

        /// Output, mean, biased variance (over every rank's batch with `world`).
        fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64, relu: bool, world: Option<&dyn Collective>) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (channels, pixels) = layout(&x.shape());
            let contiguous = x.to_contiguous();
            let xs = contiguous.as_slice::<f32>().expect("f32 input");
            let (mean, variance) = statistics(xs, channels, pixels, world);
            let (gamma, beta, inv) = (floats(gamma), floats(beta), inv_std(&variance, epsilon));
            let mut out = vec![0f32; xs.len()];
            out.par_chunks_mut(pixels).zip(xs.par_chunks(pixels)).enumerate().for_each(|(plane, (o, x))| {
                let c = plane % channels;
                let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean, c);
                let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
                o.iter_mut().zip(x).for_each(|(o, &x)| *o = (x * scale + shift).max(floor));
            });
            (tensor(out, x.shape()), tensor(mean, Shape::new([channels])), tensor(variance, Shape::new([channels])))
        }

        impl OwnBatchNorm for Flex {
            fn batch_norm_train_own(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64, relu: bool, sync: Option<&'static dyn Collective>) -> (FlexTensor, FlexTensor, FlexTensor) {
                forward(&x, &gamma, &beta, epsilon, relu, sync)
            }
        }

        #[derive(Debug)]
        struct FusedBatchNorm;

        impl Backward<Flex, 3> for FusedBatchNorm {
            /// Checkpointed input and γ; β (a few floats, for the ReLU's mask), the batch mean and
            /// variance, ε, whether a ReLU follows, the ranks whose statistics they were (sync BN).
            type State = (NodeId, NodeId, FlexTensor, FlexTensor, FlexTensor, f64, bool, Option<&'static dyn Collective>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x_state, gamma_state, beta, mean, variance, epsilon, relu, world) = ops.state;
                let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
                let gamma: FlexTensor = checkpointer.retrieve_node_output(gamma_state);
                let (shape, (channels, pixels)) = (x.shape(), layout(&x.shape()));
                let (x, dy) = (x.to_contiguous(), grad.to_contiguous());
                let (xs, dys) = (x.as_slice::<f32>().expect("f32 input"), dy.as_slice::<f32>().expect("f32 gradient"));
                let (mean, inv, gamma, beta) = (floats(&mean), inv_std(&floats(&variance), epsilon), floats(&gamma), floats(&beta));
                // The output gradient through the ReLU: zero where the BN output y = x·scale + shift ≤ 0.
                let masked = |c: usize| {
                    let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean, c);
                    move |x: f32, dy: f32| if !relu || x * scale + shift > 0.0 { dy } else { 0.0 }
                };
                // Σ dy and Σ dy·(x − μ) per channel, over this rank's values.
                let sums: Vec<(f64, f64)> = (0..channels)
                    .into_par_iter()
                    .map(|c| {
                        let (mut total, mut dot, mask) = (0f64, 0f64, masked(c));
                        for (x, dy) in planes(xs, c, channels, pixels).zip(planes(dys, c, channels, pixels)) {
                            total += sum(x, dy, mask);
                            dot += sum(x, dy, |x, dy| (x - mean[c]) * mask(x, dy));
                        }
                        (total, dot)
                    })
                    .collect();
                // β's and γ's gradients: Σ dy and Σ dy·x̂ (this rank's part; the ranks' parts are
                // summed with the other parameters' gradients).
                let gradients = |sums: &[(f64, f64)]| -> (Vec<f32>, Vec<f32>) { sums.iter().enumerate().map(|(c, &(total, dot))| (total as f32, (dot * inv[c] as f64) as f32)).unzip() };
                let (dbeta, dgamma) = gradients(&sums);
                if let Some(node) = node_x {
                    // dx takes them over every value normalised together: every rank's with sync BN.
                    let (all_beta, all_gamma) = match world {
                        Some(world) => {
                            let mut flat: Vec<f64> = sums.iter().flat_map(|&(total, dot)| [total, dot]).collect();
                            world.sum_f64(&mut flat);
                            gradients(&flat.chunks(2).map(|p| (p[0], p[1])).collect::<Vec<_>>())
                        }
                        None => (dbeta.clone(), dgamma.clone()),
                    };
                    let count = (xs.len() / channels * world.map_or(1, |w| w.ranks())) as f32;
                    let mut dx = vec![0f32; xs.len()];
                    dx.par_chunks_mut(pixels).zip(xs.par_chunks(pixels).zip(dys.par_chunks(pixels))).enumerate().for_each(|(plane, (dx, (x, dy)))| {
                        let c = plane % channels;
                        let (scale, mean_dy, mean_dot, mask) = (gamma[c] * inv[c], all_beta[c] / count, all_gamma[c] / count, masked(c));
                        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                            *dx = scale * (mask(x, dy) - mean_dy - (x - mean[c]) * inv[c] * mean_dot);
                        }
                    });
                    grads.register::<Flex>(node.id, tensor(dx, shape));
                }
                if let Some(node) = node_gamma {
                    grads.register::<Flex>(node.id, tensor(dgamma, Shape::new([channels])));
                }
                if let Some(node) = node_beta {
                    grads.register::<Flex>(node.id, tensor(dbeta, Shape::new([channels])));
                }
            }
        }

        impl<C: CheckpointStrategy> OwnBatchNorm for Autodiff<Flex, C> {
            fn batch_norm_train_own(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                epsilon: f64,
                relu: bool,
                world: Option<&'static dyn Collective>,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                match FusedBatchNorm.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
                    OpsKind::Tracked(mut prep) => {
                        let (x_state, gamma_state) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                        let beta = beta.into_primitive();
                        let (out, mean, variance) = forward(&x.into_primitive(), &gamma.into_primitive(), &beta, epsilon, relu, world);
                        let out = prep.finish((x_state, gamma_state, beta, mean.clone(), variance.clone(), epsilon, relu, world), out);
                        (out, <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance))
                    }
                    OpsKind::UnTracked(prep) => {
                        let (out, mean, variance) = forward(&x.into_primitive(), &gamma.into_primitive(), &beta.into_primitive(), epsilon, relu, world);
                        (prep.finish(out), <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance))
                    }
                }
            }
        }
    }

    /// libtorch: `native_batch_norm` recorded in libtorch's graph, which gives the gradients.
    #[cfg(feature = "tch")]
    mod libtorch {
        use super::OwnBatchNorm;
        use crate::distributed::Collective;
        use crate::ops::libtorch::AutodiffTensor;
        use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
        use burn::backend::libtorch::TchTensor;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, LibTorch};

        /// cuDNN's smallest ε (`CUDNN_BN_MIN_EPSILON`).
        const CUDNN_MIN_EPSILON: f64 = 1e-5;

        /// libtorch's BN (and ReLU): output, mean, biased variance (from its saved `1/√(var + ε)`).
        /// On a GPU, `f32` activations take cuDNN's BN, as PyTorch's `batch_norm` picks it
        /// (`bfloat16` ones, as under autocast, libtorch's own kernels).
        fn torch_batch_norm(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, epsilon: f64, relu: bool) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
            let (out, mean, inv_std) = if x.device().is_cuda() && x.kind() == tch::Kind::Float && epsilon >= CUDNN_MIN_EPSILON {
                let (out, mean, inv_std, _reserve) = x.cudnn_batch_norm(gamma, Some(beta), None::<&tch::Tensor>, None, true, 0.0, epsilon);
                (out, mean, inv_std)
            } else {
                x.internal_native_batch_norm_legit_no_stats(Some(gamma), Some(beta), true, 0.0, epsilon)
            };
            let out = if relu { out.relu() } else { out };
            // Fresh tensors: libtorch keeps `mean` and `inv_std` for its backward, and Burn may
            // update the statistics it is handed in place.
            let variance = (inv_std.detach().square().reciprocal() - epsilon).clamp_min(0.0);
            (out, mean.detach().copy(), variance)
        }

        impl OwnBatchNorm for LibTorch {
            /// Without autodiff (no training graph) the statistics are this rank's: `sync` is unused.
            fn batch_norm_train_own(x: TchTensor, gamma: TchTensor, beta: TchTensor, epsilon: f64, relu: bool, _: Option<&'static dyn Collective>) -> (TchTensor, TchTensor, TchTensor) {
                let (out, mean, variance) = torch_batch_norm(&x.tensor, &gamma.tensor, &beta.tensor, epsilon, relu);
                (TchTensor::new(out), TchTensor::new(mean), TchTensor::new(variance))
            }
        }

        impl<C: CheckpointStrategy> OwnBatchNorm for Autodiff<LibTorch, C> {
            fn batch_norm_train_own(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                epsilon: f64,
                relu: bool,
                sync: Option<&'static dyn Collective>,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                if let Some(world) = sync {
                    return synced::train::<C>(x, gamma, beta, epsilon, relu, world);
                }
                let (out, (mean, variance)) = crate::ops::libtorch::record::<C, 3, _>([x, gamma, beta], |[x, gamma, beta]| {
                    let (out, mean, variance) = torch_batch_norm(x, gamma, beta, epsilon, relu);
                    (out, (mean, variance))
                });
                (out, AutodiffTensor::<C>::new(TchTensor::new(mean)), AutodiffTensor::<C>::new(TchTensor::new(variance)))
            }
        }

        /// Sync BN on libtorch: the statistics over every rank's part of the batch, with a backward
        /// of ours that sums `Σdy` and `Σdy·(x − μ)` over the ranks (libtorch's own SyncBatchNorm
        /// kernels, `batch_norm_stats` and the like, exist for CUDA only).
        mod synced {
            use super::AutodiffTensor;
            use crate::distributed::Collective;
            use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
            use burn::backend::autodiff::grads::Gradients;
            use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
            use burn::backend::libtorch::TchTensor;
            use burn::backend::LibTorch;
            use tch::Kind;

            /// The dimensions BN reduces over: all but the channels (dimension 1).
            fn reduced(x: &tch::Tensor) -> Vec<i64> {
                (0..x.dim() as i64).filter(|&d| d != 1).collect()
            }

            /// A per-channel vector shaped to broadcast against `x` (`[1, C, 1, …]`).
            fn per_channel(v: &tch::Tensor, x: &tch::Tensor) -> tch::Tensor {
                let mut shape = vec![1i64; x.dim()];
                shape[1] = -1;
                v.view(&shape[..])
            }

            /// Per-channel sums of `t` over the reduced dimensions and every rank, in `f64`.
            fn summed(t: &tch::Tensor, dims: &[i64], world: &dyn Collective) -> tch::Tensor {
                let local = t.sum_dim_intlist(dims, false, Kind::Double);
                let mut values: Vec<f64> = Vec::try_from(&local).expect("a vector of sums");
                world.sum_f64(&mut values);
                tch::Tensor::from_slice(&values).to_device(t.device())
            }

            /// What the backward needs: the input, γ, the output (for the ReLU's mask), the batch
            /// mean and 1/√(σ² + ε) over all ranks, the number of values per channel, the ranks.
            #[derive(Debug, Clone)]
            struct Saved {
                world: &'static dyn Collective,
                x: TchTensor,
                gamma: TchTensor,
                out: TchTensor,
                mean: TchTensor,
                inv_std: TchTensor,
                relu: bool,
                count: f64,
            }

            #[derive(Debug)]
            struct SyncedBatchNorm;

            impl Backward<LibTorch, 3> for SyncedBatchNorm {
                type State = Saved;

                fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                    let [node_x, node_gamma, node_beta] = ops.parents;
                    let grad = grads.consume::<LibTorch>(&ops.node);
                    let s = ops.state;
                    let (x, dims) = (&s.x.tensor, reduced(&s.x.tensor));
                    let dy = if s.relu { grad.tensor * s.out.tensor.gt(0.0) } else { grad.tensor };
                    let xmu = x - per_channel(&s.mean.tensor, x);
                    let local = |t: &tch::Tensor| t.sum_dim_intlist(&dims[..], false, Kind::Double);
                    let world = s.world;
                    if let Some(node) = node_x {
                        // dx = γ/σ · (dy − Σdy/M − (x − μ)/σ² · Σdy·(x − μ)/M), the sums over all ranks.
                        let mean_dy = summed(&dy, &dims, world) / s.count;
                        let mean_dy_xmu = summed(&(&dy * &xmu), &dims, world) / s.count;
                        let inv = &s.inv_std.tensor;
                        let dx = (&dy - per_channel(&mean_dy.to_kind(dy.kind()), x) - &xmu * per_channel(&(inv * inv * mean_dy_xmu).to_kind(dy.kind()), x))
                            * per_channel(&(&s.gamma.tensor * inv), x);
                        grads.register::<LibTorch>(node.id, TchTensor::new(dx));
                    }
                    // γ's and β's gradients: this rank's part (summed with the other gradients).
                    if let Some(node) = node_gamma {
                        let dgamma = (local(&(&dy * &xmu)) * &s.inv_std.tensor).to_kind(s.gamma.tensor.kind());
                        grads.register::<LibTorch>(node.id, TchTensor::new(dgamma));
                    }
                    if let Some(node) = node_beta {
                        grads.register::<LibTorch>(node.id, TchTensor::new(local(&dy).to_kind(s.gamma.tensor.kind())));
                    }
                }
            }

            /// Training-mode BN (and ReLU) of `x` with every rank's statistics: output, mean, biased
            /// variance.
            pub(super) fn train<C: CheckpointStrategy>(
                x: AutodiffTensor<C>,
                gamma: AutodiffTensor<C>,
                beta: AutodiffTensor<C>,
                epsilon: f64,
                relu: bool,
                world: &'static dyn Collective,
            ) -> (AutodiffTensor<C>, AutodiffTensor<C>, AutodiffTensor<C>) {
                let nodes = [x.node(), gamma.node(), beta.node()];
                let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
                let (t, dims) = (&x.tensor, reduced(&x.tensor));
                let count = (t.numel() / t.size()[1] as usize * world.ranks()) as f64;
                let mean = summed(t, &dims, world) / count;
                let xmu = t - per_channel(&mean.to_kind(t.kind()), t);
                let variance = summed(&(&xmu * &xmu), &dims, world) / count;
                let inv_std = (&variance + epsilon).rsqrt().to_kind(t.kind());
                let out = xmu * per_channel(&(&gamma.tensor * &inv_std), t) + per_channel(&beta.tensor, t);
                let out = if relu { out.relu() } else { out };
                let (mean, variance) = (TchTensor::new(mean.to_kind(t.kind())), TchTensor::new(variance.to_kind(t.kind())));
                // `out` and its saved clone share their storage, so Burn never overwrites it in place.
                let out = TchTensor::new(out);
                let out = match SyncedBatchNorm.prepare::<C>(nodes).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let saved = Saved { world, x, gamma, out: out.clone(), mean: mean.clone(), inv_std: TchTensor::new(inv_std), relu, count };
                        prep.finish(saved, out)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(out),
                };
                (out, AutodiffTensor::<C>::new(mean), AutodiffTensor::<C>::new(variance))
            }
        }
    }
}
