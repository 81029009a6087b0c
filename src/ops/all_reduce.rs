//! A differentiable sum over the ranks of a data-parallel run ([`crate::distributed`]), on every
//! backend: the building block of sync BN where the backend has no BN operation of ours.
//!
//! `y = Σ_r x_r` on every rank; its backward is the same sum of the gradients, `∂L/∂x_r =
//! Σ_r' ∂L_r'/∂y`, since every rank's copy of `y` feeds that rank's part of the loss. Composed
//! with ordinary tensor operations it gives statistics over the whole global batch with the exact
//! one-process gradient (sync BN, paper §2.2 "Global BN"; [`crate::ops::batchnorm`]).
//!
//! The values travel through the host ([`crate::distributed::Collective::sum_f64`], summed in
//! `f64`): the operation is meant for per-channel statistics, a few hundred floats.

use burn::tensor::Tensor;

/// `x` summed element-wise over the ranks, on each rank; the gradient summed likewise.
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !crate::distributed::is_distributed() {
        return x;
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as own::AllReduce>::all_reduce_sum(x.into_dispatch()))
}

#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{unary, Backward, Ops};
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
        /// `x` summed element-wise over the ranks.
        fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
            host_sum::<Self>(x)
        }
    }

    /// `x` read to the host, summed over the ranks in `f64` and written back in its own dtype.
    fn host_sum<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let (device, dtype, shape) = (x.device(), x.dtype(), x.shape());
        let data = burn::tensor::try_read_sync(B::float_into_data(x))
            .expect("this platform reads tensors synchronously")
            .expect("the tensor to sum over the ranks is readable");
        let mut values: Vec<f64> = data.iter::<f64>().collect();
        crate::distributed::world().sum_f64(&mut values);
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
        type State = ();

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            unary::<B, _>(ops.parents, ops.node, grads, B::all_reduce_sum);
        }
    }

    impl<B: AllReduce, C: CheckpointStrategy> AllReduce for Autodiff<B, C> {
        fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let prep = SumOverRanks.prepare::<C>([x.node()]).compute_bound();
            prep.stateless(B::all_reduce_sum(x.into_primitive()))
        }
    }
}
