//! Burn autodiff operations whose backward is libtorch's own (the `tch` backend).
//!
//! Burn 0.22.1 differentiates the convolution and training-mode batch norm with its generic rules
//! on every backend, also on libtorch, where they cost several extra kernels and fresh tensors per
//! call. [`record`] runs a forward written in `tch` on libtorch leaves that share the storage of
//! Burn's input tensors, keeps that small libtorch graph as the state of one Burn operation, and in
//! Burn's backward asks it for the gradients (`torch.autograd.grad(out, leaves, grad)` with Burn's
//! output gradient, through src/ops/libtorch_grad.cpp): the kernels PyTorch itself runs.

#![allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, LibTorch};

/// Whether `device` is a libtorch device (CPU or CUDA).
pub(crate) fn is_libtorch(device: &burn::tensor::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(_))
}

/// Whether `device` is libtorch's CPU device.
pub(crate) fn is_cpu(device: &burn::tensor::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(burn::backend::libtorch::LibTorchDevice::Cpu))
}

/// `x` (`[n, c, h, w]`) as `kind` in channels-last order: `x` itself when it already is (the output
/// of a channels-last convolution, and of the BN, ReLU and additions after it, which keep the
/// layout), else one differentiable copy.
pub(crate) fn to_channels_last(x: &tch::Tensor, kind: tch::Kind) -> tch::Tensor {
    let (n, c, h, w) = x.size4().expect("a 4-D tensor");
    let strides = [h * w * c, 1, w * c, c];
    if x.kind() == kind && x.stride() == strides {
        return x.shallow_clone();
    }
    let mut y = tch::Tensor::empty_strided([n, c, h, w], strides, (kind, x.device()));
    y.copy_(x);
    y
}

unsafe extern "C" {
    /// src/ops/libtorch_grad.cpp: `torch::autograd::grad(outputs, inputs, grad_outputs)`.
    fn simclr_autograd_grad(
        outputs: *const *const torch_sys::C_tensor,
        grad_outputs: *const *const torch_sys::C_tensor,
        noutputs: std::ffi::c_int,
        inputs: *const *const torch_sys::C_tensor,
        ninputs: std::ffi::c_int,
        results: *mut *mut torch_sys::C_tensor,
    ) -> *const std::ffi::c_char;
}

/// The gradients of `out` with respect to `leaves` when `grad` arrives at `out`: libtorch's
/// backward kernels from `grad` as it is, as PyTorch's autograd runs them.
fn gradients_of(out: &tch::Tensor, grad: &tch::Tensor, leaves: &[&tch::Tensor]) -> Vec<tch::Tensor> {
    let inputs: Vec<_> = leaves.iter().map(|t| t.as_ptr()).collect();
    let mut results = vec![std::ptr::null_mut(); leaves.len()];
    // SAFETY: every pointer is a live tch handle for the duration of the call; the function
    // writes one new handle per input, which `from_ptr` takes ownership of, or returns an error.
    unsafe {
        let error = simclr_autograd_grad(&out.as_ptr(), &grad.as_ptr(), 1, inputs.as_ptr(), inputs.len() as _, results.as_mut_ptr());
        if !error.is_null() {
            panic!("libtorch's backward failed: {}", std::ffi::CStr::from_ptr(error).to_string_lossy());
        }
        results.into_iter().map(|t| tch::Tensor::from_ptr(t)).collect()
    }
}

/// A float tensor of the libtorch autodiff backend.
pub(crate) type AutodiffTensor<C> = FloatTensor<Autodiff<LibTorch, C>>;

/// `forward` applied to the inputs as one Burn operation differentiated by libtorch. `forward`
/// returns the differentiable output and any side results (e.g. batch statistics, without
/// gradient).
pub(crate) fn record<C: CheckpointStrategy, const N: usize, R>(
    inputs: [AutodiffTensor<C>; N],
    forward: impl FnOnce(&[tch::Tensor; N]) -> (tch::Tensor, R),
) -> (AutodiffTensor<C>, R) {
    let tracked = inputs.each_ref().map(|t| t.is_tracked());
    let nodes = inputs.each_ref().map(|t| t.node());
    match TorchOp::<N>.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let inputs = inputs.map(|t| t.into_primitive());
            let leaves = std::array::from_fn(|i| inputs[i].tensor.detach().set_requires_grad(tracked[i]));
            let (out, side) = forward(&leaves);
            let result = TchTensor::new(out.detach());
            (prep.finish(TorchGraph { inputs, leaves, out }, result), side)
        }
        OpsKind::UnTracked(prep) => {
            let (out, side) = forward(&inputs.map(|t| t.into_primitive().tensor));
            (prep.finish(TchTensor::new(out)), side)
        }
    }
}

/// One operation's libtorch graph: Burn's input tensors (held so that Burn sees their storage as
/// shared and never overwrites it in place while libtorch still needs it), the libtorch leaves on
/// the same storage (requiring a gradient where Burn tracks one), and the output computed from them.
#[derive(Debug)]
struct TorchGraph<const N: usize> {
    inputs: [TchTensor; N],
    leaves: [tch::Tensor; N],
    out: tch::Tensor,
}

impl<const N: usize> Clone for TorchGraph<N> {
    fn clone(&self) -> Self {
        Self { inputs: self.inputs.clone(), leaves: self.leaves.each_ref().map(|t| t.shallow_clone()), out: self.out.shallow_clone() }
    }
}

#[derive(Debug)]
struct TorchOp<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for TorchOp<N> {
    type State = TorchGraph<N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let graph = ops.state;
        let wanted: Vec<_> = ops.parents.iter().zip(&graph.leaves).filter_map(|(node, leaf)| Some((node.as_ref()?.id, leaf))).collect();
        if wanted.is_empty() {
            return;
        }
        let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(_, leaf)| *leaf).collect();
        let gradients = gradients_of(&graph.out, &grad.tensor, &leaves);
        // libtorch may hand several leaves one tensor (a sum's addends); Burn must see them share
        // their storage, or it could update one in place under the other.
        let mut given: Vec<TchTensor> = Vec::new();
        for ((id, _), gradient) in wanted.into_iter().zip(gradients) {
            let tensor = match given.iter().find(|g| g.tensor.data_ptr() == gradient.data_ptr()) {
                Some(same) => TchTensor { tensor: gradient, storage: same.storage.clone() },
                None => TchTensor::new(gradient),
            };
            given.push(tensor.clone());
            grads.register::<LibTorch>(id, tensor);
        }
    }
}
