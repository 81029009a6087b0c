//! libtorch: `native_batch_norm` recorded in libtorch's graph, which gives the gradients.

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
