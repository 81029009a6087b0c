//! The optimisers' update of every parameter at once on libtorch (the `tch` backend): SGD by
//! PyTorch's fused kernel (`_fused_sgd_`), LARS by its multi-tensor operations (`_foreach_*`), both
//! through src/ops/libtorch_optim.cpp.
//!
//! [`crate::optim`]'s rules are Burn tensor operations per parameter: SGD up to eight, LARS about
//! twenty, each a kernel launch on a GPU and a pass over the parameter (~1,600 launches a step for
//! ResNet-50, ~12% of its GPU step at batch 64, docs/performance.md "On a GPU"). Here the optimiser
//! gathers the parameters, gradients and state buffers of one update into a [`Batch`] (one per
//! weight-decay group) and each batch is one call that updates the parameters and buffers in
//! place, as PyTorch's `fused`/`foreach` optimisers do. The state keeps its flat buffers, so its
//! save and load do not change.
//!
//! In place is safe because each parameter and gradient is first made exclusive ([`exclusive`]):
//! one whose storage anything else shares (a model cloned before the step, a gradient kept
//! elsewhere) is copied first, so only the module the step returns sees the new values.

#![allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.

use crate::optim::Rule;
use burn::backend::libtorch::TchTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::{Device, Tensor};
use std::ffi::{c_char, c_int};

/// Whether [`Batch::update`] serves `rule` on `device`: SGD and LARS on libtorch (AdamW keeps the
/// per-parameter rule everywhere).
pub(crate) fn serves(rule: &Rule, device: &Device) -> bool {
    matches!(rule, Rule::Sgd { .. } | Rule::Lars(_)) && super::libtorch::is_libtorch(device)
}

/// `w` (a libtorch tensor) with storage of its own, dense and row-major: `w` itself when nothing
/// else shares its storage, else a copy.
pub(crate) fn exclusive<const D: usize>(w: Tensor<D>) -> Tensor<D> {
    let w = own(libtorch(w));
    Tensor::from_dispatch(DispatchTensor { kind: DispatchTensorKind::LibTorch(BackendTensor::Float(w)), autodiff: DispatchAutodiffContext::Disabled })
}

/// See [`exclusive`].
fn own(t: TchTensor) -> TchTensor {
    if !t.tensor.is_contiguous() {
        TchTensor::new(t.tensor.contiguous())
    } else if !t.can_mut() {
        TchTensor::new(t.tensor.copy())
    } else {
        t
    }
}

/// The libtorch tensor of `t` (a float tensor on libtorch; its autodiff association, if any, dropped).
fn libtorch<const D: usize>(t: Tensor<D>) -> TchTensor {
    match t.without_autodiff().into_dispatch().kind {
        DispatchTensorKind::LibTorch(BackendTensor::Float(t)) => t,
        other => panic!("the fused optimiser update takes libtorch float tensors, not {other:?}"),
    }
}

/// The parameters of one update with their gradients and state buffers, in one order.
#[derive(Default)]
pub(crate) struct Batch {
    params: Vec<TchTensor>,
    grads: Vec<TchTensor>,
    buffers: Vec<TchTensor>,
}

impl Batch {
    /// Adds parameter `w` (from [`exclusive`]; the update writes its storage) with gradient `g`
    /// (made exclusive here: LARS writes its scaled step over it) and the flat state `buffer` (as
    /// many values as `w`; written too).
    pub(crate) fn push<const D: usize>(&mut self, w: Tensor<D>, g: Tensor<D>, buffer: Tensor<1>) {
        self.params.push(libtorch(w));
        self.grads.push(own(libtorch(g)));
        self.buffers.push(libtorch(buffer));
    }

    /// One update of every parameter by `rule` (SGD or LARS) at learning rate `lr`; `decay`:
    /// whether these parameters take weight decay (and, for LARS, the trust ratio).
    pub(crate) fn update(self, rule: Rule, lr: f64, decay: bool) {
        if self.params.is_empty() {
            return;
        }
        let handle = |tensors: &[TchTensor]| -> Vec<Handle> { tensors.iter().map(|t| t.tensor.as_ptr() as Handle).collect() };
        let (w, g, b) = (handle(&self.params), handle(&self.grads), handle(&self.buffers));
        let n = w.len() as c_int;
        // SAFETY: every handle is a live tch tensor for the duration of the call (`self` holds
        // them), which writes only into the storage of the parameters, gradients and buffers,
        // which nothing shares but the module the step returns and the optimiser's state.
        let error = unsafe {
            match rule {
                Rule::Sgd { momentum, weight_decay } => {
                    simclr_fused_sgd(w.as_ptr(), g.as_ptr(), b.as_ptr(), n, lr, momentum, if decay { weight_decay } else { 0.0 })
                }
                Rule::Lars(lars) => simclr_foreach_lars(
                    w.as_ptr(),
                    g.as_ptr(),
                    b.as_ptr(),
                    n,
                    lr,
                    lars.momentum,
                    lars.weight_decay,
                    lars.trust_coefficient,
                    decay as c_int,
                ),
                Rule::Adamw { .. } => unreachable!("AdamW is updated per parameter (see `serves`)"),
            }
        };
        if !error.is_null() {
            // SAFETY: a non-null result is libtorch's message, a C string valid until the next call.
            panic!("libtorch's optimiser update failed: {}", unsafe { std::ffi::CStr::from_ptr(error) }.to_string_lossy());
        }
    }
}

type Handle = *const torch_sys::C_tensor;

unsafe extern "C" {
    /// src/ops/libtorch_optim.cpp: Nesterov SGD, dampening 0.
    fn simclr_fused_sgd(params: *const Handle, grads: *const Handle, buffers: *const Handle, n: c_int, lr: f64, momentum: f64, weight_decay: f64) -> *const c_char;
    /// src/ops/libtorch_optim.cpp: LARS (`adapt`: weight decay and trust ratio).
    fn simclr_foreach_lars(
        params: *const Handle,
        grads: *const Handle,
        buffers: *const Handle,
        n: c_int,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        trust_coefficient: f64,
        adapt: c_int,
    ) -> *const c_char;
}
