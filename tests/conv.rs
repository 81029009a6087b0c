//! The encoder's convolution (`simclr::ops::conv`): its gradients equal Burn's generic ones (relative
//! error < 1e-5; on flex the output and input gradient are Burn's own, bit for bit; on libtorch
//! both gradients are libtorch's), and the GEMM weight gradient equals a central finite difference.

use burn::tensor::module::conv2d;
use burn::tensor::{Distribution, Tensor, TensorData};
use simclr::ops::conv::{self, Geometry};

/// Output of `f` and the gradients of Σ f(x, w)·r with respect to x (empty unless `input_grad`, as
/// for the images entering the stem) and w, on an autodiff device.
fn grads(f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>, x: &TensorData, w: &TensorData, r: &TensorData, input_grad: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let device = simclr::default_device().autodiff();
    let mut x = Tensor::<4>::from_data(x.clone(), &device);
    if input_grad {
        x = x.require_grad();
    }
    let w = Tensor::<4>::from_data(w.clone(), &device).require_grad();
    let y = f(x.clone(), w.clone());
    let out = y.clone().into_data().try_to_vec::<f32>().expect("f32");
    let g = (y * Tensor::<4>::from_data(r.clone(), &device)).sum().backward();
    let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
    (out, x.grad(&g).map(v).unwrap_or_default(), v(w.grad(&g).unwrap()))
}

fn on_flex(device: &burn::tensor::Device) -> bool {
    format!("{device:?}").contains("Flex")
}

fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / scale
}

#[test]
fn weight_gradient_equals_burns_generic_one() {
    let device = simclr::default_device();
    // (batch, cin, side, cout, kernel, stride): CIFAR stem, 3×3 at both strides, the 1×1 shortcut,
    // the ImageNet stem's 7×7/2, odd sides, a batch larger than one GEMM chunk.
    for (batch, cin, side, cout, k, stride) in
        [(3, 3, 9, 5, 3, 1), (2, 4, 8, 6, 3, 2), (3, 5, 7, 4, 1, 2), (2, 3, 11, 4, 7, 2), (2, 6, 5, 3, 3, 1), (40, 2, 12, 3, 3, 1)]
    {
        let pad = k / 2;
        let g = Geometry { batch, cin, h: side, w: side, cout, k, stride, pad };
        let x = Tensor::<4>::random([batch, cin, side, side], Distribution::Normal(0.0, 1.0), &device).into_data();
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.5), &device).into_data();
        let r = Tensor::<4>::random([batch, cout, g.ho(), g.wo()], Distribution::Normal(0.0, 1.0), &device).into_data();
        for input_grad in [true, false] {
            let ours = grads(|x, w| conv::conv2d(x, w, stride, pad), &x, &w, &r, input_grad);
            let burn = grads(|x, w| conv2d(x, w, None, g.options()), &x, &w, &r, input_grad);
            let case = format!("batch {batch} cin {cin} side {side} cout {cout} k {k} stride {stride} input grad {input_grad}");
            assert_eq!(ours.0, burn.0, "forward differs: {case}");
            assert_eq!(ours.1.len(), burn.1.len(), "input gradient present in one only: {case}");
            if on_flex(&device) {
                assert_eq!(ours.1, burn.1, "input gradient differs: {case}");
            } else if input_grad {
                assert!(relative_error(&ours.1, &burn.1) < 1e-5, "input gradient: {case}: {}", relative_error(&ours.1, &burn.1));
            }
            assert!(relative_error(&ours.2, &burn.2) < 1e-5, "weight gradient: {case}: {}", relative_error(&ours.2, &burn.2));
            // The slice function on its own gives the same numbers: bit for bit on flex, where
            // `conv2d` uses it; libtorch computes its own.
            let direct = conv::weight_grad(&x.try_to_vec::<f32>().expect("f32"), &r.try_to_vec::<f32>().expect("f32"), &g);
            if on_flex(&device) {
                assert_eq!(direct, ours.2, "{case}");
            } else {
                assert!(relative_error(&direct, &ours.2) < 1e-5, "{case}");
            }
        }
    }
}

#[test]
fn weight_gradient_matches_finite_differences() {
    // f(w) = Σ conv(x, w)·r is linear in w, so a central difference in f64 is exact up to rounding.
    let (batch, cin, side, cout, k, stride, pad) = (2, 2, 6, 3, 3, 2, 1);
    let g = Geometry { batch, cin, h: side, w: side, cout, k, stride, pad };
    let x: Vec<f32> = (0..batch * cin * side * side).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
    let r: Vec<f32> = (0..batch * cout * g.ho() * g.wo()).map(|i| ((i * 17 % 13) as f32 - 6.0) / 5.0).collect();
    let f = |w: &[f64]| -> f64 {
        let mut total = 0.0;
        for (n, co, oy, ox) in positions(batch, cout, g.ho(), g.wo()) {
            let mut y = 0.0;
            for ci in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = ((oy * stride + ky) as isize - pad as isize, (ox * stride + kx) as isize - pad as isize);
                        if (0..side as isize).contains(&iy) && (0..side as isize).contains(&ix) {
                            y += w[((co * cin + ci) * k + ky) * k + kx] * x[((n * cin + ci) * side + iy as usize) * side + ix as usize] as f64;
                        }
                    }
                }
            }
            total += y * r[((n * cout + co) * g.ho() + oy) * g.wo() + ox] as f64;
        }
        total
    };
    let w0 = vec![0.1f64; cout * cin * k * k];
    let dw = conv::weight_grad(&x, &r, &g);
    for (i, &analytic) in dw.iter().enumerate() {
        let (mut plus, mut minus) = (w0.clone(), w0.clone());
        plus[i] += 1e-3;
        minus[i] -= 1e-3;
        let numeric = (f(&plus) - f(&minus)) / 2e-3;
        assert!((analytic as f64 - numeric).abs() < 1e-4 * numeric.abs().max(1.0), "dW[{i}]: {analytic} vs {numeric}");
    }
}

fn positions(a: usize, b: usize, c: usize, d: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| (0..b).flat_map(move |j| (0..c).flat_map(move |k| (0..d).map(move |l| (i, j, k, l)))))
}
