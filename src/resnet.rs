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
//! - SimCLR v2's options (arXiv 2006.10029 §2; official `resnet.py`): selective kernels
//!   (`sk_ratio` > 0, Li et al. 2019) make each bottleneck's 3×3 convolution two branches mixed by
//!   a per-channel softmax attention, and bring ResNet-D's deep stem (three 3×3 convolutions) and
//!   average-pooling projection shortcuts (He et al. 2019); squeeze-excitation (`se_ratio` > 0,
//!   Hu et al. 2018) gates each block's output channels.
//! - Padding: every convolution pads k/2 on each side, which is both torchvision's rule and the
//!   official code's (explicit padding then VALID for strided convolutions, SAME otherwise); only
//!   the ImageNet stem's max-pooling differs, chosen by [`Padding`].
//!
//! The output h is the global-average-pooled feature of the last stage (512·w for basic blocks,
//! 2048·w for bottlenecks).

use crate::device::Compute;
use crate::ops::batchnorm::{batch_norm, batch_norm_relu};
use crate::ops::residual::add_relu;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
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

/// How the ImageNet stem's 3×3 stride-2 max-pooling pads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// One pixel on every side (PyTorch, torchvision).
    #[default]
    Torchvision,
    /// TensorFlow's SAME: the padding the output size needs, the odd pixel at the bottom/right
    /// (no padding at the top/left of an even side). Networks imported from TensorFlow use it.
    Tensorflow,
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
    /// Selective kernels with attention of max(planes·sk_ratio, 32) channels (0: none; SimCLR v2's
    /// released models: 0.0625). Bottleneck depths only.
    #[serde(default)]
    pub sk_ratio: f32,
    /// Squeeze-excitation squeezing to max(1, planes·se_ratio) channels (0: none).
    #[serde(default)]
    pub se_ratio: f32,
    /// The stem max-pooling's padding.
    #[serde(default)]
    pub padding: Padding,
}

/// Smallest attention width of a selective kernel (official `min_dim`).
pub const SK_MIN_DIM: usize = 32;

/// The attention width of a selective kernel over `planes` channels: max(⌊planes·ratio⌋, 32).
pub fn sk_width(planes: usize, ratio: f32) -> usize {
    ((planes as f64 * ratio as f64) as usize).max(SK_MIN_DIM)
}

/// The squeeze width of squeeze-excitation in a block of `planes`: max(⌊planes·ratio⌋, 1).
pub fn se_width(planes: usize, ratio: f32) -> usize {
    ((planes as f64 * ratio as f64) as usize).max(1)
}

fn yes() -> bool {
    true
}

/// Channel count `base` scaled by the width multiplier (at least 1).
pub fn scaled(base: usize, width: f32) -> usize {
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

/// The stem's 3×3 stride-2 max-pooling, padded as `padding` says (with −∞, explicitly where
/// the padding is asymmetric: Burn's asymmetric pooling slices its output, which the ONNX export
/// cannot record with a dynamic batch axis).
fn max_pool(x: Tensor<4>, padding: Padding) -> Tensor<4> {
    let options = MaxPoolOptions::new([3, 3]).with_stride([2, 2]);
    let [_, _, h, w] = x.dims();
    match padding {
        Padding::Torchvision => max_pool2d(x, options.with_padding([1, 1])),
        // SAME: out = ⌈n/2⌉ needs 2·(out − 1) + 3 − n pixels, the odd one at the end.
        Padding::Tensorflow => {
            let pads = [h, w].map(|n| {
                let total = (2 * (n.div_ceil(2) - 1) + 3).saturating_sub(n);
                (total / 2, total - total / 2)
            });
            max_pool2d(x.pad(pads, PadMode::Constant(f32::NEG_INFINITY)), options)
        }
    }
}

/// 1×1 convolution + BN on the skip path when the shape changes. With `pool` (ResNet-D, the
/// official code's choice with selective kernels) a 2×2 average pooling does the stride and the
/// convolution has stride 1.
#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
    /// The average pooling's stride, when it pools.
    pool: Option<usize>,
}

