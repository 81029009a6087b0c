//! Encoder and head shapes: parameter counts equal torchvision's, output shapes for both stems.

use burn::module::Module;
use burn::tensor::Tensor;
use simclr::head::{HeadConfig, HeadMode};
use simclr::model::ModelConfig;
use simclr::resnet::{Arch, ResNetConfig, Stem};

fn params(arch: Arch) -> usize {
    let net = ResNetConfig { arch, width: 1.0, stem: Stem::Imagenet, zero_init_residual: true }.init(&simclr::default_device());
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
        let net = ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem, zero_init_residual: true }.init(&device);
        let h = net.forward(Tensor::zeros([2, 3, size, size], &device));
        assert_eq!(h.dims(), [2, 128]);
    }
    let net = ResNetConfig { arch: Arch::Resnet50, width: 0.125, stem: Stem::Cifar, zero_init_residual: true }.init(&device);
    assert_eq!(net.forward(Tensor::zeros([2, 3, 28, 28], &device)).dims(), [2, 256]);
    assert_eq!(Stem::Auto.resolve(32), Stem::Cifar);
    assert_eq!(Stem::Auto.resolve(96), Stem::Imagenet);
}

#[test]
fn width_multiplier_scales_every_stage() {
    let device = simclr::default_device();
    let w2 = ResNetConfig { arch: Arch::Resnet18, width: 2.0, stem: Stem::Cifar, zero_init_residual: true }.init(&device);
    assert_eq!(w2.out_dim(), 1024);
    // Doubling every width roughly quadruples the weights.
    let ratio = simclr::num_trainable_params(&w2) as f64 / params(Arch::Resnet18) as f64;
    assert!((ratio - 4.0).abs() < 0.05, "ratio {ratio}");
}

#[test]
fn head_returns_h_every_layer_and_z() {
    let device = simclr::default_device();
    let cfg = ModelConfig {
        encoder: ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem: Stem::Cifar, zero_init_residual: true },
        head: HeadConfig { mode: HeadMode::Nonlinear, layers: 3, proj_dim: 32 },
        probe_classes: 0,
    };
    let model = cfg.init(&device);
    let out = model.forward(Tensor::zeros([4, 3, 16, 16], &device));
    let dims: Vec<_> = out.iter().map(|t| t.dims()).collect();
    assert_eq!(dims, vec![[4, 128], [4, 128], [4, 128], [4, 32]]);
    // Head parameters: 2 × (128·128 + BN 2·128) + 128·32 + BN 2·32 on top of the encoder.
    let head = simclr::num_trainable_params(&model) - simclr::num_trainable_params(&model.encoder);
    assert_eq!(head, 2 * (128 * 128 + 256) + 128 * 32 + 64);
    for (mode, n) in [(HeadMode::None, 1), (HeadMode::Linear, 2)] {
        let m = ModelConfig { head: HeadConfig { mode, layers: 2, proj_dim: 32 }, ..cfg.clone() }.init(&device);
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
        let net = ResNetConfig { arch: Arch::Resnet18, width: 0.25, stem: Stem::Cifar, zero_init_residual: zero }.init(&device);
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
