//! The projection head g(·) and the whole SimCLR network (paper §2.1, §4.2; official `model.py`).
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

use crate::batchnorm::batch_norm;
use crate::resnet::{ResNet, ResNetConfig};
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// What g(·) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut y = batch_norm(&self.bn, self.linear.forward(x));
        if !self.center {
            let [n, d] = y.dims();
            y = y - self.bn.beta.val().reshape([1, d]).expand([n, d]);
        }
        if self.relu { relu(y) } else { y }
    }
}

/// g(·): a stack of [`LinearBn`] layers.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    layers: Vec<LinearBn>,
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
        ProjectionHead { layers }
    }

    /// Dimension of z for features of dimension `input_dim`.
    pub fn out_dim(&self, input_dim: usize) -> usize {
        if self.mode == HeadMode::None { input_dim } else { self.proj_dim }
    }
}

impl ProjectionHead {
    /// h → `[h, layer 1, …, z]`.
    pub fn forward(&self, h: Tensor<2>) -> Vec<Tensor<2>> {
        let mut hiddens = vec![h];
        for layer in &self.layers {
            let next = layer.forward(hiddens.last().unwrap().clone());
            hiddens.push(next);
        }
        hiddens
    }

    /// Keeps only the first `keep` layers (v2's "fine-tune from head layer `keep`").
    pub fn truncated(mut self, keep: usize) -> Self {
        self.layers.truncate(keep);
        self
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

/// Encoder f, projection head g, and the optional online linear probe.
#[derive(Module, Debug)]
pub struct SimClr {
    /// f(·).
    pub encoder: ResNet,
    /// g(·).
    pub head: ProjectionHead,
    /// A linear classifier trained on stop-gradient(h) alongside the contrastive loss (official
    /// `lineareval_while_pretraining`, its "head_supervised"); it never changes f or g.
    pub probe: Option<Linear>,
}

/// Encoder and head shapes together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The encoder.
    pub encoder: ResNetConfig,
    /// The head.
    pub head: HeadConfig,
    /// Classes of the online linear probe (0: no probe).
    pub probe_classes: usize,
}

/// Serialises seeding and initialisation: the backend's RNG is global, so two models initialised
/// at once from different threads would otherwise interleave their draws.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds a module with `build` and draws all its parameters from `seed` while holding a global
/// lock, so initialisation is reproducible even with other threads initialising modules.
pub fn seeded<M: Module>(seed: u64, device: &Device, build: impl FnOnce() -> M) -> M {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    // Parameters are initialised lazily on first use: draw them all now, under the lock.
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    let module = build();
    module.visit(&mut Touch);
    module
}

impl ModelConfig {
    /// Builds the network with weights drawn from `seed`: the same seed gives the same weights,
    /// whatever else the process is doing.
    pub fn init_seeded(&self, seed: u64, device: &Device) -> SimClr {
        seeded(seed, device, || self.init(device))
    }

    /// Builds the network with freshly initialised weights from the backend's current RNG state.
    pub fn init(&self, device: &Device) -> SimClr {
        let encoder = self.encoder.init(device);
        let head = self.head.init(encoder.out_dim(), device);
        let probe = (self.probe_classes > 0).then(|| LinearConfig::new(encoder.out_dim(), self.probe_classes).init(device));
        SimClr { encoder, head, probe }
    }
}

impl SimClr {
    /// Images → `[h, head layer 1, …, z]`.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<2>> {
        self.head.forward(self.encoder.forward(images))
    }

    /// Online-probe logits for features `h`, through a stop-gradient so the encoder is not trained
    /// by the labels; `None` without a probe.
    pub fn probe_logits(&self, h: Tensor<2>) -> Option<Tensor<2>> {
        self.probe.as_ref().map(|p| p.forward(h.detach()))
    }
}