impl Shortcut {
    fn new(cin: usize, cout: usize, stride: usize, pool: bool, device: &Device) -> Option<Self> {
        let (conv_stride, pool) = if pool { (1, Some(stride)) } else { (stride, None) };
        (stride != 1 || cin != cout).then(|| Self { conv: conv(cin, cout, 1, conv_stride, device), bn: bn(cout, false, device), pool })
    }

    fn apply(this: &Option<Self>, x: Tensor<4>, compute: &Compute) -> Tensor<4> {
        match this {
            Some(s) => {
                let x = match s.pool {
                    Some(stride) => average_pool(x, stride),
                    None => x,
                };
                batch_norm(&s.bn, convolve(&s.conv, x, compute), compute)
            }
            None => x,
        }
    }
}

/// The official code's 2×2 average pooling of a ResNet-D shortcut. Stride 2: one zero row and
/// column padded at the bottom/right, then VALID pooling (an odd side's last window averages the
/// zeros too); stride 1: SAME pooling, whose bottom/right windows average only the pixels inside.
/// The padding is explicit (Burn's asymmetric pooling slices its output, which the ONNX export
/// cannot record with a dynamic batch axis).
fn average_pool(x: Tensor<4>, stride: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (device, dtype) = (x.device(), x.dtype());
    let pooled = avg_pool2d(x.pad([(0, 1), (0, 1)], PadMode::Constant(0.0)), AvgPoolOptions::new([2, 2]).with_stride([stride, stride]));
    if stride > 1 {
        return pooled;
    }
    // Windows of the last row or column hold 2 pixels (the corner's 1), not 4.
    let scale: Vec<f32> = (0..h * w).map(|i| [i / w + 1 == h, i % w + 1 == w].iter().map(|&edge| if edge { 2.0 } else { 1.0 }).product()).collect();
    pooled * Tensor::<4>::from_data(TensorData::new(scale, [1, 1, h, w]), &device).cast(dtype)
}

/// Selective kernel's attention (Li et al. 2019, as the official `sk_conv2d`): the 3×3
/// convolution before it gives 2·planes channels, two branches of `planes`; their sum, averaged
/// over space, goes through a 1×1 convolution (no bias), BN and ReLU, then a 1×1 convolution
/// to 2·planes whose two halves are softmaxed against each other per channel to weigh the
/// branches. Every tensor stays `[N, C, H, W]` and the branches are picked by index, not sliced
/// or reshaped, so the ONNX export keeps its dynamic batch axis.
#[derive(Module, Debug)]
pub struct SelectiveKernel {
    reduce: Conv2d,
    bn: BatchNorm,
    mix: Conv2d,
}

impl SelectiveKernel {
    fn new(planes: usize, ratio: f32, device: &Device) -> Self {
        let mid = sk_width(planes, ratio);
        Self { reduce: conv(planes, mid, 1, 1, device), bn: bn(mid, false, device), mix: conv(mid, 2 * planes, 1, 1, device) }
    }

    /// `branches` `[N, 2·planes, H, W]` → `[N, planes, H, W]`.
    fn forward(&self, branches: Tensor<4>, c: &Compute) -> Tensor<4> {
        let [_, two, _, _] = branches.dims();
        let device = branches.device();
        let halves = [0..two / 2, two / 2..two].map(|r| crate::ops::indices(&r.collect::<Vec<_>>(), &device));
        let [first, second] = halves.clone().map(|i| branches.clone().select(1, i));
        let summary = spatial_mean(first.clone() + second.clone());
        let attention = batch_norm_relu(&self.bn, self.reduce.forward(summary), c);
        let logits = self.mix.forward(attention);
        let [p, q] = halves.map(|i| logits.clone().select(1, i));
        // softmax over the two branches: e^p / (e^p + e^q) = σ(p − q).
        let weight = sigmoid(p - q).cast(first.dtype());
        second.clone() + (first - second) * weight
    }
}

