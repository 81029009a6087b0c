//! LARS, SGD and AdamW updates against hand-computed numbers, including parameters excluded from
//! weight decay and trust scaling (BN parameters, biases).

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use simclr::optim::{Optimizer, OptimizerKind, Rule};

#[derive(Module, Debug)]
struct Tiny {
    linear: Linear,
    bn: BatchNorm,
}

fn t1(v: &[f32]) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &simclr::default_device().autodiff())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// A 2→1 linear layer with weight (3, 4), bias 0.5, and a 1-feature BN with γ = 2, β = −1.
fn tiny() -> Tiny {
    let device = simclr::default_device().autodiff();
    let mut linear = LinearConfig::new(2, 1).init(&device);
    linear.weight = Param::from_tensor(Tensor::from_data(TensorData::new(vec![3.0f32, 4.0], [2, 1]), &device));
    linear.bias = Some(Param::from_tensor(t1(&[0.5])));
    let mut bn = BatchNormConfig::new(1).init(&device);
    bn.gamma = Param::from_tensor(t1(&[2.0]));
    bn.beta = Param::from_tensor(t1(&[-1.0]));
    Tiny { linear, bn }
}

/// Gradients: weight (0.6, 0.8), bias 0.3, γ 0.2, β −0.4.
fn grads(m: &Tiny) -> GradientsParams {
    let inner = simclr::default_device();
    let mut g = GradientsParams::new();
    g.register(m.linear.weight.id, Tensor::<2>::from_data(TensorData::new(vec![0.6f32, 0.8], [2, 1]), &inner));
    g.register(m.linear.bias.as_ref().unwrap().id, Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), &inner));
    g.register(m.bn.gamma.id, Tensor::<1>::from_data(TensorData::new(vec![0.2f32], [1]), &inner));
    g.register(m.bn.beta.id, Tensor::<1>::from_data(TensorData::new(vec![-0.4f32], [1]), &inner));
    g
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

#[test]
fn lars_two_steps_by_hand() {
    let (lr, wd, m) = (2.0, 0.1, 0.9);
    let mut opt = Optimizer::new(Rule::new(OptimizerKind::Lars, m, wd));
    let model = tiny();
    let g = grads(&model);
    let model = opt.step(lr, model, g);
    // Weight: g' = g + 0.1·w = (0.9, 1.2), ‖w‖ = 5, ‖g'‖ = 1.5, trust = 0.001·5/1.5,
    // v = 2·trust·g' = (0.006, 0.008), w = (2.994, 3.992).
    close(&values(model.linear.weight.val()), &[2.994, 3.992]);
    // Bias and BN (excluded): no decay, no trust ratio: w − lr·g.
    close(&values(model.linear.bias.as_ref().unwrap().val()), &[0.5 - 2.0 * 0.3]);
    close(&values(model.bn.gamma.val()), &[2.0 - 2.0 * 0.2]);
    close(&values(model.bn.beta.val()), &[-1.0 + 2.0 * 0.4]);

    // Second step, same gradients: momentum carries the first update.
    let g = grads(&model);
    let model = opt.step(lr, model, g);
    let w = [2.994f64, 3.992];
    let gd = [0.6 + wd * w[0], 0.8 + wd * w[1]];
    let trust = 0.001 * (w[0] * w[0] + w[1] * w[1]).sqrt() / (gd[0] * gd[0] + gd[1] * gd[1]).sqrt();
    let v = [m * 0.006 + lr * trust * gd[0], m * 0.008 + lr * trust * gd[1]];
    close(&values(model.linear.weight.val()), &[w[0] - v[0], w[1] - v[1]]);
    let vb = m * (2.0 * 0.3) + 2.0 * 0.3;
    close(&values(model.linear.bias.as_ref().unwrap().val()), &[0.5 - 2.0 * 0.3 - vb]);
}

#[test]
fn lars_trust_ratio_is_one_for_a_zero_weight() {
    let mut opt = Optimizer::new(Rule::new(OptimizerKind::Lars, 0.9, 0.0));
    let mut model = tiny();
    let device = simclr::default_device().autodiff();
    model.linear.weight = Param::from_tensor(Tensor::zeros([2, 1], &device));
    let g = grads(&model);
    let model = opt.step(0.5, model, g);
    close(&values(model.linear.weight.val()), &[-0.3, -0.4]);
}

#[test]
fn sgd_nesterov_by_hand() {
    let (lr, wd, m) = (0.1, 0.01, 0.9);
    let mut opt = Optimizer::new(Rule::new(OptimizerKind::Sgd, m, wd));
    let model = tiny();
    let g = grads(&model);
    let model = opt.step(lr, model, g);
    // g' = g + wd·w = (0.63, 0.84); b = g'; update = g' + m·b = 1.9·g'.
    close(&values(model.linear.weight.val()), &[3.0 - 0.1 * 1.9 * 0.63, 4.0 - 0.1 * 1.9 * 0.84]);
    // BN γ: no weight decay.
    close(&values(model.bn.gamma.val()), &[2.0 - 0.1 * 1.9 * 0.2]);
}

#[test]
fn adamw_first_step_moves_each_weight_by_lr() {
    let (lr, wd) = (0.01, 0.1);
    let mut opt = Optimizer::new(Rule::new(OptimizerKind::Adamw, 0.9, wd));
    let model = tiny();
    let g = grads(&model);
    let model = opt.step(lr, model, g);
    // Bias-corrected first step: m̂/√v̂ = sign(g) (up to ε); decoupled decay w·(1 − lr·wd).
    let eps = 1e-8;
    let step = |g: f64| lr * g / (g.abs() + eps);
    close(&values(model.linear.weight.val()), &[3.0 * (1.0 - lr * wd) - step(0.6), 4.0 * (1.0 - lr * wd) - step(0.8)]);
    close(&values(model.bn.beta.val()), &[-1.0 - step(-0.4)]);
}

