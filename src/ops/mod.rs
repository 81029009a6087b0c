//! Kernels apart from the paper's concepts: the encoder's [`conv`]olution and training-mode
//! [`batchnorm`] as our own operations on the CPU backends and libtorch, the end of a
//! [`residual`] block as one operation on flex and libtorch, the differentiable sum over the ranks
//! ([`all_reduce`]) sync BN is built on elsewhere, the libtorch glue they use and, on libtorch,
//! the optimisers' update of all parameters in one call (`optimizer`); and [`indices`],
//! positions as the `Int` tensor that `select`, `gather` and `scatter` take.

pub mod all_reduce;
pub mod batchnorm;
pub mod compute;
pub mod conv;
pub mod direct;
pub mod geometry;
pub mod order;
pub mod residual;
#[cfg(feature = "tch")]
pub(crate) mod libtorch;
#[cfg(feature = "tch")]
pub(crate) mod optimizer;

/// Whether `x` lives where the encoder's convolution ([`conv`]) and batch norm ([`batchnorm`]) run
/// as operations of ours rather than Burn's generic ones: flex with `f32` tensors (the slice
/// kernels are `f32`) or libtorch (any float type).
#[cfg(any(feature = "flex", feature = "tch"))]
pub(crate) fn has_own_ops<const D: usize>(x: &burn::tensor::Tensor<D>) -> bool {
    use burn::backend::DispatchDevice;
    match x.device().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => x.dtype() == burn::tensor::DType::F32,
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) => true,
        _ => false,
    }
}

/// `positions` as a `[len]` `Int` tensor on `device`, for `select`, `gather` and `scatter`.
pub fn indices(positions: &[usize], device: &burn::tensor::Device) -> burn::tensor::Tensor<1, burn::tensor::Int> {
    let values: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(values, [positions.len()]), device)
}
