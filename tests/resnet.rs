//! Encoder and head shapes: parameter counts equal torchvision's, output shapes for both stems.

use burn::module::Module;
use burn::tensor::Tensor;
use simclr::head::{HeadConfig, HeadMode};
use simclr::model::ModelConfig;
use simclr::resnet::{Arch, ResNetConfig, Stem};

fn params(arch: Arch) -> usize {
    let net = ResNetConfig { arch, width: 1.0, stem: Stem::Imagenet, zero_init_residual: true, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() }.init(&simclr::default_device());
    simclr::num_trainable_params(&net)
}

#[test]
fn parameter_counts_match_torchvision_without_fc() {
    // torchvision resnet18 / resnet50 minus their 1000-way fc layer (512·1000+1000, 2048·1000+1000).
    assert_eq!(params(Arch::Resnet18), 11_689_512 - 513_000);
    assert_eq!(params(Arch::Resnet50), 23_508_032);
}

#[test]
fn deeper_parameter_counts_match_torchvision_without_fc() {
    assert_eq!(params(Arch::Resnet34), 21_797_672 - 513_000);
    assert_eq!(params(Arch::Resnet101), 44_549_160 - 2_049_000);
}

#[test]
fn cifar_stem_keeps_resolution_imagenet_stem_divides_by_four() {
    let device = simclr::default_device();
    for (stem, size) in [(Stem::Cifar, 32), (Stem::Imagenet, 64)] {
        let net = ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem, zero_init_residual: true, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() }.init(&device);
        let h = net.forward(Tensor::zeros([2, 3, size, size], &device));
        assert_eq!(h.dims(), [2, 128]);
    }
    let net = ResNetConfig { arch: Arch::Resnet50, width: 0.125, stem: Stem::Cifar, zero_init_residual: true, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() }.init(&device);
    assert_eq!(net.forward(Tensor::zeros([2, 3, 28, 28], &device)).dims(), [2, 256]);
    assert_eq!(Stem::Auto.resolve(32), Stem::Cifar);
    assert_eq!(Stem::Auto.resolve(96), Stem::Imagenet);
}

#[test]
fn width_multiplier_scales_every_stage() {
    let device = simclr::default_device();
    let w2 = ResNetConfig { arch: Arch::Resnet18, width: 2.0, stem: Stem::Cifar, zero_init_residual: true, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() }.init(&device);
    assert_eq!(w2.out_dim(), 1024);
    // Doubling every width roughly quadruples the weights.
    let ratio = simclr::num_trainable_params(&w2) as f64 / params(Arch::Resnet18) as f64;
    assert!((ratio - 4.0).abs() < 0.05, "ratio {ratio}");
}

#[test]
fn head_returns_h_every_layer_and_z() {
    let device = simclr::default_device();
    let cfg = ModelConfig {
        encoder: ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem: Stem::Cifar, zero_init_residual: true, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() },
        head: HeadConfig { mode: HeadMode::Nonlinear, layers: 3, proj_dim: 32, keep: None },
        probe_classes: 0,
        probe_layer: 0,
    };
    let model = cfg.init(&device);
    let out = model.forward(Tensor::zeros([4, 3, 16, 16], &device));
    let dims: Vec<_> = out.iter().map(|t| t.dims()).collect();
    assert_eq!(dims, vec![[4, 128], [4, 128], [4, 128], [4, 32]]);
    // Head parameters: 2 × (128·128 + BN 2·128) + 128·32 + BN 2·32 on top of the encoder.
    let head = simclr::num_trainable_params(&model) - simclr::num_trainable_params(&model.encoder);
    assert_eq!(head, 2 * (128 * 128 + 256) + 128 * 32 + 64);
    for (mode, n) in [(HeadMode::None, 1), (HeadMode::Linear, 2)] {
        let m = ModelConfig { head: HeadConfig { mode, layers: 2, proj_dim: 32, keep: None }, ..cfg.clone() }.init(&device);
        assert_eq!(m.forward(Tensor::zeros([2, 3, 16, 16], &device)).len(), n);
    }
}

