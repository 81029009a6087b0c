//! Flex: the two-pass forward and backward on slices.

use super::OwnBatchNorm;
use crate::distributed::Collective;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

/// Σᵢ f(aᵢ, bᵢ), in eight `f32` lanes (so that it vectorises) summed in `f64`.
fn sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(&a, &b)| f(a, b) as f64).sum();
    for (a, b) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += f(a[i], b[i]);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// The image planes of channel `c` in `[batch, channels, pixels]` values.
fn planes(values: &[f32], c: usize, channels: usize, pixels: usize) -> impl Iterator<Item = &[f32]> {
    values.chunks(pixels).skip(c).step_by(channels)
}

/// Per-channel mean and biased variance of `[batch, channels, pixels]` values; with
/// `world` (sync BN), of every rank's values: the per-channel sums are summed over the ranks.
fn statistics(x: &[f32], channels: usize, pixels: usize, world: Option<&dyn Collective>) -> (Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels * world.map_or(1, |w| w.ranks())) as f64;
    let per_channel = |f: &(dyn Fn(usize) -> f64 + Sync)| {
        let mut sums: Vec<f64> = (0..channels).into_par_iter().map(f).collect();
        if let Some(world) = world {
            world.sum_f64(&mut sums);
        }
        sums
    };
    let mean: Vec<f32> = per_channel(&|c| planes(x, c, channels, pixels).map(|p| sum(p, p, |v, _| v)).sum::<f64>()).iter().map(|s| (s / count) as f32).collect();
    let squares = per_channel(&|c| planes(x, c, channels, pixels).map(|p| sum(p, p, |v, _| (v - mean[c]) * (v - mean[c]))).sum::<f64>());
    (mean, squares.iter().map(|s| (s / count) as f32).collect())
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

/// Channel `c`'s BN as `y = x·scale + shift`, the one form forward and ReLU mask both use.
fn scale_shift(gamma: &[f32], beta: &[f32], inv: &[f32], mean: &[f32], c: usize) -> (f32, f32) {
    (gamma[c] * inv[c], beta[c] - gamma[c] * inv[c] * mean[c])
}

/// Output, mean, biased variance (over every rank's batch with `world`).
fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64, relu: bool, world: Option<&dyn Collective>) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (channels, pixels) = layout(&x.shape());
    let contiguous = x.to_contiguous();
    let xs = contiguous.as_slice::<f32>().expect("f32 input");
    let (mean, variance) = statistics(xs, channels, pixels, world);
    let (gamma, beta, inv) = (floats(gamma), floats(beta), inv_std(&variance, epsilon));
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(pixels).zip(xs.par_chunks(pixels)).enumerate().for_each(|(plane, (o, x))| {
        let c = plane % channels;
        let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean, c);
        // With the ReLU, 0 where y ≤ 0 and a NaN kept, as Burn's ReLU (`max` would turn a NaN of
        // a diverged run into 0, and into −∞ without it).
        match relu {
            true => o.iter_mut().zip(x).for_each(|(o, &x)| *o = if x * scale + shift <= 0.0 { 0.0 } else { x * scale + shift }),
            false => o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * scale + shift),
        }
    });
    (tensor(out, x.shape()), tensor(mean, Shape::new([channels])), tensor(variance, Shape::new([channels])))
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
        let (x, dy) = (x.to_contiguous(), grad.to_contiguous());
        let (xs, dys) = (x.as_slice::<f32>().expect("f32 input"), dy.as_slice::<f32>().expect("f32 gradient"));
        let (mean, inv, gamma, beta) = (floats(&mean), inv_std(&floats(&variance), epsilon), floats(&gamma), floats(&beta));
        // The output gradient through the ReLU: zero where the BN output y = x·scale + shift ≤ 0.
        let masked = |c: usize| {
            let (scale, shift) = scale_shift(&gamma, &beta, &inv, &mean, c);
            move |x: f32, dy: f32| if !relu || x * scale + shift > 0.0 { dy } else { 0.0 }
        };
        // Σ dy and Σ dy·(x − μ) per channel, over this rank's values.
        let sums: Vec<(f64, f64)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mut total, mut dot, mask) = (0f64, 0f64, masked(c));
                for (x, dy) in planes(xs, c, channels, pixels).zip(planes(dys, c, channels, pixels)) {
                    total += sum(x, dy, mask);
                    dot += sum(x, dy, |x, dy| (x - mean[c]) * mask(x, dy));
                }
                (total, dot)
            })
            .collect();
        // β's and γ's gradients: Σ dy and Σ dy·x̂ (this rank's part; the ranks' parts are
        // summed with the other parameters' gradients).
        let gradients = |sums: &[(f64, f64)]| -> (Vec<f32>, Vec<f32>) { sums.iter().enumerate().map(|(c, &(total, dot))| (total as f32, (dot * inv[c] as f64) as f32)).unzip() };
        let (dbeta, dgamma) = gradients(&sums);
        if let Some(node) = node_x {
            // dx takes them over every value normalised together: every rank's with sync BN.
            let (all_beta, all_gamma) = match world {
                Some(world) => {
                    let mut flat: Vec<f64> = sums.iter().flat_map(|&(total, dot)| [total, dot]).collect();
                    world.sum_f64(&mut flat);
                    gradients(&flat.chunks(2).map(|p| (p[0], p[1])).collect::<Vec<_>>())
                }
                None => (dbeta.clone(), dgamma.clone()),
            };
            let count = (xs.len() / channels * world.map_or(1, |w| w.ranks())) as f32;
            let mut dx = vec![0f32; xs.len()];
            dx.par_chunks_mut(pixels).zip(xs.par_chunks(pixels).zip(dys.par_chunks(pixels))).enumerate().for_each(|(plane, (dx, (x, dy)))| {
                let c = plane % channels;
                let (scale, mean_dy, mean_dot, mask) = (gamma[c] * inv[c], all_beta[c] / count, all_gamma[c] / count, masked(c));
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    *dx = scale * (mask(x, dy) - mean_dy - (x - mean[c]) * inv[c] * mean_dot);
                }
            });
            grads.register::<Flex>(node.id, tensor(dx, shape));
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
