//! The encoder's 2-D convolution on the CPU backends, with its own backward.
//!
//! Convolutions are nearly all of a ResNet's arithmetic (§2.1, App. B.9). Burn 0.22.1's `flex`
//! computes the forward pass by im2col + GEMM, and its backward comes from Burn's generic rule: the
//! input gradient as a transposed convolution and the weight gradient as a second convolution with
//! the output gradient as its kernel. On flex, where the CPU has AVX-512 or AVX2 + FMA, the
//! forward, the weight gradient and the stride-1 input gradient are [`crate::ops::direct`]'s
//! blocked direct kernels on channels-last copies (output channels in multiples of 16; the
//! stride-2 input gradient stays Burn's). Elsewhere on flex the weight gradient is one large GEMM per chunk of images
//! ([`weight_grad`]), which ran 1.3–10× faster than Burn's per-input-channel GEMMs only k² rows
//! tall (`docs/performance.md`):
//!
//! `dW = Σ_chunks G_c · im2col(X_c)ᵀ` (`C_out × C_in·k²`, the reduction over the chunk's pixels),
//!
//! where `G_c` is the chunk's output gradient as a `C_out × (images·pixels)` matrix; the forward
//! and input gradient stay Burn's there. [`conv2d`] routes a flex tensor through a Burn autodiff
//! operation that calls these.
//!
//! The `tch` backend has the same gap (Burn gives libtorch no convolution backward either), so on a
//! libtorch device [`conv2d`] records the convolution in libtorch's own autograd graph and takes
//! both gradients from it: the oneDNN/cuDNN kernels PyTorch itself uses; with `--precision bf16`
//! in `bfloat16` as PyTorch's autocast would. Every other device
//! gets Burn's `conv2d`.

use crate::ops::compute::Compute;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::Tensor;
use rayon::prelude::*;

pub use super::geometry::Geometry;

