//! Gradient caching (`--micro-batch`, `simclr::train::cache`): with BN's statistics not depending on
//! the batch (every BN in inference mode, its running statistics as constants), the gradient of
//! every parameter from chunks of B/2 and B/4 images equals the whole batch's, with the views split
//! across chunks or paired in them, the online probe included; the first pass leaves BN's running
//! statistics as they are. Runs on the default device (flex; libtorch and wgpu in CI's backend
//! runs). The multi-rank equalities are in tests/distributed.rs, the resume in tests/pretrain.rs.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use simclr::distributed;
use simclr::model::{ModelConfig, SimClr};
use simclr::train::simclr::{strategy, SimClrObjective, ViewBatch};
use simclr::views::ChunkViews;

/// Images of the batch.
const B: usize = 8;
const SIDE: usize = 16;

/// ResNet-18 at width 1/8 with a 2-layer head to 32 dimensions and a 10-class online probe.
fn network(device: &Device) -> SimClr {
    let cfg = simclr::config::Config { model: simclr::config::ModelSettings { width: 0.125, proj_dim: 32, ..Default::default() }, ..Default::default() };
    let ModelConfig { encoder, head, .. } = cfg.model(SIDE);
    ModelConfig { encoder, head, probe_classes: 10, probe_layer: 0 }.init_seeded(3, device)
}

/// Every layer's training behaviour off: BN normalises with its running statistics. Every vector
/// (BN's γ, β and running statistics, biases) moved by 0.5, so that no residual branch starts at
/// zero (the last BN of each block has γ = 0) and every weight has a gradient.
struct InferenceBn;

impl ModuleMapper for InferenceBn {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D > 1 {
            return param;
        }
        param.map(|t| t.add_scalar(0.5).detach().require_grad())
    }

    fn map_flag(&mut self, flag: Param<burn::module::Flag>) -> Param<burn::module::Flag> {
        flag.with_value(false)
    }
}

/// B images' two views of random pixels; labels for all but the last image.
fn batch(device: &Device) -> ViewBatch {
    let values: Vec<f32> = (0..2 * B * 3 * SIDE * SIDE).map(|i| (i * 7919 % 1009) as f32 / 1009.0).collect();
    let pixels = Tensor::<4>::from_data(TensorData::new(values, [2 * B, 3, SIDE, SIDE]), device);
    ViewBatch { pixels, labels: (0..B).map(|i| (i + 1 < B).then_some(i % 10)).collect() }
}

/// Every value `model` holds, its BN's running statistics included (synchronised by `valid`).
fn state(model: &SimClr) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut visitor = Collect(Vec::new());
    model.valid().visit(&mut visitor);
    visitor.0
}

/// Each parameter's gradient, by parameter in visiting order.
fn per_parameter(model: &SimClr, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(g.into_data().try_to_vec::<f32>().unwrap());
            }
        }
    }
    let mut visitor = Collect(grads, Vec::new());
    model.visit(&mut visitor);
    visitor.1
}

fn gradients(model: &SimClr, micro_batch: usize, views: ChunkViews, device: &Device) -> (Vec<Vec<f32>>, f32) {
    let objective = SimClrObjective { temperature: 0.5, l2_normalize: true };
    let got = strategy(objective, micro_batch, views).gradients(model, batch(device), distributed::alone()).unwrap();
    let loss = got.logged.iter().find(|(name, _)| *name == "loss").unwrap().1.clone().into_scalar();
    (per_parameter(model, &got.params), loss)
}

#[test]
fn chunks_of_a_half_and_a_quarter_give_the_whole_batch_gradient_of_every_parameter() {
    let device = simclr::default_device().autodiff();
    let model = network(&device).map(&mut InferenceBn);
    let (want, want_loss) = gradients(&model, 0, ChunkViews::Split, &device);
    // Every weight, BN's γ and β, the head's and the probe's; none of them all zero but the last
    // BN's β, which the head cancels (the official `center=False`).
    assert_eq!(want.len(), model.num_params().min(want.len()));
    assert!(want.len() > 60, "{} gradients", want.len());
    let zero: Vec<(usize, usize)> = want.iter().enumerate().filter(|(_, g)| g.iter().all(|&v| v == 0.0)).map(|(i, g)| (i, g.len())).collect();
    assert!(zero.len() == 1 && zero[0].1 == 32, "parameters without gradient (index, size): {zero:?} of {}", want.len());
    for views in [ChunkViews::Split, ChunkViews::Paired] {
        for micro in [B / 2, B / 4] {
            let (got, loss) = gradients(&model, micro, views, &device);
            assert!((loss - want_loss).abs() < 1e-5, "{views:?} chunks of {micro}: loss {loss} vs {want_loss}");
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
                let gap = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(gap <= 1e-5 * scale, "{views:?} chunks of {micro}: parameter {i} off by {gap} (largest value {scale})");
            }
        }
    }
}

#[test]
fn the_first_pass_leaves_the_running_statistics_and_the_second_counts_each_chunk() {
    let device = simclr::default_device().autodiff();
    let model = network(&device);
    let before = state(&model);
    let _ = model.rehearsal().forward(batch(&device).pixels);
    assert!(state(&model) == before, "the rehearsal forward changed the network's state");
    let _ = model.forward(batch(&device).pixels);
    assert!(state(&model) != before, "a training forward moves the running statistics");
}

#[test]
fn a_micro_batch_that_does_not_divide_the_batch_is_refused() {
    let device = simclr::default_device().autodiff();
    let model = network(&device);
    let objective = SimClrObjective { temperature: 0.5, l2_normalize: true };
    let err = strategy(objective, 3, ChunkViews::Split).gradients(&model, batch(&device), distributed::alone()).err().unwrap();
    assert!(err.to_string().contains("--micro-batch 3: must divide"), "{err}");
}
