//! `--precision bf16` ([`simclr::device::Compute`]): on libtorch the encoder's convolution
//! computes in bfloat16 — output (bfloat16) and both gradients within bfloat16's rounding of the
//! f32 ones yet not equal to them (the bfloat16 kernels really ran), and a whole training step runs
//! (bfloat16 activations through BN, ReLU, residual sums and pooling); any other
//! device refuses it with an error naming the fix. `--memory-format channels-last` on libtorch gives
//! the NCHW output and gradients to float rounding, and a whole step runs in it; on flex `auto`
//! is NCHW and `channels-last` accepted. Both are values the network and its kernels are handed,
//! no state of the process: the default computes as before anything was set.

#[cfg(any(feature = "flex", feature = "tch"))]
use {burn::tensor::Device, simclr::device::{Compute, MemoryFormat, Precision}};
#[cfg(feature = "tch")]
use burn::tensor::{Distribution, Tensor, TensorData};

/// Output of the convolution (stride 2, pad 1) and the gradients of Σ conv(x, w)·r with respect to
/// x and w, on `device` with autodiff, computing as `compute` says.
#[cfg(feature = "tch")]
fn conv_and_grads(device: &Device, compute: &Compute, x: &TensorData, w: &TensorData, r: &TensorData) -> [Vec<f32>; 3] {
    let device = device.clone().autodiff();
    let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
    let w = Tensor::<4>::from_data(w.clone(), &device).require_grad();
    let y = simclr::ops::conv::conv2d(x.clone(), w.clone(), 2, 1, compute);
    let g = (y.clone() * Tensor::<4>::from_data(r.clone(), &device)).sum().backward();
    let v = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    [v(y), v(x.grad(&g).unwrap()), v(w.grad(&g).unwrap())]
}

#[cfg(feature = "tch")]
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / scale
}

#[test]
fn bf16_convolutions_are_close_to_f32_on_libtorch_and_refused_elsewhere() {
    #[cfg(feature = "flex")]
    {
        let flex = Device::flex();
        let err = Compute::on(&flex, Precision::Bf16, MemoryFormat::Auto).unwrap_err().to_string();
        assert!(err.contains("--precision bf16") && err.contains("--device tch-cpu"), "{err}");
        assert_eq!(Compute::on(&flex, Precision::F32, MemoryFormat::Auto).unwrap().memory_format, MemoryFormat::Nchw);
        // Flex keeps channels-last activations too (tests/conv.rs, batchnorm.rs, residual.rs).
        assert_eq!(Compute::on(&flex, Precision::F32, MemoryFormat::ChannelsLast).unwrap().memory_format, MemoryFormat::ChannelsLast);
    }
    #[cfg(feature = "tch")]
    {
        #[allow(deprecated)]
        let device = Device::libtorch();
        let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).into_data();
        let (x, w, r) = (random([4, 8, 10, 10]), random([16, 8, 3, 3]), random([4, 16, 5, 5]));
        let f32_auto = Compute::on(&device, Precision::F32, MemoryFormat::Auto).unwrap();
        let exact = conv_and_grads(&device, &f32_auto, &x, &w, &r);
        let bf16 = Compute::on(&device, Precision::Bf16, MemoryFormat::Auto).unwrap();
        let mixed = conv_and_grads(&device, &bf16, &x, &w, &r);
        // As under autocast, the output stays bfloat16 (for the BN, ReLU and sums after it).
        let y = simclr::ops::conv::conv2d(Tensor::<4>::from_data(x.clone(), &device), Tensor::<4>::from_data(w.clone(), &device), 2, 1, &bf16);
        assert_eq!(y.dtype(), burn::tensor::DType::BF16);
        for (what, (a, b)) in ["output", "input gradient", "weight gradient"].iter().zip(mixed.iter().zip(&exact)) {
            // bfloat16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 0.002 per operand).
            let e = relative_error(a, b);
            assert!(e > 0.0 && e < 0.02, "{what}: relative error {e}");
        }
        // A whole SimCLR step (ResNet-18 at width 1/8: BN on channels-last activations, residual
        // sums, pooling, head, loss, LARS) runs in mixed precision.
        let mut cfg = simclr::config::Config {
            model: simclr::config::ModelSettings { width: 0.125, image_size: 16, ..Default::default() },
            optim: simclr::config::OptimSettings { batch_size: 4, ..Default::default() },
            ..Default::default()
        };
        cfg.run.precision = Precision::Bf16;
        let step = simclr::bench::step(&cfg, 1, 1, &device).unwrap();
        assert_eq!(step.precision, Precision::Bf16);
        assert!(step.median_step_s.is_finite());
        cfg.run.precision = Precision::F32;

        // Channels-last f32 (the default, `auto`): the same numbers as NCHW up to the order of the sums.
        assert_eq!(f32_auto.memory_format, MemoryFormat::ChannelsLast);
        assert_eq!(Compute::default().memory_format, MemoryFormat::Auto, "a network computes channels-last on libtorch before any setting");
        let nchw = Compute::on(&device, Precision::F32, MemoryFormat::Nchw).unwrap();
        assert_eq!(nchw.memory_format, MemoryFormat::Nchw);
        let nchw = conv_and_grads(&device, &nchw, &x, &w, &r);
        let nhwc = conv_and_grads(&device, &f32_auto, &x, &w, &r);
        for (what, (a, b)) in ["output", "input gradient", "weight gradient"].iter().zip(nhwc.iter().zip(&nchw)) {
            let e = relative_error(a, b);
            assert!(e < 1e-5, "{what}: relative error {e}");
        }
        let step = simclr::bench::step(&cfg, 1, 1, &device).unwrap();
        assert_eq!(step.memory_format, MemoryFormat::ChannelsLast);
        assert!(step.median_step_s.is_finite());
    }
}