/// im2col of images `n0..n0+m` of `x` (`[batch, cin, h, w]`): `cols` is `[cin·k², m·pixels]`,
/// row `(ci, ky, kx)`, column `(image, oy, ox)`, zero where the tap falls in the padding.
fn im2col(x: &[f32], g: &Geometry, n0: usize, m: usize, cols: &mut [f32]) {
    let (p, wo, hw) = (g.pixels(), g.wo(), g.h * g.w);
    cols.par_chunks_mut(m * p).enumerate().for_each(|(r, row)| {
        let (ci, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
        let (lo, hi) = g.inside(kx, g.w, wo);
        for (i, dst) in row.chunks_mut(p).enumerate() {
            let img = &x[((n0 + i) * g.cin + ci) * hw..][..hw];
            for (oy, drow) in dst.chunks_mut(wo).enumerate() {
                let Some(iy) = g.source(oy, ky, g.h) else {
                    drow.fill(0.0);
                    continue;
                };
                drow[..lo].fill(0.0);
                drow[hi..].fill(0.0);
                if lo == hi {
                    continue;
                }
                // Output ox reads input column ox·stride + kx − pad.
                let first = lo * g.stride + kx - g.pad;
                let src = &img[iy * g.w + first..];
                if g.stride == 1 {
                    drow[lo..hi].copy_from_slice(&src[..hi - lo]);
                } else {
                    for (d, s) in drow[lo..hi].iter_mut().zip(src.iter().step_by(g.stride)) {
                        *d = *s;
                    }
                }
            }
        }
    });
}

/// The output gradient of images `n0..n0+m` (`grad` is `[batch, cout, pixels]`) as the
/// `[cout, m·pixels]` matrix `out`.
fn gather_rows(grad: &[f32], g: &Geometry, n0: usize, m: usize, out: &mut [f32]) {
    let p = g.pixels();
    out.par_chunks_mut(m * p).enumerate().for_each(|(co, row)| {
        for (i, dst) in row.chunks_mut(p).enumerate() {
            dst.copy_from_slice(&grad[((n0 + i) * g.cout + co) * p..][..p]);
        }
    });
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, each operand given by its row and column strides.
#[allow(clippy::too_many_arguments)]
fn gemm(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, lhs: &[f32], lhs_rs: usize, lhs_cs: usize, rhs: &[f32], rhs_rs: usize, rhs_cs: usize) {
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every index the strides reach inside the slices; dst is row-major m×n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// Gradient of the loss with respect to the weight (`[cout, cin, k, k]`, row-major), given the
/// input `x` (`[batch, cin, h, w]`) and the output gradient `grad` (`[batch, cout, ho, wo]`).
pub fn weight_grad(x: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (p, patch, chunk) = (g.pixels(), g.patch(), g.chunk());
    let mut dw = vec![0f32; g.cout * patch];
    let mut cols = vec![0f32; patch * chunk * p];
    let mut rows = vec![0f32; g.cout * chunk * p];
    for n0 in (0..g.batch).step_by(chunk) {
        let m = chunk.min(g.batch - n0);
        let (cols, rows) = (&mut cols[..patch * m * p], &mut rows[..g.cout * m * p]);
        im2col(x, g, n0, m, cols);
        gather_rows(grad, g, n0, m, rows);
        // dW (cout × patch) += G (cout × m·p) · colsᵀ (m·p × patch).
        gemm(g.cout, patch, m * p, &mut dw, n0 > 0, rows, m * p, 1, cols, 1, m * p);
    }
    dw
}

/// A convolution of the encoder: square kernel, no bias, zero padding `pad` on every side. On a
/// flex device of `f32` tensors the direct kernels of [`crate::ops::direct`] where they apply,
/// else Burn's forward and input gradient with the [`weight_grad`] GEMM; on a libtorch device both
/// gradients come from libtorch, in the arithmetic and memory order `compute` sets; elsewhere this
/// is Burn's `conv2d`.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, pad: usize, compute: &Compute) -> Tensor<4> {
    #[cfg(any(feature = "flex", feature = "tch"))]
    if super::has_own_ops(&x) {
        use own::OwnBackwardConv;
        let channels_last = compute.channels_last(&x.device());
        let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
        let out = <burn::backend::Dispatch as OwnBackwardConv>::conv2d_own_backward(x, weight, stride, pad, compute.bf16(), channels_last);
        return Tensor::from_dispatch(out);
    }
    let _ = compute;
    burn_conv2d(x, weight, None, super::geometry::options(stride, pad))
}

/// The Burn autodiff operations behind [`conv2d`] on flex and libtorch.
#[cfg(any(feature = "flex", feature = "tch"))]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
mod own {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Backend};

    /// A convolution whose backward is ours rather than Burn's generic one.
    #[backend_extension(Flex: cfg(feature = "flex"), LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait OwnBackwardConv: Backend {
        /// `conv2d(x, weight)` with square kernel, stride and zero padding, no bias; on libtorch
        /// in `bfloat16` if `bf16`, on a channels-last input if `channels_last`.
        fn conv2d_own_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, pad: usize, bf16: bool, channels_last: bool) -> FloatTensor<Self>;
    }

    /// Flex: the direct kernels where they apply; else Burn's forward and input gradient and the
    /// GEMM weight gradient.
    #[cfg(feature = "flex")]
    mod flex {
        use super::super::{weight_grad, Geometry};
        use crate::ops::direct::{self, Activations};
        use crate::ops::geometry::options;
        use crate::ops::order::{self, Order};
        use super::OwnBackwardConv;
        use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
        use burn::backend::autodiff::grads::Gradients;
        use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
        use burn::backend::autodiff::NodeId;
        use burn::backend::flex::FlexTensor;
        use burn::backend::ops::ModuleOps;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, Flex, TensorMetadata};
        use burn::tensor::TensorData;

        /// The geometry of `conv2d(x, weight)`.
        fn geometry(x: &FlexTensor, weight: &FlexTensor, stride: usize, pad: usize) -> Geometry {
            let ([batch, cin, h, w], [cout, _, k, _]) = (x.shape().dims(), weight.shape().dims());
            Geometry { batch, cin, h, w, cout, k, stride, pad }
        }

        /// `f` of the contiguous `f32` contents of `tensors`.
        fn on_slices<const N: usize, T>(tensors: [&FlexTensor; N], f: impl FnOnce([&[f32]; N]) -> T) -> T {
            let contiguous = tensors.map(|t| t.clone().to_contiguous());
            f(std::array::from_fn(|i| contiguous[i].as_slice().expect("f32 tensor")))
        }

        /// The convolution: the direct channels-last kernels where they apply, reading `x` in the
        /// order it is stored and writing channels-last if `channels_last`; else Burn's.
        fn forward(x: FlexTensor, weight: FlexTensor, stride: usize, pad: usize, channels_last: bool) -> FlexTensor {
            let g = geometry(&x, &weight, stride, pad);
            if !direct::takes(&g) {
                return Flex::conv2d(x, weight, None, options(stride, pad));
            }
            let ((x, x_order), out) = (order::dense(x), if channels_last { Order::Nhwc } else { Order::Nchw });
            let y = on_slices([&weight], |[weight]| direct::forward(Activations { values: order::values(&x), order: x_order }, weight, &g, out));
            order::from_values(y, [g.batch, g.cout, g.ho(), g.wo()].into(), out)
        }

        impl OwnBackwardConv for Flex {
            fn conv2d_own_backward(x: FlexTensor, weight: FlexTensor, stride: usize, pad: usize, _: bool, channels_last: bool) -> FlexTensor {
                forward(x, weight, stride, pad, channels_last)
            }
        }

        /// The backward of [`forward`]: the direct kernels' gradients, or Burn's input gradient and
        /// the GEMM weight gradient.
        #[derive(Debug)]
        struct CpuConv;

        impl Backward<Flex, 2> for CpuConv {
            /// Checkpointed input and weight, stride, padding.
            type State = (NodeId, NodeId, usize, usize);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x_state, weight_state, stride, pad) = ops.state;
                let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
                let weight: FlexTensor = checkpointer.retrieve_node_output(weight_state);
                let g = geometry(&x, &weight, stride, pad);
                // The direct kernels give the weight gradient, and the input gradient at stride 1,
                // stored in the order of the input.
                let x_order = order::order_of(&x).unwrap_or(Order::Nchw);
                let direct_x = (node_x.is_some() && direct::takes_input_grad(&g)).then_some(x_order);
                let (dx, dw) = match (direct::takes(&g), &node_weight) {
                    (true, _) => {
                        let ((xd, x_order), (dy, dy_order)) = (order::dense(x.clone()), order::dense(grad.clone()));
                        let (x, dy) = (Activations { values: order::values(&xd), order: x_order }, Activations { values: order::values(&dy), order: dy_order });
                        let (dx, dw) = on_slices([&weight], |[weight]| direct::backward(x, weight, dy, &g, direct_x));
                        (dx, Some(dw))
                    }
                    (false, Some(_)) => (None, Some(on_slices([&x, &grad], |[x, grad]| weight_grad(x, grad, &g)))),
                    (false, None) => (None, None),
                };
                if let Some(node) = node_x {
                    let dx = match dx {
                        Some(dx) => order::from_values(dx, x.shape(), x_order),
                        None => order::in_order(&Flex::conv2d_x_backward(x.clone(), weight.clone(), grad, options(stride, pad)), x_order),
                    };
                    grads.register::<Flex>(node.id, dx);
                }
                if let (Some(node), Some(dw)) = (node_weight, dw) {
                    grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dw, weight.shape())));
                }
            }
        }

        impl<C: CheckpointStrategy> OwnBackwardConv for Autodiff<Flex, C> {
            fn conv2d_own_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, pad: usize, _: bool, channels_last: bool) -> FloatTensor<Self> {
                match CpuConv.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
                    OpsKind::Tracked(mut prep) => {
                        let state = (prep.checkpoint(&x), prep.checkpoint(&weight), stride, pad);
                        prep.finish(state, forward(x.into_primitive(), weight.into_primitive(), stride, pad, channels_last))
                    }
                    OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive(), weight.into_primitive(), stride, pad, channels_last)),
                }
            }
        }
    }

    /// libtorch: the convolution recorded in libtorch's graph, which gives both gradients.
    #[cfg(feature = "tch")]
    mod libtorch {
        use super::OwnBackwardConv;
        use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
        use burn::backend::libtorch::TchTensor;
        use burn::backend::tensor::FloatTensor;
        use burn::backend::{Autodiff, LibTorch};

        /// libtorch's convolution; under `--precision bf16` by autocast's rule (`bfloat16` operands
        /// in channels-last order, a `bfloat16` result, which BN, ReLU and the residual sums keep
        /// up to the pooling); under `--memory-format channels-last` on its
        /// input in channels-last order (oneDNN's and cuDNN's NHWC kernels), so the output and the
        /// layers after it keep that order and later convolutions take it without a copy.
        fn torch_conv2d(x: &tch::Tensor, weight: &tch::Tensor, stride: usize, pad: usize, bf16: bool, channels_last: bool) -> tch::Tensor {
            use crate::ops::libtorch::to_channels_last;
            let conv = |x: &tch::Tensor, weight: &tch::Tensor| {
                let (stride, pad) = (stride as i64, pad as i64);
                tch::Tensor::conv2d(x, weight, None::<tch::Tensor>, [stride; 2], [pad; 2], [1, 1], 1)
            };
            if bf16 {
                let x = to_channels_last(x, tch::Kind::BFloat16);
                return conv(&x, &weight.to_kind(tch::Kind::BFloat16));
            }
            if channels_last {
                return conv(&to_channels_last(x, x.kind()), weight);
            }
            conv(x, weight)
        }

        impl OwnBackwardConv for LibTorch {
            fn conv2d_own_backward(x: TchTensor, weight: TchTensor, stride: usize, pad: usize, bf16: bool, channels_last: bool) -> TchTensor {
                TchTensor::new(torch_conv2d(&x.tensor, &weight.tensor, stride, pad, bf16, channels_last))
            }
        }

        impl<C: CheckpointStrategy> OwnBackwardConv for Autodiff<LibTorch, C> {
            fn conv2d_own_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, pad: usize, bf16: bool, channels_last: bool) -> FloatTensor<Self> {
                crate::ops::libtorch::record::<C, 2, _>([x, weight], |[x, weight]| (torch_conv2d(x, weight, stride, pad, bf16, channels_last), ())).0
            }
        }
    }
}