/// Squeeze-excitation (Hu et al. 2018, as the official `se_layer`): the block's output averaged
/// over space, a 1×1 convolution with bias to max(1, planes·ratio), ReLU, a 1×1 convolution with
/// bias back to every channel and a sigmoid give each channel's gate.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    reduce: Conv2d,
    expand: Conv2d,
}

impl SqueezeExcite {
    fn new(planes: usize, channels: usize, ratio: f32, device: &Device) -> Self {
        let mid = se_width(planes, ratio);
        let biased = |cin, cout| Conv2dConfig::new([cin, cout], [1, 1]).with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true }).init(device);
        Self { reduce: biased(channels, mid), expand: biased(mid, channels) }
    }

    fn apply(this: &Option<Self>, x: Tensor<4>) -> Tensor<4> {
        let Some(se) = this else { return x };
        let gate = sigmoid(se.expand.forward(relu(se.reduce.forward(spatial_mean(x.clone())))));
        let dtype = x.dtype();
        x * gate.cast(dtype)
    }
}

/// `[N, C, H, W]` → `[N, C, 1, 1]` in f32, the mean over space (sums and a division: ONNX export
/// (burn-onnx 0.22) lowers `sum_dim`, not `mean_dim`). Under `--precision bf16` the activations
/// are bfloat16; their mean, and what follows it (h, the attention, the gates), is f32.
fn spatial_mean(x: Tensor<4>) -> Tensor<4> {
    let x = if x.dtype() != DType::F32 { x.cast(FloatDType::F32) } else { x };
    let [_, _, h, w] = x.dims();
    x.sum_dim(3).sum_dim(2) / (h * w) as f32
}

/// Two 3×3 convolutions (ResNet-18/34).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Shortcut>,
    se: Option<SqueezeExcite>,
}

/// 1×1 reduce, 3×3 (strided), 1×1 expand ×4 (ResNet-50/101/152). With selective kernels the 3×3
/// convolution and its BN give two branches (2·planes channels) that `sk` mixes.
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    sk: Option<SelectiveKernel>,
    conv3: Conv2d,
    bn3: BatchNorm,
    shortcut: Option<Shortcut>,
    se: Option<SqueezeExcite>,
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
                add_relu(SqueezeExcite::apply(&b.se, y), Shortcut::apply(&b.shortcut, x, c))
            }
            Block::Bottleneck(b) => {
                let y = batch_norm_relu(&b.bn1, convolve(&b.conv1, x.clone(), c), c);
                let y = batch_norm_relu(&b.bn2, convolve(&b.conv2, y, c), c);
                let y = match &b.sk {
                    Some(sk) => sk.forward(y, c),
                    None => y,
                };
                let y = batch_norm(&b.bn3, convolve(&b.conv3, y, c), c);
                add_relu(SqueezeExcite::apply(&b.se, y), Shortcut::apply(&b.shortcut, x, c))
            }
        }
    }
}

/// The second and third convolutions of ResNet-D's deep stem (the first is the stem's `conv1`,
/// 3×3 stride 2 to half the stem width): 3×3 to half the width, then 3×3 to the full width.
#[derive(Module, Debug)]
pub struct DeepStem {
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
}

