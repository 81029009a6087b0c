//! Per-layer convolution timing behind `docs/performance.md`: Burn's flex conv forward, input and
//! weight gradients, and `simclr::ops::conv::weight_grad`, with its maximum relative difference.
//! `cargo run --release --example convprof -- [images, default 128]`
use burn::tensor::{module::conv2d, Distribution, Tensor};
use simclr::ops::conv::{self, Geometry};
use std::time::Instant;

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}
fn v(t: Tensor<4>) -> Vec<f32> { t.into_data().try_to_vec::<f32>().expect("f32") }
fn err(a: &[f32], b: &[f32]) -> f32 {
    let m = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |e, (x, y)| e.max((x - y).abs())) / m
}

fn main() {
    let dev = burn::tensor::Device::default();
    let ad = dev.clone().autodiff();
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(128);
    let mut tot = [0f64; 4];
    for &(cin, cout, side, stride, k) in &[(3usize, 64usize, 28usize, 1usize, 3usize), (64, 64, 28, 1, 3), (64, 64, 28, 1, 3), (64, 128, 28, 2, 3), (64, 128, 28, 2, 1), (128, 128, 14, 1, 3), (128, 256, 14, 2, 3), (256, 256, 7, 1, 3), (256, 512, 7, 2, 3), (512, 512, 4, 1, 3)] {
        let g = Geometry { batch: n, cin, h: side, w: side, cout, k, stride, pad: k / 2 };
        let opts = g.options();
        let x = Tensor::<4>::random([n, cin, side, side], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.1), &dev);
        let gr = Tensor::<4>::random([n, cout, g.ho(), g.wo()], Distribution::Normal(0.0, 1.0), &dev);
        let (xs, gs) = (v(x.clone()), v(gr.clone()));
        let fwd = time(|| { let _ = conv2d(x.clone(), w.clone(), None, opts.clone()).into_data(); });
        let mut wref = vec![];
        let xg = time(|| {
            let xa = Tensor::<4>::from_data(x.to_data(), &ad).require_grad();
            let wa = Tensor::<4>::from_data(w.to_data(), &ad);
            let y = conv2d(xa.clone(), wa, None, opts.clone());
            let gg = (y * Tensor::<4>::from_data(gr.to_data(), &ad)).sum().backward();
            let _ = v(xa.grad(&gg).unwrap());
        }) - fwd;
        let wg = time(|| {
            let xa = Tensor::<4>::from_data(x.to_data(), &ad);
            let wa = Tensor::<4>::from_data(w.to_data(), &ad).require_grad();
            let y = conv2d(xa, wa.clone(), None, opts.clone());
            let gg = (y * Tensor::<4>::from_data(gr.to_data(), &ad)).sum().backward();
            wref = v(wa.grad(&gg).unwrap());
        }) - fwd;
        let mut wo = vec![];
        let wg2 = time(|| wo = conv::weight_grad(&xs, &gs, &g));
        let gf = 2.0 * (n * cout * g.ho() * g.wo() * cin * k * k) as f64 / 1e9;
        println!("{cin:>4}->{cout:<4} {side:>2}px k{k} s{stride} GF/s burn fwd {:>4.0} x {:>4.0} w {:>4.0} | gemm w {:>4.0} | err {:.1e}",
            gf / fwd, gf / xg, gf / wg, gf / wg2, err(&wo, &wref));
        for (t, d) in tot.iter_mut().zip([fwd, xg, wg, wg2]) { *t += d; }
    }
    println!("total s: burn fwd {:.3} x {:.3} w {:.3} | gemm w {:.3}", tot[0], tot[1], tot[2], tot[3]);
}
