//! Kernels apart from the paper's concepts: the encoder's [`conv`]olution and training-mode
//! [`batchnorm`] as our own operations on the CPU backends and libtorch, the end of a
//! [`residual`] block as one operation on libtorch, the differentiable sum over the ranks
//! ([`all_reduce`]) sync BN is built on elsewhere, and the libtorch glue they use.

pub mod all_reduce;
pub mod batchnorm;
pub mod conv;
pub mod direct;
pub mod residual;
#[cfg(feature = "tch")]
pub(crate) mod libtorch;
