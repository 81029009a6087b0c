//! The base encoder f(·): ResNet (He et al. 2016) as used by SimCLR (paper §2.1, official `resnet.py`).
//!
//! - Depths 18/34 use basic blocks, 50/101/152 bottleneck blocks with the stride on the 3×3 conv
//!   (torchvision's "v1.5", also the official SimCLR code's layout).
//! - The width multiplier scales every channel count, the stem included (paper §4, ResNet-50 (2×),
//!   (4×)); fractions such as 0.25 give small networks for CPU runs and tests.
//! - Stems: ImageNet (7×7/2 conv + 3×3/2 max-pool) or CIFAR (3×3/1 conv, no max-pool; App. B.9).
//! - Every block's last BN has γ initialised to zero for pretraining, so each residual block starts
//!   as the identity (`zero_init_residual`; off for the random-init evaluation baseline).
//! - Convolutions have no bias and use He (fan-out) normal initialisation, as torchvision.
//!
//! The output h is the global-average-pooled feature of the last stage (512·w for basic blocks,
//! 2048·w for bottlenecks).

use crate::device::Compute;
use crate::ops::batchnorm::{batch_norm, batch_norm_relu};
use crate::ops::residual::add_relu;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// ResNet depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18 (basic blocks 2-2-2-2).
    Resnet18,
    /// ResNet-34 (basic blocks 3-4-6-3).
    Resnet34,
    /// ResNet-50 (bottlenecks 3-4-6-3).
    Resnet50,
    /// ResNet-101 (bottlenecks 3-4-23-3).
    Resnet101,
    /// ResNet-152 (bottlenecks 3-8-36-3).
    Resnet152,
}

impl Arch {
    /// Every depth, shallowest first.
    pub const ALL: [Arch; 5] = [Arch::Resnet18, Arch::Resnet34, Arch::Resnet50, Arch::Resnet101, Arch::Resnet152];

    /// Blocks per stage and whether they are bottlenecks.
    pub fn layout(self) -> ([usize; 4], bool) {
        match self {
            Arch::Resnet18 => ([2, 2, 2, 2], false),
            Arch::Resnet34 => ([3, 4, 6, 3], false),
            Arch::Resnet50 => ([3, 4, 6, 3], true),
            Arch::Resnet101 => ([3, 4, 23, 3], true),
            Arch::Resnet152 => ([3, 8, 36, 3], true),
        }
    }
}

/// The first layers of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// CIFAR stem for images ≤ 32 px, ImageNet stem otherwise (the official code's rule).
    Auto,
    /// 3×3 stride-1 convolution, no max-pool.
    Cifar,
    /// 7×7 stride-2 convolution and 3×3 stride-2 max-pool.
    Imagenet,
}

impl Stem {
    /// Resolves `Auto` for images of side `image_size`.
    pub fn resolve(self, image_size: usize) -> Stem {
        match self {
            Stem::Auto if image_size <= 32 => Stem::Cifar,
            Stem::Auto => Stem::Imagenet,
            other => other,
        }
    }

    /// Total downsampling factor of the stem.
    pub fn stride(self) -> usize {
        if self == Stem::Imagenet { 4 } else { 1 }
    }
}

/// Shape of a ResNet encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Depth.
    pub arch: Arch,
    /// Width multiplier applied to every channel count.
    pub width: f32,
    /// Stem (resolved, not `Auto`).
    pub stem: Stem,
    /// Zero-initialise γ of each block's last BN (official SimCLR and Goyal et al.; used for
    /// pretraining). Off gives torchvision's default init, the usual random-init baseline.
    #[serde(default = "yes")]
    pub zero_init_residual: bool,
}

fn yes() -> bool {
    true
}

/// Channel count `base` scaled by the width multiplier (at least 1).
fn scaled(base: usize, width: f32) -> usize {
    ((base as f32 * width).round() as usize).max(1)
}

fn conv(cin: usize, cout: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(kernel / 2, kernel / 2, kernel / 2, kernel / 2))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true })
        .init(device)
}

/// Runs `conv` (built by [`conv`]: square kernel, padding k/2, no bias) through
/// [`crate::ops::conv::conv2d`], whose flex backward is the faster one.
fn convolve(conv: &Conv2d, x: Tensor<4>, compute: &Compute) -> Tensor<4> {
    crate::ops::conv::conv2d(x, conv.weight.val(), conv.stride[0], conv.kernel_size[0] / 2, compute)
}

fn bn(channels: usize, zero_gamma: bool, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(channels).init(device);
    if zero_gamma {
        norm.gamma = Param::from_tensor(Tensor::zeros([channels], device));
    }
    norm
}

