//! The end of a residual block (`simclr::ops::residual::add_relu`): `relu(y + shortcut)` and the
//! gradients of both addends equal Burn's own sum and ReLU exactly, whether the op may write over
//! y or not. On libtorch and flex the op's backward hands both addends one tensor; an optimiser
//! that takes one gradient and updates it (Burn updates a tensor in place when it holds its
//! storage alone) must leave the other as it was.

use burn::tensor::activation::relu;
use burn::tensor::{Distribution, Tensor, TensorData};
use simclr::ops::order::stored_channels_last;
use simclr::ops::residual::add_relu;

/// The output of `f(y, s)`, then, from the gradients of Σ f(y, s)·r, y's gradient taken out and
/// `a` added to it, and s's gradient taken out after that.
fn output_and_gradients(f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>, data: &[TensorData; 4]) -> [Vec<f32>; 3] {
    let device = simclr::default_device().autodiff();
    let [y, s, r, a] = data.clone().map(|d| Tensor::<4>::from_data(d, &device));
    let (y, s) = (y.require_grad(), s.require_grad());
    let out = f(y.clone(), s.clone());
    let mut grads = (out.clone() * r).sum().backward();
    let y_grad = y.grad_remove(&mut grads).expect("y's gradient") + a.inner();
    let s_grad = s.grad_remove(&mut grads).expect("the shortcut's gradient");
    let v = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    [v(out), v(y_grad), v(s_grad)]
}

#[test]
fn add_relu_equals_burns_sum_and_relu_with_its_gradients() {
    let device = simclr::default_device();
    let data = [0; 4].map(|_| Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device).into_data());
    let burns = output_and_gradients(|y, s| relu(y + s), &data);
    // y shared (a leaf the caller keeps), and y a fresh tensor the op may write over (flex).
    for fresh in [false, true] {
        let ours = output_and_gradients(|y, s| add_relu(if fresh { y.mul_scalar(1.0) } else { y }, s), &data);
        for (what, (a, b)) in ["output", "y's gradient (+ a)", "the shortcut's gradient"].iter().zip(ours.iter().zip(&burns)) {
            assert_eq!(a, b, "{what}, fresh y {fresh}");
        }
    }
    // Both addends stored channels-last (as the convolutions hand them on under `--memory-format
    // channels-last`): the same numbers.
    let ours = output_and_gradients(|y, s| add_relu(stored_channels_last(y), stored_channels_last(s)), &data);
    for (what, (a, b)) in ["output", "y's gradient (+ a)", "the shortcut's gradient"].iter().zip(ours.iter().zip(&burns)) {
        assert_eq!(a, b, "{what}, channels-last");
    }
    let ours = output_and_gradients(add_relu, &data);
    // The ReLU cut some of the sum and kept the rest.
    let cut = ours[0].iter().filter(|&&v| v == 0.0).count();
    assert!(cut > 10 && cut < 110, "{cut} of 120 outputs cut");
}

/// A NaN (a diverged run) stays a NaN through the block's end and through BN + ReLU, as through
/// Burn's ReLU: the loss must show it rather than train on zeros.
#[test]
fn a_nan_is_kept_by_add_relu_and_by_batch_norm_relu() {
    let device = simclr::default_device().autodiff();
    let mut values = vec![1.0f32; 2 * 3 * 2 * 2];
    values[5] = f32::NAN;
    let x = || Tensor::<4>::from_data(TensorData::new(values.clone(), [2, 3, 2, 2]), &device).require_grad();
    let out = add_relu(x(), x().neg()).into_data().try_to_vec::<f32>().unwrap();
    assert!(out[5].is_nan() && out.iter().enumerate().all(|(i, v)| i == 5 || *v == 0.0), "{out:?}");
    let norm = burn::nn::BatchNormConfig::new(3).init(&device);
    let compute = simclr::device::Compute::default();
    let out = simclr::ops::batchnorm::batch_norm_relu(&norm, x(), &compute).into_data().try_to_vec::<f32>().unwrap();
    // Channel 1 (values 4 to 7) holds the NaN: its statistics and every output are NaN.
    assert!(out[4..8].iter().chain(&out[16..20]).all(|v| v.is_nan()), "{out:?}");
}
