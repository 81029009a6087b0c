//! The encoder's convolution (`simclr::ops::conv`): its output and gradients equal Burn's generic
//! ones (relative error < 1e-5; on flex, shapes the direct channels-last kernels of
//! `simclr::ops::direct` do not take are Burn's own forward and input gradient, bit for bit; on
//! libtorch both gradients are libtorch's), and the GEMM weight gradient and the direct kernels'
//! gradients equal central finite differences.

use burn::tensor::module::conv2d;
use burn::tensor::{Distribution, Tensor, TensorData};
use simclr::ops::conv::{self, Geometry};
use simclr::ops::direct::{self, Activations, Order};

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
fn output_and_gradients_equal_burns_generic_ones() {
    let device = simclr::default_device();
    // (batch, cin, side, cout, kernel, stride): CIFAR stem, 3×3 at both strides, the 1×1 shortcut,
    // the ImageNet stem's 7×7/2, odd sides, a batch larger than one GEMM chunk; then shapes the
    // direct kernels take (output channels in 16-lane vectors): the stem, both strides, 1×1 at
    // both strides, 48 channels (a 32-wide and a 16-wide panel), the 7×7/2 stem, blocks of 12
    // pixels running across images, more pixels than one task.
    for (batch, cin, side, cout, k, stride) in [
        (3, 3, 9, 5, 3, 1),
        (2, 4, 8, 6, 3, 2),
        (3, 5, 7, 4, 1, 2),
        (2, 3, 11, 4, 7, 2),
        (2, 6, 5, 3, 3, 1),
        (40, 2, 12, 3, 3, 1),
        (2, 3, 9, 16, 3, 1),
        (2, 16, 6, 32, 3, 1),
        (3, 32, 7, 16, 3, 2),
        (2, 16, 5, 48, 1, 2),
        (2, 32, 5, 16, 1, 1),
        (2, 3, 11, 16, 7, 2),
        (13, 16, 4, 32, 3, 1),
        (3, 16, 13, 32, 3, 1),
    ] {
        let pad = k / 2;
        let g = Geometry { batch, cin, h: side, w: side, cout, k, stride, pad };
        let x = Tensor::<4>::random([batch, cin, side, side], Distribution::Normal(0.0, 1.0), &device).into_data();
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.5), &device).into_data();
        let r = Tensor::<4>::random([batch, cout, g.ho(), g.wo()], Distribution::Normal(0.0, 1.0), &device).into_data();
        for input_grad in [true, false] {
            let ours = grads(|x, w| conv::conv2d(x, w, stride, pad, &Default::default()), &x, &w, &r, input_grad);
            let burn = grads(|x, w| conv2d(x, w, None, g.options()), &x, &w, &r, input_grad);
            let case = format!("batch {batch} cin {cin} side {side} cout {cout} k {k} stride {stride} input grad {input_grad}");
            assert_eq!(ours.1.len(), burn.1.len(), "input gradient present in one only: {case}");
            // Burn's own forward and input gradient on flex unless the direct kernels take them.
            let direct_forward = on_flex(&device) && direct::takes(&g);
            let direct_input = direct_forward && direct::takes_input_grad(&g);
            if on_flex(&device) && !direct_forward {
                assert_eq!(ours.0, burn.0, "forward differs: {case}");
            } else {
                assert!(relative_error(&ours.0, &burn.0) < 1e-5, "forward: {case}: {}", relative_error(&ours.0, &burn.0));
            }
            if on_flex(&device) && !direct_input {
                assert_eq!(ours.1, burn.1, "input gradient differs: {case}");
            } else if input_grad {
                assert!(relative_error(&ours.1, &burn.1) < 1e-5, "input gradient: {case}: {}", relative_error(&ours.1, &burn.1));
            }
            assert!(relative_error(&ours.2, &burn.2) < 1e-5, "weight gradient: {case}: {}", relative_error(&ours.2, &burn.2));
            // The GEMM weight gradient on its own gives the same numbers: bit for bit on flex
            // where `conv2d` uses it; the direct kernels and libtorch compute their own.
            let gemm = conv::weight_grad(&x.try_to_vec::<f32>().expect("f32"), &r.try_to_vec::<f32>().expect("f32"), &g);
            if on_flex(&device) && !direct_forward {
                assert_eq!(gemm, ours.2, "{case}");
            } else {
                assert!(relative_error(&gemm, &ours.2) < 1e-5, "{case}");
            }
        }
    }
}

