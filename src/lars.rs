//! LARS: layer-wise adaptive rate scaling (You et al. 2017), as the official `lars_optimizer.py`
//! with `classic_momentum = True` (paper §2.2 "Training with large batch size").
//!
//! For a parameter w with gradient g, learning rate η, momentum m, weight decay λ and trust
//! coefficient ε (0.001):
//!
//! ```text
//! g ← g + λ·w                                   (not for BN parameters and biases)
//! r ← ε‖w‖ / ‖g‖ if ‖w‖ > 0 and ‖g‖ > 0, else 1  (not for BN parameters and biases: r = 1)
//! v ← m·v + η·r·g
//! w ← w − v
//! ```
//!
//! The trust ratio is computed on the weight-decayed gradient, and stays on the device (no sync).

use burn::tensor::Tensor;

/// LARS hyper-parameters (official defaults: momentum 0.9, ε = 0.001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lars {
    /// Momentum m.
    pub momentum: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    /// Trust coefficient ε ("eeta" in the official code).
    pub trust_coefficient: f64,
}

impl Lars {
    /// One update of parameter `w` with gradient `g` and momentum buffer `v` (zeros at the first
    /// step). `adapt` is false for parameters excluded from weight decay and trust scaling.
    /// Returns the new parameter and the new buffer.
    pub fn update<const D: usize>(
        &self,
        lr: f64,
        w: Tensor<D>,
        g: Tensor<D>,
        v: Tensor<D>,
        adapt: bool,
    ) -> (Tensor<D>, Tensor<D>) {
        let step = if adapt {
            let g = g + w.clone().mul_scalar(self.weight_decay);
            let w_norm = w.clone().square().sum().sqrt();
            let g_norm = g.clone().square().sum().sqrt();
            let usable = w_norm.clone().greater_elem(0.0).bool_and(g_norm.clone().greater_elem(0.0));
            let ratio = w_norm.mul_scalar(self.trust_coefficient) / g_norm;
            let trust = ratio.ones_like().mask_where(usable, ratio);
            let dims = g.dims();
            g * trust.mul_scalar(lr).reshape([1; D]).expand(dims)
        } else {
            g.mul_scalar(lr)
        };
        let v = v.mul_scalar(self.momentum) + step;
        (w - v.clone(), v)
    }
}
