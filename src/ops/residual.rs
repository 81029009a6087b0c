//! The end of a residual block (He et al. 2016, §3.2): `relu(y + shortcut)`, as one operation of
//! ours on flex (`f32`) and libtorch.
//!
//! Burn's `relu(y + shortcut)` is two passes forward (the sum, then the ReLU, each writing a
//! tensor) and, backward, a mask built from the output and the gradient filled through it: two
//! more passes and a mask tensor per block. As one operation it is one pass each way: the sum
//! clamped at 0 forward, and backward the gradient where the output is positive, which both
//! addends take. On libtorch it is recorded in libtorch's graph
//! ([`crate::ops::libtorch::record`]): the sum, then ReLU in place on it (as torchvision's blocks
//! do), and libtorch's `threshold_backward`. Elsewhere (wgpu, vulkan, flex at other precisions)
//! it is Burn's sum and ReLU.

use burn::tensor::{activation::relu, Tensor};

/// `relu(y + shortcut)`.
pub fn add_relu<const D: usize>(y: Tensor<D>, shortcut: Tensor<D>) -> Tensor<D> {
    #[cfg(any(feature = "flex", feature = "tch"))]
    if super::has_own_ops(&y) && y.dims() == shortcut.dims() {
        use own::AddRelu;
        let out = <burn::backend::Dispatch as AddRelu>::add_relu(y.into_dispatch(), shortcut.into_dispatch());
        return Tensor::from_dispatch(out);
    }
    relu(y + shortcut)
}

#[cfg(any(feature = "flex", feature = "tch"))]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Backend};

    /// `relu(y + shortcut)` as one operation (`y` and `shortcut` of one shape).
    #[backend_extension(Flex: cfg(feature = "flex"), LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait AddRelu: Backend {
        /// `relu(y + shortcut)`.
        fn add_relu(y: FloatTensor<Self>, shortcut: FloatTensor<Self>) -> FloatTensor<Self>;
    }

    #[cfg(feature = "flex")]
    mod flex {
        use super::AddRelu;
        use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
        use burn::backend::autodiff::grads::Gradients;
        use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
        use burn::backend::flex::FlexTensor;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, Flex, TensorMetadata};
        use crate::ops::order;
        use rayon::prelude::*;

        /// Values a parallel task takes of the element-wise passes.
        const CHUNK: usize = 1 << 16;

        /// `f(a, b)` of each pair of values (of one shape), stored in `a`'s order ([`order`]: NCHW
        /// or channels-last; row-major where `a` is another view), `b` copied into that order if
        /// it is stored otherwise: written over `a` where it holds its storage alone (as Burn's
        /// element-wise ops reuse a buffer), else into a new tensor.
        fn zip_map(a: FlexTensor, b: &FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
            let (mut a, order) = order::dense(a);
            let b = order::in_order(b, order);
            let ys = order::values(&b);
            if let Some(xs) = a.try_storage_mut::<f32>() {
                xs.par_chunks_mut(CHUNK).zip(ys.par_chunks(CHUNK)).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, &y)| *x = f(*x, y)));
                return a;
            }
            let xs = order::values(&a);
            // Zeroed memory this large comes fresh from the system (calloc), without a pass.
            let mut out = vec![0f32; xs.len()];
            out.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK).zip(ys.par_chunks(CHUNK))).for_each(|(o, (x, y))| {
                o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| *o = f(x, y));
            });
            order::from_values(out, a.shape(), order)
        }

        impl AddRelu for Flex {
            fn add_relu(y: FlexTensor, shortcut: FlexTensor) -> FlexTensor {
                // As Burn's ReLU: 0 where the sum is ≤ 0, a NaN kept (a diverged run must show).
                zip_map(y, &shortcut, |y, s| if y + s <= 0.0 { 0.0 } else { y + s })
            }
        }

        #[derive(Debug)]
        struct AddReluBackward;

        impl Backward<Flex, 2> for AddReluBackward {
            /// The output: the gradient passes where it is positive.
            type State = FlexTensor;

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [node_y, node_shortcut] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let dx = zip_map(grad, &ops.state, |dy, out| if out <= 0.0 { 0.0 } else { dy });
                if let Some(node) = node_shortcut {
                    grads.register::<Flex>(node.id, dx.clone());
                }
                if let Some(node) = node_y {
                    grads.register::<Flex>(node.id, dx);
                }
            }
        }

        impl<C: CheckpointStrategy> AddRelu for Autodiff<Flex, C> {
            fn add_relu(y: FloatTensor<Self>, shortcut: FloatTensor<Self>) -> FloatTensor<Self> {
                match AddReluBackward.prepare::<C>([y.node(), shortcut.node()]).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let out = Flex::add_relu(y.into_primitive(), shortcut.into_primitive());
                        prep.finish(out.clone(), out)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(Flex::add_relu(y.into_primitive(), shortcut.into_primitive())),
                }
            }
        }
    }

    #[cfg(feature = "tch")]
    mod libtorch {
        use super::AddRelu;
        use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
        use burn::backend::libtorch::TchTensor;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, LibTorch};

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
}