#[test]
fn zero_init_residual_zeroes_exactly_the_last_bn_of_each_block() {
    use burn::module::{ModuleVisitor, Param};
    struct Gammas(Vec<String>, Vec<(String, f32)>);
    impl ModuleVisitor for Gammas {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.0.last().map(String::as_str) == Some("gamma") {
                let v: Vec<f32> = p.val().into_data().convert::<f32>().try_to_vec().unwrap();
                self.1.push((self.0.join("."), v.iter().map(|x| x.abs()).sum()));
            }
        }
    }
    let device = simclr::default_device();
    for zero in [true, false] {
        let net = ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem: Stem::Cifar, zero_init_residual: zero, sk_ratio: 0.0, se_ratio: 0.0, padding: Default::default() }.init(&device);
        let mut g = Gammas(vec![], vec![]);
        net.visit(&mut g);
        let zeroed: Vec<_> = g.1.iter().filter(|(_, s)| *s == 0.0).map(|(n, _)| n.clone()).collect();
        if zero {
            assert_eq!(zeroed.len(), 8, "{zeroed:?}");
            assert!(zeroed.iter().all(|n| n.ends_with("bn2.gamma")));
        } else {
            assert!(zeroed.is_empty());
        }
    }
}

/// SimCLR v2's ResNet-50: selective kernels (ratio 0.0625, as the released `_sk1` models),
/// squeeze-excitation and TensorFlow's max-pool padding.
fn v2(width: f32, se_ratio: f32) -> ResNetConfig {
    ResNetConfig { arch: Arch::Resnet50, width, stem: Stem::Imagenet, zero_init_residual: true, sk_ratio: 0.0625, se_ratio, padding: simclr::resnet::Padding::Tensorflow }
}

#[test]
fn selective_kernels_add_the_official_parameter_count() {
    // SimCLR v2's README lists r50_1x_sk1 at 35 M parameters (the encoder: its colab counts without
    // the heads) against 24 M without selective kernels. Ours, counted by hand: ResNet-50
    // 23,508,032; each bottleneck's 3×3 doubles (+9·p²) with its BN (+2p), the attention adds p·32
    // + BN 64 + 32·2p where 32 > p/16, and the deep stem (27·32 + 9·32·32 + 9·32·64 + BN 256) is
    // 29,600 where the 7×7 was 9,408 + BN 128; the four shortcuts keep their sizes.
    let net = v2(1.0, 0.0).init(&simclr::default_device());
    let encoder = simclr::num_trainable_params(&net);
    let with_head = encoder + 2048 * 1000 + 1000;
    assert_eq!((encoder as f64 / 1e6).round(), 35.0, "{encoder} encoder parameters ({with_head} with the supervised head)");
    let blocks = [(64usize, 3usize), (128, 4), (256, 6), (512, 3)];
    let sk: usize = blocks.iter().map(|&(p, n)| n * (9 * p * p + 2 * p + p * 32.max(p / 16) + 2 * 32.max(p / 16) + 32.max(p / 16) * 2 * p)).sum();
    let stem = 27 * 32 + 9 * 32 * 32 + 9 * 32 * 64 + 2 * (32 + 32 + 64) - (9408 + 128);
    assert_eq!(encoder, 23_508_032 + sk + stem);
}

#[test]
fn v2_encoders_keep_the_official_output_sizes_at_odd_sides() {
    let device = simclr::default_device();
    // 36 px: stem 18, max-pool 9, stages 9, 5, 3, 2 (SAME pooling and odd average pooling).
    for size in [32, 33, 36] {
        let net = v2(0.0625, 0.25).init(&device);
        assert_eq!(net.forward(Tensor::zeros([2, 3, size, size], &device)).dims(), [2, 128]);
    }
    let basic = ResNetConfig { arch: Arch::Resnet18, ..v2(0.25, 0.0) };
    assert!(basic.check().unwrap_err().contains("--sk-ratio 0.0625 with Resnet18"));
    assert!(ResNetConfig { sk_ratio: 1.5, ..v2(0.25, 0.0) }.check().unwrap_err().contains("--sk-ratio 1.5"));
}

/// Every parameter and statistic set from a hash of its position: weights uniform with He's
/// variance, vectors (BN γ and β, biases, running statistics) in [0.9, 1.1], so that ReLUs stay
/// mostly alive and the network is the same whatever else draws random numbers meanwhile.
struct Fixed(u64);