#[test]
fn state_survives_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("optim.safetensors");
    let rule = Rule::new(OptimizerKind::Lars, 0.9, 0.1);
    let mut a = Optimizer::new(rule);
    let model = tiny();
    let g = grads(&model);
    let model = a.step(2.0, model, g);
    a.save(&file).unwrap();
    let mut b = Optimizer::load(rule, &file, &model, &simclr::default_device()).unwrap();
    assert_eq!(b.steps(), 1);
    let (g1, g2) = (grads(&model), grads(&model));
    let next_a = a.step(2.0, model.clone(), g1);
    let next_b = b.step(2.0, model, g2);
    assert_eq!(values(next_a.linear.weight.val()), values(next_b.linear.weight.val()));
    assert_eq!(values(next_a.linear.bias.unwrap().val()), values(next_b.linear.bias.unwrap().val()));
}

/// A convolution, a BN and a linear layer: 4-, 2- and 1-dimensional parameters in both
/// weight-decay groups.
#[derive(Module, Debug)]
struct Net {
    conv: burn::nn::conv::Conv2d,
    bn: BatchNorm,
    linear: Linear,
}

/// Every trainable parameter of `net` (not BN's running statistics) with its values and shape,
/// in the module's order.
fn parameters(net: &Net) -> Vec<(burn::module::ParamId, Vec<f32>, Vec<usize>)> {
    struct All(Vec<String>, Vec<(burn::module::ParamId, Vec<f32>, Vec<usize>)>);
    impl burn::module::ModuleVisitor for All {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.0.last().is_some_and(|name| name.starts_with("running_")) {
                self.1.push((param.id, values(param.val()), param.val().dims().to_vec()));
            }
        }
    }
    let mut all = All(Vec::new(), Vec::new());
    net.visit(&mut all);
    all.1
}

/// Gradients for every trainable parameter of `net` on `device`: values drawn from `seed`; with
/// each gradient's values as a flat tensor sharing its storage.
fn random_grads(net: &Net, seed: u64, device: &burn::tensor::Device) -> (GradientsParams, Vec<Tensor<1>>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut g, mut flat) = (GradientsParams::new(), Vec::new());
    for (id, v, dims) in parameters(net) {
        let data = TensorData::new(v.iter().map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>(), dims.clone());
        match dims.len() {
            1 => register::<1>(&mut g, &mut flat, id, data, device),
            2 => register::<2>(&mut g, &mut flat, id, data, device),
            _ => register::<4>(&mut g, &mut flat, id, data, device),
        }
    }
    (g, flat)
}

/// Registers `data` as the gradient of parameter `id` and keeps a flat view of its storage.
fn register<const D: usize>(g: &mut GradientsParams, flat: &mut Vec<Tensor<1>>, id: burn::module::ParamId, data: TensorData, device: &burn::tensor::Device) {
    let n = data.num_elements();
    let t = Tensor::<D>::from_data(data, device);
    flat.push(t.clone().reshape([n]));
    g.register(id, t);
}

fn net(device: &burn::tensor::Device) -> Net {
    Net {
        conv: burn::nn::conv::Conv2dConfig::new([3, 8], [3, 3]).with_bias(false).init(device),
        bn: BatchNormConfig::new(8).init(device),
        linear: LinearConfig::new(8, 5).init(device),
    }
}

#[test]
fn a_step_changes_no_clone_of_the_model_or_of_the_gradients_it_was_handed() {
    let device = simclr::default_device();
    for kind in [OptimizerKind::Sgd, OptimizerKind::Lars, OptimizerKind::Adamw] {
        let mut opt = Optimizer::new(Rule::new(kind, 0.9, 0.1));
        let model = net(&device.clone().autodiff());
        let before = parameters(&model);
        let kept = model.clone();
        let (g, grads) = random_grads(&model, 1, &device);
        let grad_values: Vec<_> = grads.iter().map(|t| values(t.clone())).collect();
        let stepped = opt.step(0.5, model, g);
        assert_eq!(parameters(&kept), before, "{kind:?}: the step changed a clone of the model it was handed");
        assert_eq!(grads.into_iter().map(values).collect::<Vec<_>>(), grad_values, "{kind:?}: the step changed a gradient someone else holds");
        assert!(parameters(&stepped).iter().zip(&before).all(|(a, b)| a.1 != b.1), "{kind:?}: a parameter did not move");
    }
}

/// On libtorch, SGD and LARS update all parameters in one fused call per weight-decay group
/// (src/ops/optimizer.rs); three steps of it give flex's per-parameter rule's weights.
#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)] // Burn 0.22 marks burn-tch deprecated; it is still our libtorch backend.
fn libtorch_fused_update_follows_the_per_parameter_rule() {
    use burn::tensor::Device;
    let (flex, torch) = (Device::flex(), Device::libtorch());
    for kind in [OptimizerKind::Sgd, OptimizerKind::Lars] {
        let rule = Rule::new(kind, 0.9, 0.01);
        let mut a = net(&flex.clone().autodiff());
        let mut b = a.clone().to_device(&torch.clone().autodiff());
        let (mut opt_a, mut opt_b) = (Optimizer::new(rule), Optimizer::new(rule));
        for step in 0..3 {
            let (ga, gb) = (random_grads(&a, step, &flex).0, random_grads(&b, step, &torch).0);
            a = opt_a.step(0.2, a, ga);
            b = opt_b.step(0.2, b, gb);
        }
        for ((_, x, dims), (_, y, _)) in parameters(&a).iter().zip(parameters(&b)) {
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{kind:?} {dims:?}: flex {x}, libtorch {y}");
            }
        }
    }
}
