//! Sync BN checked against one process under `mpirun -np K` (feature `mpi`; `tests/distributed.rs`
//! runs it): every rank builds the same global batch x (`[4K, 8, 3, 3]`, from a formula) and a
//! fixed weighting w of the output, and takes the one-process training-mode BN (no sync BN, the
//! whole batch on this rank) of `L = Σ w·y` as the reference. Then from its own 4 images
//! it runs sync BN twice — the device's own path (`batch_norm_relu` / `batch_norm`: flex's and
//! libtorch's fused operations, the composed one elsewhere) and the composed one on any backend
//! (`synced_train`, the path of wgpu and vulkan) — and compares the output and input gradient on
//! its rows, γ's and β's gradients summed over the ranks, and the running statistics. Prints the
//! largest differences and exits 1 when one is over 2e-5, or when per-rank BN (the control) comes
//! as close to one process.
//! `mpirun -np 2 target/release/examples/sync_bn_gradient`
use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Tensor, TensorData};
use simclr::device::Compute;
use simclr::distributed::{self, world};
use simclr::ops::batchnorm::{batch_norm, batch_norm_relu, synced_train};

/// Largest difference the check accepts (values and gradients are of order one).
const TOLERANCE: f32 = 2e-5;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 values")
}

/// What one BN step gives: output, input gradient, γ's and β's gradients, running mean and variance.
struct Step {
    y: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    running: Vec<f32>,
}

/// BN (with γ, β of a formula) by `bn` of `x` and the gradients of `Σ w·y`.
fn step(x: Tensor<4>, w: Tensor<4>, bn: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>) -> Step {
    let device = x.device();
    let channels = x.dims()[1];
    let mut norm: BatchNorm = BatchNormConfig::new(channels).init(&device);
    let formula = |offset: f32| Tensor::<1>::from_data(TensorData::new((0..channels).map(|c| offset + 0.1 * c as f32).collect::<Vec<_>>(), [channels]), &device);
    norm.gamma = Param::from_tensor(formula(0.5));
    norm.beta = Param::from_tensor(formula(-0.2));
    let x = x.require_grad();
    let y = bn(&norm, x.clone());
    let grads = (y.clone() * w).sum().backward();
    let running = [values(norm.running_mean.value()), values(norm.running_var.value())].concat();
    Step {
        y: values(y),
        dx: values(x.grad(&grads).expect("x takes part")),
        dgamma: values(norm.gamma.grad(&grads).expect("γ takes part")),
        dbeta: values(norm.beta.grad(&grads).expect("β takes part")),
        running,
    }
}

fn largest_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// `values` summed element-wise over the ranks.
fn summed(mut values: Vec<f32>) -> Vec<f32> {
    world().sum_f32(&mut values);
    values
}

fn main() -> anyhow::Result<()> {
    let _session = distributed::init()?;
    let (ranks, rank) = (world().ranks(), world().rank());
    let (per_rank, channels, side) = (4, 8, 3);
    let (images, plane) = (per_rank * ranks, channels * side * side);
    let device = simclr::default_device().autodiff();
    let global = |f: &dyn Fn(usize) -> f32| -> Vec<f32> { (0..images * plane).map(f).collect() };
    let (x, w) = (global(&|i| ((i * 7919) % 101) as f32 / 25.0 - 1.5 + (i % plane / 9) as f32 * 0.3), global(&|i| ((i * 104_729) % 89) as f32 / 44.0 - 1.0));
    let tensor = |v: &[f32], n: usize| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [n, channels, side, side]), &device);
    let mine = |v: &[f32]| v[rank * per_rank * plane..(rank + 1) * per_rank * plane].to_vec();

    // One process's BN (each rank alone, on the whole batch), and sync BN over the ranks.
    let (alone, synced) = (Compute::default(), Compute::default().with_sync_bn(true, world()));
    let mut worst = 0f32;
    for relu in [false, true] {
        let own = move |c: Compute| move |norm: &BatchNorm, x: Tensor<4>| if relu { batch_norm_relu(norm, x, &c) } else { batch_norm(norm, x, &c) };
        let composed = move |norm: &BatchNorm, x: Tensor<4>| synced_train(norm, x, relu, world());
        let want = step(tensor(&x, images), tensor(&w, images), own(alone));
        for (path, got) in [("own", step(tensor(&mine(&x), per_rank), tensor(&mine(&w), per_rank), own(synced))), ("composed", step(tensor(&mine(&x), per_rank), tensor(&mine(&w), per_rank), composed))] {
            let gaps = [
                largest_gap(&got.y, &mine(&want.y)),
                largest_gap(&got.dx, &mine(&want.dx)),
                largest_gap(&summed(got.dgamma), &want.dgamma),
                largest_gap(&summed(got.dbeta), &want.dbeta),
                largest_gap(&got.running, &want.running),
            ];
            println!("rank {rank} of {ranks}, {path} sync BN (relu {relu}): largest differences from one process: output {:e}, dx {:e}, dγ {:e}, dβ {:e}, running statistics {:e}", gaps[0], gaps[1], gaps[2], gaps[3], gaps[4]);
            worst = gaps.into_iter().fold(worst, f32::max);
        }
    }
    // The control: each rank's part normalised alone is far from the one-process output.
    let per_rank_bn = |norm: &BatchNorm, x: Tensor<4>| batch_norm(norm, x, &alone);
    let own_part = step(tensor(&mine(&x), per_rank), tensor(&mine(&w), per_rank), per_rank_bn);
    let control = largest_gap(&own_part.y, &mine(&step(tensor(&x, images), tensor(&w, images), per_rank_bn).y));
    println!("rank {rank} of {ranks}, per-rank BN: largest output difference from one process {control:e}");
    if worst > TOLERANCE || control < 100.0 * TOLERANCE {
        std::process::exit(1);
    }
    Ok(())
}
