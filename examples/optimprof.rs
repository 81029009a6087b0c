//! The optimiser's update alone, behind docs/performance.md: `Optimizer::step` with SGD and LARS
//! over parameters of ResNet-18's sizes (11.2 M values in 60 tensors; every one with weight
//! decay), random gradients, the median and fastest of 12 steps each. On libtorch it times the
//! fused update (src/ops/optimizer.rs), elsewhere the per-parameter rule.
//! `BURN_DEVICE=tch cargo run --release --features tch --example optimprof`
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tensor};
use simclr::optim::{Optimizer, OptimizerKind, Rule};
use std::time::Instant;

#[derive(Module, Debug)]
struct Params {
    p: Vec<Param<Tensor<1>>>,
}

/// ResNet-18's parameter sizes (CIFAR stem): convolutions, shortcuts, then BN's γ and β.
fn resnet18_sizes() -> Vec<usize> {
    let mut sizes = vec![1728usize];
    sizes.extend([36864; 4]);
    sizes.extend([73728, 147456, 147456, 147456, 8192, 294912, 589824, 589824, 589824, 32768]);
    sizes.extend([1179648, 2359296, 2359296, 2359296, 131072]);
    for c in [64usize, 128, 256, 512] {
        sizes.extend([c; 10]);
    }
    sizes
}

fn main() {
    let device = simclr::default_device();
    let autodiff = device.clone().autodiff();
    let params = resnet18_sizes().into_iter().map(|n| Param::from_tensor(Tensor::random([n], Distribution::Normal(0.0, 1.0), &autodiff)));
    let mut model = Params { p: params.collect() };
    for kind in [OptimizerKind::Sgd, OptimizerKind::Lars] {
        let mut opt = Optimizer::new(Rule::new(kind, 0.9, 1e-4));
        let mut ms = Vec::new();
        for _ in 0..12 {
            let mut grads = GradientsParams::new();
            for p in &model.p {
                grads.register(p.id, Tensor::<1>::random([p.dims()[0]], Distribution::Normal(0.0, 1.0), &device));
            }
            let start = Instant::now();
            model = opt.step(0.1, model, grads);
            let _ = model.p[0].val().into_data(); // waits for the device
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        println!("{kind:?} on {device:?}: median {:.1} ms, fastest {:.1} ms", ms[ms.len() / 2], ms[0]);
    }
}
