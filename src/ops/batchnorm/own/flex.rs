//! Flex: the two-pass forward and backward on slices, in the order the activations are stored
//! (NCHW, or channels-last: [`crate::ops::order`]).

use super::OwnBatchNorm;
use crate::distributed::Collective;
use crate::ops::order::{self, Order};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

/// Pixels of a channels-last pass's task: its per-channel partial sums stay in `f32` over them.
const ROWS: usize = 256;

/// Per channel `c`, `Σ f(c, a, b)` over the pairs of values of `[batch, channels, pixels]`
/// tensors `a` and `b` stored in `order` — two sums at once — accumulated in `f32` over an image
/// plane in eight lanes (NCHW) or over [`ROWS`] pixels (NHWC), then in `f64`.
fn channel_sums(a: &[f32], b: &[f32], order: Order, channels: usize, pixels: usize, f: impl Fn(usize, f32, f32) -> [f32; 2] + Sync) -> Vec<[f64; 2]> {
    let add = |mut s: Vec<[f64; 2]>, t: Vec<[f64; 2]>| {
        s.iter_mut().zip(t).for_each(|(s, t)| (s[0], s[1]) = (s[0] + t[0], s[1] + t[1]));
        s
    };
    match order {
        Order::Nchw => (0..channels)
            .into_par_iter()
            .map(|c| {
                let mut total = [0f64; 2];
                for (a, b) in a.chunks(pixels).skip(c).step_by(channels).zip(b.chunks(pixels).skip(c).step_by(channels)) {
                    let mut lanes = [[0f32; 8]; 2];
                    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
                    for (&a, &b) in a8.remainder().iter().zip(b8.remainder()) {
                        let v = f(c, a, b);
                        (lanes[0][0], lanes[1][0]) = (lanes[0][0] + v[0], lanes[1][0] + v[1]);
                    }
                    for (a, b) in a8.zip(b8) {
                        for i in 0..8 {
                            let v = f(c, a[i], b[i]);
                            (lanes[0][i], lanes[1][i]) = (lanes[0][i] + v[0], lanes[1][i] + v[1]);
                        }
                    }
                    for k in 0..2 {
                        total[k] += lanes[k].iter().map(|&l| l as f64).sum::<f64>();
                    }
                }
                total
            })
            .collect(),
        Order::Nhwc => a
            .par_chunks(ROWS * channels)
            .zip(b.par_chunks(ROWS * channels))
            .map(|(a, b)| {
                // Two sums apart and every slice `channels` long, so the loop over the channels
                // vectorises (`f`'s per-channel slices are cut to `channels` too).
                let (mut first, mut second) = (vec![0f32; channels], vec![0f32; channels]);
                let (first_c, second_c) = (&mut first[..channels], &mut second[..channels]);
                for (a, b) in a.chunks_exact(channels).zip(b.chunks_exact(channels)) {
                    let (a, b) = (&a[..channels], &b[..channels]);
                    for c in 0..channels {
                        let v = f(c, a[c], b[c]);
                        (first_c[c], second_c[c]) = (first_c[c] + v[0], second_c[c] + v[1]);
                    }
                }
                first.iter().zip(&second).map(|(&s, &t)| [s as f64, t as f64]).collect()
            })
            .reduce(|| vec![[0f64; 2]; channels], add),
    }
}

/// `out = f(c, a, b)` value by value of `[batch, channels, pixels]` tensors stored in `order`,
/// `c` each value's channel.
fn channel_map(out: &mut [f32], a: &[f32], b: &[f32], order: Order, channels: usize, pixels: usize, f: impl Fn(usize, f32, f32) -> f32 + Sync) {
    // A task: an image plane of one channel (NCHW), or [`ROWS`] pixels of every channel (NHWC).
    let task = match order {
        Order::Nchw => pixels,
        Order::Nhwc => ROWS * channels,
    }
    .max(1);
    out.par_chunks_mut(task).zip(a.par_chunks(task).zip(b.par_chunks(task))).enumerate().for_each(|(plane, (o, (a, b)))| match order {
        Order::Nchw => o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(plane % channels, a, b)),
        Order::Nhwc => {
            for (o, (a, b)) in o.chunks_exact_mut(channels).zip(a.chunks_exact(channels).zip(b.chunks_exact(channels))) {
                let (o, a, b) = (&mut o[..channels], &a[..channels], &b[..channels]);
                for c in 0..channels {
                    o[c] = f(c, a[c], b[c]);
                }
            }
        }
    });
}