/// Under `--memory-format channels-last` on flex, two convolutions in a row (the first reading NCHW
/// images and handing on channels-last activations, the second reading and writing those) give
/// the NCHW run's output and gradients bit for bit: the direct kernels compute the same sums and
/// only the copies change; Burn's own path (shapes the direct kernels do not take) reads the
/// channels-last activations through their strides.
#[test]
fn channels_last_activations_give_the_nchw_numbers_on_flex() {
    use simclr::device::{Compute, MemoryFormat, Precision};
    let device = simclr::default_device();
    if !on_flex(&device) {
        eprintln!("skipped: flex only (tests/precision.rs checks libtorch's channels-last)");
        return;
    }
    let nchw = Compute::on(&device, Precision::F32, MemoryFormat::Nchw).unwrap();
    let last = Compute::on(&device, Precision::F32, MemoryFormat::ChannelsLast).unwrap();
    // (batch, cin, side, c1, c2, the second's kernel, the first's stride): the stem into a
    // stride-1 3×3, a stride-2 3×3 into a 1×1, 48 channels, widths the direct kernels do not take.
    for (batch, cin, side, c1, c2, k2, stride) in [(2, 3, 9, 16, 32, 3, 1), (3, 16, 7, 32, 16, 1, 2), (2, 16, 5, 48, 16, 3, 1), (2, 4, 8, 6, 6, 3, 2)] {
        let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).into_data();
        let (x, w1, w2) = (random([batch, cin, side, side]), random([c1, cin, 3, 3]), random([c2, c1, k2, k2]));
        let ho = (side + 2 - 3) / stride + 1;
        let r = random([batch, c2, ho, ho]);
        let run = |compute: &Compute| {
            let ad = device.clone().autodiff();
            let [x, w1, w2] = [&x, &w1, &w2].map(|d| Tensor::<4>::from_data(d.clone(), &ad).require_grad());
            let y = conv::conv2d(conv::conv2d(x.clone(), w1.clone(), stride, 1, compute), w2.clone(), 1, k2 / 2, compute);
            let g = (y.clone() * Tensor::<4>::from_data(r.clone(), &ad)).sum().backward();
            let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
            [v(y), v(x.grad(&g).unwrap()), v(w1.grad(&g).unwrap()), v(w2.grad(&g).unwrap())]
        };
        let (a, b) = (run(&nchw), run(&last));
        for (what, (a, b)) in ["output", "input gradient", "first weight gradient", "second weight gradient"].iter().zip(a.iter().zip(&b)) {
            assert_eq!(a, b, "{what}: batch {batch} cin {cin} side {side} {c1} then {c2}, stride {stride}");
        }
    }
}

/// f(x, w) = Σ conv(x, w)·r in f64: linear in x and in w, so a central difference is exact up to
/// rounding.
fn objective(x: &[f64], w: &[f64], r: &[f32], g: &Geometry) -> f64 {
    let (side, k) = (g.h, g.k);
    let mut total = 0.0;
    for (n, co, oy, ox) in positions(g.batch, g.cout, g.ho(), g.wo()) {
        let mut y = 0.0;
        for ci in 0..g.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                    if (0..side as isize).contains(&iy) && (0..side as isize).contains(&ix) {
                        y += w[((co * g.cin + ci) * k + ky) * k + kx] * x[((n * g.cin + ci) * side + iy as usize) * side + ix as usize];
                    }
                }
            }
        }
        total += y * r[((n * g.cout + co) * g.ho() + oy) * g.wo() + ox] as f64;
    }
    total
}

/// Central difference of [`objective`] along coordinate `i` of `x` (`along_x`) or of `w`.
fn finite_difference(x: &[f32], w: &[f32], r: &[f32], g: &Geometry, along_x: bool, i: usize) -> f64 {
    let (mut x, mut w): (Vec<f64>, Vec<f64>) = (x.iter().map(|&v| v as f64).collect(), w.iter().map(|&v| v as f64).collect());
    let at = |x: &[f64], w: &[f64]| objective(x, w, r, g);
    let v = if along_x { &mut x } else { &mut w };
    v[i] += 1e-3;
    let v_plus = v.clone();
    v[i] -= 2e-3;
    let (plus, minus) = if along_x { (at(&v_plus, &w), at(&x, &w)) } else { (at(&x, &v_plus), at(&x, &w)) };
    (plus - minus) / 2e-3
}

fn assert_close(analytic: f32, numeric: f64, what: &str) {
    assert!((analytic as f64 - numeric).abs() < 1e-4 * numeric.abs().max(1.0), "{what}: {analytic} vs {numeric}");
}

fn pattern(len: usize, a: usize, b: usize, offset: f32, scale: f32) -> Vec<f32> {
    (0..len).map(|i| ((i * a % b) as f32 - offset) / scale).collect()
}

#[test]
fn weight_gradient_matches_finite_differences() {
    let (batch, cin, side, cout, k, stride, pad) = (2, 2, 6, 3, 3, 2, 1);
    let g = Geometry { batch, cin, h: side, w: side, cout, k, stride, pad };
    let x = pattern(batch * cin * side * side, 37, 23, 11.0, 7.0);
    let r = pattern(batch * cout * g.ho() * g.wo(), 17, 13, 6.0, 5.0);
    let w = vec![0.1f32; cout * cin * k * k];
    let dw = conv::weight_grad(&x, &r, &g);
    for (i, &analytic) in dw.iter().enumerate() {
        assert_close(analytic, finite_difference(&x, &w, &r, &g, false, i), &format!("dW[{i}]"));
    }
}

