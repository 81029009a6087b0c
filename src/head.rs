//! The projection head g(·) (paper §2.1, §4.2; official `model.py`, `ProjectionHead`).
//!
//! Head modes, as the official `proj_head_mode`:
//! - `none`: z = h;
//! - `linear`: one linear layer + BN;
//! - `nonlinear` with L layers: L−1 × (linear, no bias, BN, ReLU) of width dim(h), then a last
//!   linear + BN to `proj_dim` (v1: L = 2, v2: L = 3).
//!
//! The last BN has no β (the official `center=False`): its β is cancelled in the forward pass, so it
//! stays at its zero initialisation and receives zero gradient.
//!
//! The forward pass returns every intermediate: `hiddens[0]` is h, `hiddens[k]` the output of head
//! layer k, and the last is z — so any layer can be evaluated (paper Fig. 8) or fine-tuned from.

use crate::device::Compute;
use crate::ops::batchnorm::batch_norm;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// What g(·) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum HeadMode {
    /// Identity: z = h.
    None,
    /// A single linear projection.
    Linear,
    /// An MLP with ReLU between layers.
    Nonlinear,
}

/// Shape of the projection head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Head kind.
    pub mode: HeadMode,
    /// Number of linear layers for `nonlinear` (≥ 1).
    pub layers: usize,
    /// Output dimension of z.
    pub proj_dim: usize,
    /// Only the first this many layers (a fine-tuned network keeps the head up to the layer its
    /// classifier reads; v2's "fine-tune from head layer K"); `None`: all.
    #[serde(default)]
    pub keep: Option<usize>,
}

/// Linear (no bias) + BN, optionally followed by ReLU.
#[derive(Module, Debug)]
pub struct LinearBn {
    linear: Linear,
    bn: BatchNorm,
    relu: bool,
    center: bool,
}

impl LinearBn {
    fn new(din: usize, dout: usize, relu: bool, center: bool, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(din, dout).with_bias(false).init(device),
            bn: BatchNormConfig::new(dout).init(device),
            relu,
            center,
        }
    }

    fn forward(&self, x: Tensor<2>, compute: &Compute) -> Tensor<2> {
        let mut y = batch_norm(&self.bn, self.linear.forward(x), compute);
        if !self.center {
            let [_, d] = y.dims();
            y = y - self.bn.beta.val().reshape([1, d]);
        }
        if self.relu { relu(y) } else { y }
    }
}

/// g(·): a stack of [`LinearBn`] layers.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    layers: Vec<LinearBn>,
    /// How the BN layers compute (sync BN; not saved).
    #[module(skip)]
    compute: Compute,
}

impl HeadConfig {
    /// Builds a head taking features of dimension `input_dim`.
    pub fn init(&self, input_dim: usize, device: &Device) -> ProjectionHead {
        let layers = match self.mode {
            HeadMode::None => vec![],
            HeadMode::Linear => vec![LinearBn::new(input_dim, self.proj_dim, false, false, device)],
            HeadMode::Nonlinear => {
                let mut layers: Vec<_> =
                    (1..self.layers).map(|_| LinearBn::new(input_dim, input_dim, true, true, device)).collect();
                layers.push(LinearBn::new(input_dim, self.proj_dim, false, false, device));
                layers
            }
        };
        let head = ProjectionHead { layers, compute: Compute::default() };
        match self.keep {
            Some(k) => head.truncated(k),
            None => head,
        }
    }
}

impl ProjectionHead {
    /// h → `[h, layer 1, …, z]`.
    pub fn forward(&self, h: Tensor<2>) -> Vec<Tensor<2>> {
        let mut hiddens = vec![h];
        for layer in &self.layers {
            let next = layer.forward(hiddens.last().unwrap().clone(), &self.compute);
            hiddens.push(next);
        }
        hiddens
    }

    /// The head computing as `compute` says.
    pub fn with_compute(self, compute: Compute) -> Self {
        ProjectionHead { compute, ..self }
    }

    /// Keeps only the first `keep` layers (v2's "fine-tune from head layer `keep`").
    pub fn truncated(mut self, keep: usize) -> Self {
        self.layers.truncate(keep);
        self
    }

    /// Dimension of the output of layer `k` (0: h, of dimension `h_dim`), read from the weights.
    pub fn out_dim_after(&self, k: usize, h_dim: usize) -> usize {
        match k {
            0 => h_dim,
            k => self.layers[k - 1].linear.weight.dims()[1],
        }
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the head is the identity.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}