impl burn::module::ModuleMapper for Fixed {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        self.0 += 1;
        let salt = self.0;
        param.map(|t| {
            let (shape, device, grad) = (t.shape(), t.device(), t.is_require_grad());
            let dims = shape.as_slice().to_vec();
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|i| {
                    let u = (simclr::augment::splitmix64(salt << 32 ^ i as u64) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                    if D > 1 { u * (6.0 / fan_in as f32).sqrt() } else { 1.0 + 0.1 * u }
                })
                .collect();
            let fixed = Tensor::<D>::from_data(burn::tensor::TensorData::new(values, dims), &device);
            if grad { fixed.require_grad() } else { fixed }
        })
    }
}

#[test]
fn v2_encoder_input_gradients_equal_finite_differences() {
    use burn::tensor::TensorData;
    let device = simclr::default_device().autodiff();
    // Squeeze-excitation as wide as the planes (at ratio 1/4 the first stage squeezes 4 planes to
    // 1), and weights that do not depend on the other tests' use of the backend's RNG.
    let trained = ResNetConfig { zero_init_residual: false, ..v2(0.0625, 1.0) }.init(&device).map(&mut Fixed(0));
    // BN in inference mode for the comparison: with the batch's statistics over 3 images (the
    // attention's BN sees 3 values a channel) the function is too steep for finite differences.
    struct Inference;
    impl burn::module::ModuleMapper for Inference {
        fn map_flag(&mut self, flag: burn::module::Param<burn::module::Flag>) -> burn::module::Param<burn::module::Flag> {
            flag.with_value(false)
        }
    }
    let net = trained.clone().map(&mut Inference);
    let x0: Vec<f32> = (0..3 * 3 * 36 * 36).map(|i| (i * 7919 % 1009) as f32 / 1009.0).collect();
    let r = Tensor::<2>::from_data(TensorData::new((0..3 * 128).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(), [3, 128]), &device);
    // Σ h·r as a function of the pixels.
    let loss = |net: &simclr::resnet::ResNet, x: &[f32], grad: bool| {
        let mut t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [3, 3, 36, 36]), &device);
        if grad {
            t = t.require_grad();
        }
        ((net.forward(t.clone()) * r.clone()).sum(), t)
    };
    let (value, x) = loss(&net, &x0, true);
    let grads = value.backward();
    let analytic = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    // Directional derivatives along ±1 directions, the gradient's signs on a random half of the
    // pixels: central differences over the whole input, where a coordinate alone would sit on a
    // ReLU's or the max-pool's kink too often.
    let f = |x: &[f32]| loss(&net, x, false).0.into_scalar::<f32>() as f64;
    for seed in 0..3u64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..x0.len())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state & 1
            })
            .zip(&analytic)
            .map(|(keep, g)| if keep == 0 { 0.0 } else { g.signum() })
            .collect();
        let eps = 1e-4f32;
        let step = |sign: f32| x0.iter().zip(&v).map(|(x, d)| x + sign * eps * d).collect::<Vec<f32>>();
        let numeric = (f(&step(1.0)) - f(&step(-1.0))) / (2.0 * eps as f64);
        let exact: f64 = analytic.iter().zip(&v).map(|(g, d)| (g * d) as f64).sum();
        assert!((exact - numeric).abs() <= 0.02 * exact.abs().max(numeric.abs()), "direction {seed}: autodiff {exact} vs finite differences {numeric}");
    }
    // In training mode too, the attention and the gates learn: their weights get gradients.
    let mut zero = Vec::new();
    struct Grads<'a>(&'a burn::tensor::Gradients, &'a mut Vec<usize>, usize);
    impl burn::module::ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            // Parameters only: BN's running statistics are visited too, without gradient.
            let value = param.val();
            let none = value.grad(self.0).is_none_or(|g| g.abs().max().into_scalar::<f32>() == 0.0);
            if value.is_require_grad() && none {
                self.1.push(self.2);
            }
            self.2 += 1;
        }
    }
    let (value, _) = loss(&trained, &x0, false);
    let grads = value.backward();
    trained.visit(&mut Grads(&grads, &mut zero, 0));
    assert!(zero.is_empty(), "parameters without gradient: {zero:?}");
}
