//! Training-mode batch norm (`simclr::ops::batchnorm`), alone and followed by a ReLU: output, gradients
//! with respect to the input, γ and β, and the updated running statistics equal Burn's
//! `BatchNorm::forward` (and `relu`) (relative error
//! < 1e-5: flex's fused kernels and libtorch's sum in other orders than Burn's generic operations),
//! with the images stored NCHW or channels-last.

use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Distribution, Tensor};
use burn::tensor::activation::relu;
use simclr::ops::batchnorm::{batch_norm, batch_norm_relu};
use simclr::ops::order::stored_channels_last;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")
}

fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / scale
}

/// Output, input/γ/β gradients of Σ bn(x)·r, running mean and variance after the call.
fn run<const D: usize>(f: impl Fn(&BatchNorm, Tensor<D>) -> Tensor<D>, x: &Tensor<D>, r: &Tensor<D>) -> [Vec<f32>; 6] {
    let device = simclr::default_device().autodiff();
    let channels = x.dims()[1];
    let mut norm: BatchNorm = BatchNormConfig::new(channels).init(&device);
    // γ and β away from 1 and 0, so that their gradients and their use are both checked.
    norm.gamma = burn::module::Param::from_tensor(Tensor::<1>::random([channels], Distribution::Uniform(0.5, 1.5), &device).require_grad());
    norm.beta = burn::module::Param::from_tensor(Tensor::<1>::random([channels], Distribution::Uniform(-0.5, 0.5), &device).require_grad());
    let x = Tensor::<D>::from_data(x.to_data(), &device).require_grad();
    let y = f(&norm, x.clone());
    let grads = (y.clone() * Tensor::<D>::from_data(r.to_data(), &device)).sum().backward();
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(norm.gamma.val().grad(&grads).unwrap()),
        values(norm.beta.val().grad(&grads).unwrap()),
        values(norm.running_mean.value_sync()),
        values(norm.running_var.value_sync()),
    ]
}

/// Ours against Burn's on values of `shape`, handed to ours as `stored` keeps them.
fn check<const D: usize>(shape: [usize; D], stored: impl Fn(Tensor<D>) -> Tensor<D>) {
    let device = simclr::default_device();
    device.seed(7);
    // A per-channel offset and scale, as real activations have.
    let x = Tensor::<D>::random(shape, Distribution::Normal(0.5, 2.0), &device);
    let r = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    for with_relu in [false, true] {
        device.seed(11);
        let compute = simclr::device::Compute::default();
        let ours = run(|norm, x| if with_relu { batch_norm_relu(norm, stored(x), &compute) } else { batch_norm(norm, stored(x), &compute) }, &x, &r);
        device.seed(11);
        let burn = run(|norm, x| if with_relu { relu(norm.forward(x)) } else { norm.forward(x) }, &x, &r);
        for (what, (a, b)) in ["output", "input gradient", "γ gradient", "β gradient", "running mean", "running variance"].iter().zip(ours.iter().zip(&burn)) {
            assert!(relative_error(a, b) < 1e-5, "{what} of {shape:?}, ReLU {with_relu}: relative error {}", relative_error(a, b));
        }
    }
}

#[test]
fn equals_burns_batch_norm_and_relu_on_images_and_on_head_features() {
    // Planes longer and shorter than the kernels' eight lanes, the head's [batch, features]; the
    // images stored channels-last too (as the convolutions hand them on under `--memory-format
    // channels-last`), more pixels than one task of flex's channels-last passes.
    for stored in [(|x| x) as fn(Tensor<4>) -> Tensor<4>, stored_channels_last] {
        check([6, 4, 5, 3], stored);
        check([3, 5, 7, 9], stored);
        check([5, 16, 9, 7], stored);
    }
    check([16, 8], |x| x);
}