/// 1×1 convolution + BN on the skip path when the shape changes.
#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Shortcut {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Option<Self> {
        (stride != 1 || cin != cout).then(|| Self { conv: conv(cin, cout, 1, stride, device), bn: bn(cout, false, device) })
    }

    fn apply(this: &Option<Self>, x: Tensor<4>, compute: &Compute) -> Tensor<4> {
        match this {
            Some(s) => batch_norm(&s.bn, convolve(&s.conv, x, compute), compute),
            None => x,
        }
    }
}

/// Two 3×3 convolutions (ResNet-18/34).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Shortcut>,
}

/// 1×1 reduce, 3×3 (strided), 1×1 expand ×4 (ResNet-50/101/152).
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    shortcut: Option<Shortcut>,
}

/// A residual block of either kind.
#[derive(Module, Debug)]
pub enum Block {
    /// ResNet-18/34 block.
    Basic(BasicBlock),
    /// ResNet-50+ block.
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward(&self, x: Tensor<4>, c: &Compute) -> Tensor<4> {
        match self {
            Block::Basic(b) => {
                let y = batch_norm_relu(&b.bn1, convolve(&b.conv1, x.clone(), c), c);
                let y = batch_norm(&b.bn2, convolve(&b.conv2, y, c), c);
                add_relu(y, Shortcut::apply(&b.shortcut, x, c))
            }
            Block::Bottleneck(b) => {
                let y = batch_norm_relu(&b.bn1, convolve(&b.conv1, x.clone(), c), c);
                let y = batch_norm_relu(&b.bn2, convolve(&b.conv2, y, c), c);
                let y = batch_norm(&b.bn3, convolve(&b.conv3, y, c), c);
                add_relu(y, Shortcut::apply(&b.shortcut, x, c))
            }
        }
    }
}

/// The ResNet encoder f(·) without its classification layer.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: Option<MaxPool2d>,
    blocks: Vec<Block>,
    out_dim: usize,
    /// How the layers compute (not saved: a property of the run, not of the weights).
    #[module(skip)]
    compute: Compute,
}

impl ResNetConfig {
    /// Builds the network with freshly initialised weights.
    pub fn init(&self, device: &Device) -> ResNet {
        let (depths, bottleneck) = self.arch.layout();
        let stem_width = scaled(64, self.width);
        let (conv1, maxpool) = match self.stem {
            Stem::Imagenet => (
                conv(3, stem_width, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
            _ => (conv(3, stem_width, 3, 1, device), None),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut cin = stem_width;
        let mut blocks = Vec::new();
        for (stage, &depth) in depths.iter().enumerate() {
            let planes = scaled(64 << stage, self.width);
            let cout = planes * expansion;
            for i in 0..depth {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let shortcut = Shortcut::new(cin, cout, stride, device);
                blocks.push(if bottleneck {
                    Block::Bottleneck(Bottleneck {
                        conv1: conv(cin, planes, 1, 1, device),
                        bn1: bn(planes, false, device),
                        conv2: conv(planes, planes, 3, stride, device),
                        bn2: bn(planes, false, device),
                        conv3: conv(planes, cout, 1, 1, device),
                        bn3: bn(cout, self.zero_init_residual, device),
                        shortcut,
                    })
                } else {
                    Block::Basic(BasicBlock {
                        conv1: conv(cin, planes, 3, stride, device),
                        bn1: bn(planes, false, device),
                        conv2: conv(planes, planes, 3, 1, device),
                        bn2: bn(planes, self.zero_init_residual, device),
                        shortcut,
                    })
                });
                cin = cout;
            }
        }
        ResNet { conv1, bn1: bn(stem_width, false, device), maxpool, blocks, out_dim: cin, compute: Compute::default() }
    }

    /// Smallest image side this network accepts: the last stage must keep at least one pixel.
    pub fn min_image_size(&self) -> usize {
        self.stem.stride() * 8
    }
}

impl ResNet {
    /// Images `[N, 3, H, W]` in `[0, 1]` → features h `[N, out_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let c = &self.compute;
        let mut x = batch_norm_relu(&self.bn1, convolve(&self.conv1, images, c), c);
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        for block in &self.blocks {
            x = block.forward(x, c);
        }
        // Under `--precision bf16` the activations are bfloat16 up to here (as under autocast);
        // h, the head and the loss are f32.
        if x.dtype() != DType::F32 {
            x = x.cast(FloatDType::F32);
        }
        // Global average pooling, as a sum and a division: ONNX export (burn-onnx 0.22) lowers
        // `sum_dim` but not `mean_dim`.
        let [n, c, h, w] = x.dims();
        x.reshape([n, c, h * w]).sum_dim(2).reshape([n, c]) / (h * w) as f32
    }

    /// Dimension of h.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The network computing as `compute` says.
    pub fn with_compute(self, compute: Compute) -> Self {
        ResNet { compute, ..self }
    }

    /// How the network computes.
    pub fn compute(&self) -> Compute {
        self.compute
    }
}
