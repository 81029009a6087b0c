//! A differentiable sum over the ranks of a data-parallel run ([`crate::distributed`]), on every
//! backend: the building block of sync BN where the backend has no BN operation of ours.
//!
//! `y = Σ_r x_r` on every rank; its backward is the same sum of the gradients, `∂L/∂x_r =
//! Σ_r' ∂L_r'/∂y`, since every rank's copy of `y` feeds that rank's part of the loss. Composed
//! with ordinary tensor operations it gives statistics over the whole global batch with the exact
//! one-process gradient (sync BN, paper §2.2 "Global BN"; [`crate::ops::batchnorm`]).
//!
//! The same sum, over `x` placed among zeros, gathers rows from every rank differentiably
//! ([`gather_rows`], the gathered negatives of the NT-Xent).
//!
//! The values travel through the host ([`crate::distributed::Collective::sum_f64`], summed in
//! `f64`): the operation is meant for per-channel statistics, a few hundred floats, and the
//! projections of a batch (2B × 128 floats).

use crate::distributed::Collective;
use burn::tensor::Tensor;

/// `x` summed element-wise over `ranks`, on each rank; the gradient summed likewise.
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>, ranks: &'static dyn Collective) -> Tensor<D> {
    if ranks.ranks() == 1 {
        return x;
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as own::AllReduce>::all_reduce_sum(x.into_dispatch(), ranks))
}

/// `x` (`[n, d]` on every rank) and the rows of every other of the K `ranks`, as `[K·n, d]` in rank order. It is
/// differentiable as one process's rows would be (the official `tpu_cross_replica_concat`): this
/// rank's rows carry their gradient, and in the backward pass the gradient every rank's loss gives
/// the gathered rows is summed over the ranks, so this rank's rows receive what all the ranks'
/// losses give them. Built as [`all_reduce_sum`] of `x` placed at this rank's rows
/// among zeros (adding zeros is exact).
pub fn gather_rows(x: Tensor<2>, ranks: &'static dyn Collective) -> Tensor<2> {
    let world = ranks;
    if world.ranks() == 1 {
        return x;
    }
    let [n, d] = x.dims();
    let device = x.device();
    let zeros = |rows: usize| (rows > 0).then(|| Tensor::<2>::zeros([rows, d], &device));
    let (before, after) = (world.rank() * n, (world.ranks() - world.rank() - 1) * n);
    let placed = Tensor::cat([zeros(before), Some(x), zeros(after)].into_iter().flatten().collect(), 0);
    all_reduce_sum(placed, ranks)
}

#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use crate::distributed::Collective;
    use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, TensorMetadata};
    use burn::tensor::TensorData;

    /// The sum over the ranks as a backend operation, with its backward under autodiff.
    #[backend_extension(
        Flex: cfg(feature = "flex"),
        LibTorch: cfg(feature = "tch"),
        Cube: cfg(any(feature = "wgpu", feature = "vulkan")),
        Autodiff
    )]
    pub trait AllReduce: Backend {
        /// `x` summed element-wise over `ranks`.
        fn all_reduce_sum(x: FloatTensor<Self>, ranks: &'static dyn Collective) -> FloatTensor<Self> {
            host_sum::<Self>(x, ranks)
        }
    }

    /// `x` read to the host, summed over `ranks` in `f64` and written back in its own dtype.
    fn host_sum<B: Backend>(x: FloatTensor<B>, ranks: &dyn Collective) -> FloatTensor<B> {
        let (device, dtype, shape) = (x.device(), x.dtype(), x.shape());
        let data = burn::tensor::try_read_sync(B::float_into_data(x))
            .expect("this platform reads tensors synchronously")
            .expect("the tensor to sum over the ranks is readable");
        let mut values: Vec<f64> = data.iter::<f64>().collect();
        ranks.sum_f64(&mut values);
        let summed = TensorData::new(values.into_iter().map(|v| v as f32).collect::<Vec<_>>(), shape).convert_dtype(dtype);
        B::float_from_data(summed, &device)
    }

    #[cfg(feature = "flex")]
    impl AllReduce for burn::backend::Flex {}
    #[cfg(feature = "tch")]
    impl AllReduce for burn::backend::LibTorch {}
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    impl AllReduce for burn::backend::Cube {}

    /// The backward of the sum over the ranks: the sum over the ranks of the gradients.
    #[derive(Debug)]
    struct SumOverRanks;

    impl<B: AllReduce> Backward<B, 1> for SumOverRanks {
        /// The ranks summed over.
        type State = &'static dyn Collective;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let ranks = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| B::all_reduce_sum(grad, ranks));
        }
    }

    impl<B: AllReduce, C: CheckpointStrategy> AllReduce for Autodiff<B, C> {
        fn all_reduce_sum(x: FloatTensor<Self>, ranks: &'static dyn Collective) -> FloatTensor<Self> {
            match SumOverRanks.prepare::<C>([x.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(ranks, B::all_reduce_sum(x.into_primitive(), ranks)),
                OpsKind::UnTracked(prep) => prep.finish(B::all_reduce_sum(x.into_primitive(), ranks)),
            }
        }
    }
}
