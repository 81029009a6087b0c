//! What the checks of exported networks share (tests/export.rs, onnx-tract/tests/tract.rs): a
//! network pretrained for a few steps, the fixture scripts' input, our outputs on it, and the
//! comparison.

use burn::tensor::{Tensor, TensorData};
use simclr::eval::Layer;
use simclr::export::{Format, Holds};
use simclr::resnet::Arch;
use std::path::Path;

/// The fixture scripts' input: `n` images of 3 × size × size, x[i] = 0.5 + 0.5 sin(0.001 i).
pub fn input(n: usize, size: usize) -> Vec<f32> {
    (0..n * 3 * size * size).map(|i| (0.5 + 0.5 * (0.001 * i as f64).sin()) as f32).collect()
}

/// Output `layer` (index into h, head layers…) of the network in `checkpoint` for [`input`]`(n, size)`.
pub fn our_output(checkpoint: &Path, size: usize, n: usize, layer: usize) -> Vec<f32> {
    let device = simclr::default_device();
    let loaded = simclr::eval::load(Some(checkpoint), &simclr::config::Config::default(), size, &device).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(input(n, size), [n, 3, size, size]), &device);
    loaded.model.forward(x).swap_remove(layer).into_data().try_to_vec::<f32>().unwrap()
}

/// A network of shape `arch` pretrained for a few steps on `size` px views (so BN statistics are
/// not the initial ones) into `run`; at 16 px it has the CIFAR stem, over 32 px ImageNet's.
/// With `v2`, SimCLR v2's options: selective kernels (so the deep stem and average-pooling
/// shortcuts), squeeze-excitation and TensorFlow's max-pool padding.
pub fn pretrained(run: &Path, arch: Arch, size: usize, v2: bool) {
    let mut cfg = crate::common::small(run);
    (cfg.optim.max_steps, cfg.model.zero_init_residual, cfg.model.arch, cfg.model.image_size) = (3, false, arch, size);
    if v2 {
        (cfg.model.sk_ratio, cfg.model.se_ratio, cfg.model.padding) = (0.0625, 0.25, simclr::resnet::Padding::Tensorflow);
    }
    simclr::pretrain::pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
}

/// Equal within `tolerance`, relative to values over 1.
pub fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{what}, feature {i}: {g} vs {w}");
    }
}


/// The ONNX exports an ONNX runtime is checked on: ResNet-18 with the CIFAR stem at 16 px (h and
/// z), ResNet-50 with ImageNet's (max-pool) at 40 px (h), and SimCLR v2's ResNet-50 (selective
/// kernels, squeeze-excitation, TensorFlow's padding) at 36 px (h and z: its stages of 9, 5 and 3
/// px pad their average pooling), each pretrained for a few steps.
/// `check` gets each file, its run folder, the image size, the index of the layer among our
/// forward's outputs and a description.
pub fn check_onnx_exports(mut check: impl FnMut(&Path, &Path, usize, usize, &str)) {
    for (arch, size, v2) in [(Arch::Resnet18, 16, false), (Arch::Resnet50, 40, false), (Arch::Resnet50, 36, true)] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        pretrained(&run, arch, size, v2);
        let heads = simclr::checkpoint::read_config(&simclr::checkpoint::resolve(&run).unwrap().dir).unwrap().model.head_layers;
        let layers = if arch == Arch::Resnet18 || v2 { vec![(Layer::H, 0), (Layer::Z, heads)] } else { vec![(Layer::H, 0)] };
        for (layer, index) in layers {
            let file = dir.path().join(format!("{layer}.onnx"));
            let exported = simclr::export::run(&run, Format::Onnx, layer, &file).unwrap();
            let Holds::Onnx { image_size, output, .. } = &exported.holds else { panic!("{exported:?}") };
            assert!(*image_size == size && *output == layer.to_string(), "{exported:?}");
            check(&file, &run, size, index, &format!("{arch:?}{} layer {layer}", if v2 { " v2" } else { "" }));
        }
    }
}
