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
    /// `lineareval_while_pretraining`, its "head_supervised"); it never changes f or g. Imported
    /// from a TensorFlow checkpoint, the release's supervised head.
    pub probe: Option<Linear>,
    /// The output of `[h, head layer 1, …, z]` the probe reads (0: h; SimCLR v2's fine-tuned
    /// classifiers read head layer 1, the official `ft_proj_selector`).
    pub probe_layer: usize,
    /// How evaluation resizes images for this network (its run's `[augment] resize`; not saved
    /// with the weights).
    #[module(skip)]
    pub input_resize: crate::augment::Resize,
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
    /// The layer the probe reads (0: h).
    #[serde(default)]
    pub probe_layer: usize,
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
        let input = head.out_dim_after(self.probe_layer.min(head.len()), encoder.out_dim());
        let probe = (self.probe_classes > 0).then(|| LinearConfig::new(input, self.probe_classes).init(device));
        SimClr { encoder, head, probe, probe_layer: self.probe_layer, input_resize: Default::default() }
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

    /// The preprocessing of images to evaluate this network on, at side `image_size`.
    pub fn eval_pipeline(&self, image_size: usize) -> crate::augment::AugmentConfig {
        crate::augment::AugmentConfig { resize: self.input_resize, ..crate::augment::AugmentConfig::eval(image_size) }
    }

    /// Images → `[h, head layer 1, …, z]`.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<2>> {
        self.head.forward(self.encoder.forward(images))
    }

    /// Online-probe logits for the outputs `hiddens` (`[h, head layer 1, …, z]`) of a forward
    /// pass, from the layer it reads, through a stop-gradient so the network is not trained by
    /// the labels; `None` without a probe (or where the head was cut below its layer).
    pub fn probe_logits(&self, hiddens: &[Tensor<2>]) -> Option<Tensor<2>> {
        let input = hiddens.get(self.probe_layer)?;
        self.probe.as_ref().map(|p| p.forward(input.clone().detach()))
    }
}
