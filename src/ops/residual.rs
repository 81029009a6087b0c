//! The end of a residual block (He et al. 2016, §3.2): `relu(y + shortcut)`.
//!
//! On libtorch it is one operation recorded in libtorch's graph ([`crate::ops::libtorch::record`]):
//! the sum, then ReLU in place on it (as torchvision's blocks do), and in the backward libtorch's
//! `threshold_backward` on the output, one pass, whose result both addends take. Burn's own ReLU
//! backward builds a mask and then fills the gradient through it: two passes and a mask tensor
//! per block. Elsewhere this is Burn's sum and ReLU.

use burn::tensor::{activation::relu, Tensor};

/// `relu(y + shortcut)`.
pub fn add_relu<const D: usize>(y: Tensor<D>, shortcut: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if super::libtorch::is_libtorch(&y.device()) {
        use own::AddRelu;
        let out = <burn::backend::Dispatch as AddRelu>::add_relu(y.into_dispatch(), shortcut.into_dispatch());
        return Tensor::from_dispatch(out);
    }
    relu(y + shortcut)
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, LibTorch};

    /// `relu(y + shortcut)` as one operation.
    #[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait AddRelu: Backend {
        /// `relu(y + shortcut)`.
        fn add_relu(y: FloatTensor<Self>, shortcut: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    /// The sum with ReLU applied in place.
    fn torch_add_relu(y: &tch::Tensor, shortcut: &tch::Tensor) -> tch::Tensor {
        let mut sum = y + shortcut;
        let _ = sum.relu_();
        sum
    }

    impl AddRelu for LibTorch {
        fn add_relu(y: TchTensor, shortcut: TchTensor) -> TchTensor {
            TchTensor::new(torch_add_relu(&y.tensor, &shortcut.tensor))
        }
    }

    impl<C: CheckpointStrategy> AddRelu for Autodiff<LibTorch, C> {
        fn add_relu(y: FloatTensor<Self>, shortcut: FloatTensor<Self>) -> FloatTensor<Self> {
            crate::ops::libtorch::record::<C, 2, _>([y, shortcut], |[y, shortcut]| (torch_add_relu(y, shortcut), ())).0
        }
    }
}