/// Per-channel mean and biased variance of `[batch, channels, pixels]` values stored in `order`;
/// with `world` (sync BN), of every rank's values: the per-channel sums are summed over the ranks.
fn statistics(x: &[f32], order: Order, channels: usize, pixels: usize, world: Option<&dyn Collective>) -> (Vec<f32>, Vec<f32>) {
    let mean = channel_means(x, order, channels, pixels, world, |_, v| v);
    let centre = &mean[..channels];
    let variance = channel_means(x, order, channels, pixels, world, |c, v| (v - centre[c]) * (v - centre[c]));
    (mean, variance)
}

/// Per channel `c`, the mean of `f(c, x)` over its values (every rank's with `world`).
fn channel_means(x: &[f32], order: Order, channels: usize, pixels: usize, world: Option<&dyn Collective>, f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f32> {
    let count = (x.len() / channels * world.map_or(1, |w| w.ranks())) as f64;
    let mut sums: Vec<f64> = channel_sums(x, x, order, channels, pixels, |c, v, _| [f(c, v), 0.0]).iter().map(|s| s[0]).collect();
    if let Some(world) = world {
        world.sum_f64(&mut sums);
    }
    sums.iter().map(|s| (s / count) as f32).collect()
}

fn floats(t: &FlexTensor) -> Vec<f32> {
    t.to_contiguous().as_slice::<f32>().expect("f32 tensor").to_vec()
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Channels and values per image plane of a `[batch, channels, ...]` shape.
fn layout(shape: &Shape) -> (usize, usize) {
    (shape[1], shape.iter().skip(2).product())
}

/// `1/√(σ² + ε)` per channel.
fn inv_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect()
}

/// Each channel's BN as `y = x·scale + shift`, the one form forward and ReLU mask both use.
fn scale_shift(gamma: &[f32], beta: &[f32], inv: &[f32], mean: &[f32]) -> (Vec<f32>, Vec<f32>) {
    (0..gamma.len()).map(|c| (gamma[c] * inv[c], beta[c] - gamma[c] * inv[c] * mean[c])).unzip()
}

/// Output (stored in `x`'s order), mean, biased variance (over every rank's batch with `world`).
fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64, relu: bool, world: Option<&dyn Collective>) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (channels, pixels) = layout(&x.shape());
    let (dense, order) = order::dense(x.clone());
    let xs = order::values(&dense);
    let (mean, variance) = statistics(xs, order, channels, pixels, world);
    let (gamma, beta, inv) = (floats(gamma), floats(beta), inv_std(&variance, epsilon));
    let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean);
    let (scale, shift) = (&scale[..channels], &shift[..channels]);
    let mut out = vec![0f32; xs.len()];
    // With the ReLU, 0 where y ≤ 0 and a NaN kept, as Burn's ReLU (`max` would turn a NaN of a
    // diverged run into 0, and into −∞ without it).
    match relu {
        true => channel_map(&mut out, xs, xs, order, channels, pixels, |c, x, _| if x * scale[c] + shift[c] <= 0.0 { 0.0 } else { x * scale[c] + shift[c] }),
        false => channel_map(&mut out, xs, xs, order, channels, pixels, |c, x, _| x * scale[c] + shift[c]),
    }
    (order::from_values(out, x.shape(), order), tensor(mean, Shape::new([channels])), tensor(variance, Shape::new([channels])))
}

impl OwnBatchNorm for Flex {
    fn batch_norm_train_own(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64, relu: bool, sync: Option<&'static dyn Collective>) -> (FlexTensor, FlexTensor, FlexTensor) {
        forward(&x, &gamma, &beta, epsilon, relu, sync)
    }
}

#[derive(Debug)]
struct FusedBatchNorm;