/// The ResNet encoder f(·) without its classification layer.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    deep_stem: Option<DeepStem>,
    /// The ImageNet stem's max-pooling (its padding); none for the CIFAR stem.
    #[module(skip)]
    max_pool: Option<Padding>,
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
        let sk = self.sk_ratio > 0.0;
        let stem_width = scaled(64, self.width);
        // ResNet-D's deep stem comes with selective kernels (official code), ImageNet stem only.
        let deep = sk && self.stem == Stem::Imagenet;
        let (conv1, bn1, deep_stem) = match (self.stem, deep) {
            (Stem::Imagenet, true) => {
                let half = (stem_width / 2).max(1);
                let deep = DeepStem {
                    conv2: conv(half, half, 3, 1, device),
                    bn2: bn(half, false, device),
                    conv3: conv(half, stem_width, 3, 1, device),
                    bn3: bn(stem_width, false, device),
                };
                (conv(3, half, 3, 2, device), bn(half, false, device), Some(deep))
            }
            (Stem::Imagenet, false) => (conv(3, stem_width, 7, 2, device), bn(stem_width, false, device), None),
            _ => (conv(3, stem_width, 3, 1, device), bn(stem_width, false, device), None),
        };
        let max_pool = (self.stem == Stem::Imagenet).then_some(self.padding);
        let expansion = if bottleneck { 4 } else { 1 };
        let se = |planes: usize, cout: usize| (self.se_ratio > 0.0).then(|| SqueezeExcite::new(planes, cout, self.se_ratio, device));
        let mut cin = stem_width;
        let mut blocks = Vec::new();
        for (stage, &depth) in depths.iter().enumerate() {
            let planes = scaled(64 << stage, self.width);
            let cout = planes * expansion;
            for i in 0..depth {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let shortcut = Shortcut::new(cin, cout, stride, sk, device);
                blocks.push(if bottleneck {
                    let branches = if sk { 2 * planes } else { planes };
                    Block::Bottleneck(Bottleneck {
                        conv1: conv(cin, planes, 1, 1, device),
                        bn1: bn(planes, false, device),
                        conv2: conv(planes, branches, 3, stride, device),
                        bn2: bn(branches, false, device),
                        sk: sk.then(|| SelectiveKernel::new(planes, self.sk_ratio, device)),
                        conv3: conv(planes, cout, 1, 1, device),
                        bn3: bn(cout, self.zero_init_residual, device),
                        shortcut,
                        se: se(planes, cout),
                    })
                } else {
                    Block::Basic(BasicBlock {
                        conv1: conv(cin, planes, 3, stride, device),
                        bn1: bn(planes, false, device),
                        conv2: conv(planes, planes, 3, 1, device),
                        bn2: bn(planes, self.zero_init_residual, device),
                        shortcut,
                        se: se(planes, cout),
                    })
                });
                cin = cout;
            }
        }
        ResNet { conv1, bn1, deep_stem, max_pool, blocks, out_dim: cin, compute: Compute::default() }
    }

    /// Checks the options against each other; errors name the flag and the fix.
    pub fn check(&self) -> Result<(), String> {
        for (flag, ratio) in [("--sk-ratio", self.sk_ratio), ("--se-ratio", self.se_ratio)] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{flag} {ratio}: a share of the block's channels in [0, 1] (0: off; SimCLR v2's models: --sk-ratio 0.0625)"));
            }
        }
        if self.sk_ratio > 0.0 && !self.arch.layout().1 {
            return Err(format!(
                "--sk-ratio {} with {:?}: selective kernels replace a bottleneck's 3×3 convolution, so they need --arch resnet50, resnet101 or resnet152",
                self.sk_ratio, self.arch
            ));
        }
        Ok(())
    }

    /// Dimension of h: the last stage's channels.
    pub fn out_dim(&self) -> usize {
        let expansion = if self.arch.layout().1 { 4 } else { 1 };
        expansion * scaled(512, self.width)
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
        if let Some(d) = &self.deep_stem {
            x = batch_norm_relu(&d.bn2, convolve(&d.conv2, x, c), c);
            x = batch_norm_relu(&d.bn3, convolve(&d.conv3, x, c), c);
        }
        if let Some(padding) = self.max_pool {
            x = max_pool(x, padding);
        }
        for block in &self.blocks {
            x = block.forward(x, c);
        }
        // Under `--precision bf16` the activations are bfloat16 up to here (as under autocast);
        // h, the head and the loss are f32.
        // Global average pooling.
        let [n, c, _, _] = x.dims();
        spatial_mean(x).reshape([n, c])
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