#[test]
fn direct_kernels_match_finite_differences() {
    if !direct::available() {
        eprintln!("skipped: this CPU has neither AVX-512F nor AVX2 + FMA, the direct kernels do not run");
        return;
    }
    // Every instruction set this CPU runs; 3×3 at stride 1 (both gradients direct) and 2 (weight
    // gradient), the 1×1 shortcut; 48 output channels (a 32-wide panel and a 16-wide one), 20
    // input channels (AVX2's weight blocks of 6 end with 2), 7 × 7 pixels (AVX2's pixel blocks of
    // 6 end with 1, AVX-512's of 12 with 1).
    let cases = [(2, 16, 5, 32, 3, 1), (1, 16, 6, 16, 3, 2), (2, 16, 4, 16, 1, 1), (1, 20, 7, 48, 3, 1)];
    for (isa, (batch, cin, side, cout, k, stride)) in direct::Isa::supported().into_iter().flat_map(|isa| cases.map(|c| (isa, c))) {
        let g = Geometry { batch, cin, h: side, w: side, cout, k, stride, pad: k / 2 };
        let x = pattern(batch * cin * side * side, 37, 23, 11.0, 7.0);
        let w = pattern(cout * cin * k * k, 29, 19, 9.0, 40.0);
        let r = pattern(batch * cout * g.ho() * g.wo(), 17, 13, 6.0, 5.0);
        let case = format!("{isa:?}: batch {batch} cin {cin} side {side} cout {cout} k {k} stride {stride}");
        let (y, reference) = (direct::forward_on(isa, nchw(&x), &w, &g, Order::Nchw), objective(&to_f64(&x), &to_f64(&w), &r, &g));
        let total: f64 = y.iter().zip(&r).map(|(y, r)| *y as f64 * *r as f64).sum();
        assert!((total - reference).abs() < 1e-4 * reference.abs().max(1.0), "forward: {case}: {total} vs {reference}");
        let input = direct::takes_input_grad(&g).then_some(Order::Nchw);
        let (dx, dw) = direct::backward_on(isa, nchw(&x), &w, nchw(&r), &g, input);
        assert_eq!(dx.is_some(), stride == 1 && cin % 16 == 0, "{case}");
        // Every 7th coordinate: the finite difference re-runs the whole f64 convolution.
        for i in (0..dw.len()).step_by(7) {
            assert_close(dw[i], finite_difference(&x, &w, &r, &g, false, i), &format!("dW[{i}]: {case}"));
        }
        for (i, &analytic) in dx.iter().flatten().enumerate().step_by(7) {
            assert_close(analytic, finite_difference(&x, &w, &r, &g, true, i), &format!("dX[{i}]: {case}"));
        }
        // Channels-last activations in and out (each order into each): the same values, moved.
        let (pixels, out_pixels) = (side * side, g.ho() * g.wo());
        let (x_last, r_last) = (to_nhwc(&x, batch, cin, pixels), to_nhwc(&r, batch, cout, out_pixels));
        let last = Activations { values: &x_last, order: Order::Nhwc };
        assert_eq!(direct::forward_on(isa, last, &w, &g, Order::Nchw), y, "NHWC in, NCHW out: {case}");
        assert_eq!(direct::forward_on(isa, nchw(&x), &w, &g, Order::Nhwc), to_nhwc(&y, batch, cout, out_pixels), "NCHW in, NHWC out: {case}");
        let (dx_last, dw_last) = direct::backward_on(isa, last, &w, Activations { values: &r_last, order: Order::Nhwc }, &g, input.map(|_| Order::Nhwc));
        assert_eq!(dw_last, dw, "dW from NHWC: {case}");
        assert_eq!(dx_last, dx.map(|dx| to_nhwc(&dx, batch, cin, pixels)), "dX in NHWC: {case}");
    }
}

fn nchw(values: &[f32]) -> Activations<'_> {
    Activations { values, order: Order::Nchw }
}

/// `[n, c, pixels]` values as `[n, pixels, c]`.
fn to_nhwc(v: &[f32], n: usize, c: usize, pixels: usize) -> Vec<f32> {
    (0..n).flat_map(|i| (0..pixels).flat_map(move |p| (0..c).map(move |ch| v[(i * c + ch) * pixels + p]))).collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

fn positions(a: usize, b: usize, c: usize, d: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| (0..b).flat_map(move |j| (0..c).flat_map(move |k| (0..d).map(move |l| (i, j, k, l)))))
}
