//! Per-layer convolution timing behind `docs/performance.md`: Burn's flex conv forward and input
//! gradient, `simclr::ops::conv::weight_grad` (GEMM), and the direct channels-last kernels of
//! `simclr::ops::direct` (forward, backward), with their maximum relative difference from Burn.
//! `cargo run --release --example convprof -- [images, default 128] [side, default 32] [nchw|nhwc,
//! the direct kernels' activations, default nchw]`
use burn::tensor::{module::conv2d, Distribution, Tensor};
use simclr::ops::conv::{self, Geometry};
use simclr::ops::direct::{self, Activations, Order};
use std::time::Instant;

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}
fn v(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}
fn err(a: &[f32], b: &[f32]) -> f32 {
    let m = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / m
}

/// `[n, c, pixels]` values as `[n, pixels, c]` (or back, given `[n, pixels, c]` as `c` ↔ `pixels`).
fn swap(v: &[f32], n: usize, c: usize, pixels: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..pixels {
                out[(i * pixels + p) * c + ch] = v[(i * c + ch) * pixels + p];
            }
        }
    }
    out
}

fn main() {
    let dev = burn::tensor::Device::default();
    let ad = dev.clone().autodiff();
    let arg = |i: usize, default: usize| std::env::args().nth(i).map(|s| s.parse().unwrap()).unwrap_or(default);
    let (n, s) = (arg(1, 128), arg(2, 32));
    let order = match std::env::args().nth(3).as_deref() {
        None | Some("nchw") => Order::Nchw,
        Some("nhwc") => Order::Nhwc,
        Some(other) => panic!("the third argument is nchw or nhwc, not {other}"),
    };
    let mut tot = [0f64; 6];
    for &(cin, cout, side, stride, k) in &[(3usize, 64usize, s, 1usize, 3usize), (64, 64, s, 1, 3), (64, 128, s, 2, 3), (64, 128, s, 2, 1), (128, 128, s / 2, 1, 3), (128, 256, s / 2, 2, 3), (256, 256, s / 4, 1, 3), (256, 512, s / 4, 2, 3), (512, 512, s / 8, 1, 3)] {
        let g = Geometry { batch: n, cin, h: side, w: side, cout, k, stride, pad: k / 2 };
        let opts = g.options();
        let x = Tensor::<4>::random([n, cin, side, side], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.1), &dev);
        let gr = Tensor::<4>::random([n, cout, g.ho(), g.wo()], Distribution::Normal(0.0, 1.0), &dev);
        let (xs, ws, gs) = (v(x.clone()), v(w.clone()), v(gr.clone()));
        let mut yref = vec![];
        let fwd = time(|| yref = v(conv2d(x.clone(), w.clone(), None, opts.clone())));
        let (mut xref, mut wref) = (vec![], vec![]);
        let xg = time(|| {
            let xa = Tensor::<4>::from_data(x.to_data(), &ad).require_grad();
            let wa = Tensor::<4>::from_data(w.to_data(), &ad).require_grad();
            let y = conv2d(xa.clone(), wa.clone(), None, opts.clone());
            let gg = (y * Tensor::<4>::from_data(gr.to_data(), &ad)).sum().backward();
            xref = v(xa.grad(&gg).unwrap());
            wref = v(wa.grad(&gg).unwrap());
        }) - fwd;
        let mut wo = vec![];
        let wg2 = time(|| wo = conv::weight_grad(&xs, &gs, &g));
        // The direct kernels' operands in `order`, their results back in NCHW for the differences.
        let ordered = |v: &[f32], c: usize, pixels: usize| if order == Order::Nhwc { swap(v, n, c, pixels) } else { v.to_vec() };
        let back = |v: Vec<f32>, c: usize, pixels: usize| if order == Order::Nhwc { swap(&v, n, pixels, c) } else { v };
        let (xo, go) = (ordered(&xs, cin, side * side), ordered(&gs, cout, g.ho() * g.wo()));
        let (x_in, dy_in) = (Activations { values: &xo, order }, Activations { values: &go, order });
        let mut yd = vec![];
        let dfwd = time(|| yd = direct::forward(x_in, &ws, &g, order));
        let yd = back(yd, cout, g.ho() * g.wo());
        let input = direct::takes_input_grad(&g).then_some(order);
        let mut gd = (None, vec![]);
        let dbwd = time(|| gd = direct::backward(x_in, &ws, dy_in, &g, input));
        let gd = (gd.0.map(|d| back(d, cin, side * side)), gd.1);
        let gf = 2.0 * (n * cout * g.ho() * g.wo() * cin * k * k) as f64 / 1e9;
        println!(
            "{cin:>4}->{cout:<4} {side:>2}px k{k} s{stride} GF/s burn fwd {:>4.0} bwd(x+w) {:>4.0} gemm w {:>4.0} | direct fwd {:>4.0} bwd {:>4.0} ({}) | err y {:.0e} x {:.0e} w {:.0e}",
            gf / fwd,
            2.0 * gf / xg,
            gf / wg2,
            gf / dfwd,
            if input.is_some() { 2.0 } else { 1.0 } * gf / dbwd,
            if input.is_some() { "x+w" } else { "w" },
            err(&yd, &yref),
            gd.0.as_ref().map(|d| err(d, &xref)).unwrap_or(0.0),
            err(&gd.1, &wref)
        );
        for (t, d) in tot.iter_mut().zip([fwd, xg, wg2, dfwd, dbwd]) {
            *t += d;
        }
    }
    println!("total s: burn fwd {:.3} bwd {:.3} gemm w {:.3} | direct fwd {:.3} bwd {:.3}", tot[0], tot[1], tot[2], tot[3], tot[4]);
}