impl Backward<Flex, 3> for FusedBatchNorm {
    /// Checkpointed input and γ; β (a few floats, for the ReLU's mask), the batch mean and
    /// variance, ε, whether a ReLU follows, the ranks whose statistics they were (sync BN).
    type State = (NodeId, NodeId, FlexTensor, FlexTensor, FlexTensor, f64, bool, Option<&'static dyn Collective>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, beta, mean, variance, epsilon, relu, world) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let gamma: FlexTensor = checkpointer.retrieve_node_output(gamma_state);
        let (shape, (channels, pixels)) = (x.shape(), layout(&x.shape()));
        let (x, order) = order::dense(x);
        let dy = order::in_order(&grad, order);
        let (xs, dys) = (order::values(&x), order::values(&dy));
        let (mean, inv, gamma, beta) = (floats(&mean), inv_std(&floats(&variance), epsilon), floats(&gamma), floats(&beta));
        let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean);
        let (scale, shift, mean, inv) = (&scale[..channels], &shift[..channels], &mean[..channels], &inv[..channels]);
        // The output gradient through the ReLU: zero where the BN output y = x·scale + shift ≤ 0.
        let masked = |c: usize, x: f32, dy: f32| if !relu || x * scale[c] + shift[c] > 0.0 { dy } else { 0.0 };
        // Σ dy and Σ dy·(x − μ) per channel, over this rank's values.
        let sums = channel_sums(xs, dys, order, channels, pixels, |c, x, dy| {
            let dy = masked(c, x, dy);
            [dy, (x - mean[c]) * dy]
        });
        // β's and γ's gradients: Σ dy and Σ dy·x̂ (this rank's part; the ranks' parts are
        // summed with the other parameters' gradients).
        let gradients = |sums: &[[f64; 2]]| -> (Vec<f32>, Vec<f32>) { sums.iter().enumerate().map(|(c, &[total, dot])| (total as f32, (dot * inv[c] as f64) as f32)).unzip() };
        let (dbeta, dgamma) = gradients(&sums);
        if let Some(node) = node_x {
            // dx takes them over every value normalised together: every rank's with sync BN.
            let (all_beta, all_gamma) = match world {
                Some(world) => {
                    let mut flat: Vec<f64> = sums.iter().flatten().copied().collect();
                    world.sum_f64(&mut flat);
                    gradients(&flat.chunks(2).map(|p| [p[0], p[1]]).collect::<Vec<_>>())
                }
                None => (dbeta.clone(), dgamma.clone()),
            };
            let count = (xs.len() / channels * world.map_or(1, |w| w.ranks())) as f32;
            let (mean_dy, mean_dot): (Vec<f32>, Vec<f32>) = (0..channels).map(|c| (all_beta[c] / count, all_gamma[c] / count)).unzip();
            let (mean_dy, mean_dot) = (&mean_dy[..channels], &mean_dot[..channels]);
            let mut dx = vec![0f32; xs.len()];
            channel_map(&mut dx, xs, dys, order, channels, pixels, |c, x, dy| scale[c] * (masked(c, x, dy) - mean_dy[c] - (x - mean[c]) * inv[c] * mean_dot[c]));
            grads.register::<Flex>(node.id, order::from_values(dx, shape, order));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, Shape::new([channels])));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, Shape::new([channels])));
        }
    }
}

impl<C: CheckpointStrategy> OwnBatchNorm for Autodiff<Flex, C> {
    fn batch_norm_train_own(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        world: Option<&'static dyn Collective>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match FusedBatchNorm.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let (x_state, gamma_state) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let beta = beta.into_primitive();
                let (out, mean, variance) = forward(&x.into_primitive(), &gamma.into_primitive(), &beta, epsilon, relu, world);
                let out = prep.finish((x_state, gamma_state, beta, mean.clone(), variance.clone(), epsilon, relu, world), out);
                (out, <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (out, mean, variance) = forward(&x.into_primitive(), &gamma.into_primitive(), &beta.into_primitive(), epsilon, relu, world);
                (prep.finish(out), <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance))
            }
        }
    }
}
