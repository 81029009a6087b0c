//! The whole SimCLR network (paper §2.1; official `model.py`, `Model`): the base encoder f
//! ([`crate::resnet`]), the projection head g ([`crate::head`]) and the optional online linear
//! probe, with seeded, reproducible initialisation.

use crate::head::{HeadConfig, ProjectionHead};
use crate::resnet::{ResNet, ResNetConfig};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

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
    /// The network computing as `compute` says (precision, memory order, sync BN), encoder and head.
    pub fn with_compute(self, compute: crate::device::Compute) -> Self {
        SimClr { encoder: self.encoder.with_compute(compute), head: self.head.with_compute(compute), ..self }
    }

    /// The network as the gradient cache's first forward runs it ([`crate::train::cache`]): the
    /// same weights without gradient, its BN in training mode leaving the running statistics as
    /// they are.
    pub fn rehearsal(&self) -> SimClr {
        let compute = crate::device::Compute { freeze_running_stats: true, ..self.encoder.compute() };
        self.clone().no_grad().with_compute(compute)
    }

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
