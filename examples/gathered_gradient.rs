//! The gathered-negatives gradient, checked by hand under `mpirun -np K` (feature `mpi`;
//! `tests/distributed.rs` runs it): every rank builds the same global projections z (`[2B, D]`, B =
//! 4K images, from a formula), computes the one-process NT-Xent and its gradient on all 2B rows,
//! then its part of the distributed loss from its own 2B/K rows (`simclr::views::Views::gather` and
//! `simclr::loss::nt_xent_gathered`, as pretraining does), the parts summed over the ranks. Prints the largest differences of the loss and of this rank's gradient rows
//! from the one-process ones, and exits 1 when one is over 1e-6.
//! `mpirun -np 2 target/release/examples/gathered_gradient`
use burn::tensor::{Tensor, TensorData};
use simclr::distributed;
use simclr::loss::{nt_xent, nt_xent_gathered};
use simclr::views::Views;

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// Loss and gradient of the NT-Xent of `z` (τ 0.5) with respect to `z`'s own rows: of `z` alone,
/// or `gathered` with every rank's rows (the loss summed over the ranks).
fn loss_and_gradient(z: Tensor<2>, gathered: bool) -> (f32, Vec<f32>) {
    let z = z.require_grad();
    let loss = match gathered {
        true => nt_xent_gathered(&Views::new(z.clone()).gather(distributed::world()), 0.5, true).loss,
        false => nt_xent(z.clone(), 0.5).loss,
    };
    let grads = loss.backward();
    let [loss] = if gathered { distributed::sums([loss.into_scalar()]) } else { [loss.into_scalar()] };
    (loss, values(z.grad(&grads).expect("z takes part in the loss")))
}

fn main() -> anyhow::Result<()> {
    let _session = distributed::init()?;
    let world = distributed::world();
    let (ranks, rank) = (world.ranks(), world.rank());
    let (images, dim, per_rank) = (4 * ranks, 16, 4);
    let device = simclr::default_device().autodiff();
    let z: Vec<f32> = (0..2 * images * dim).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
    let (want_loss, want) = loss_and_gradient(Tensor::from_data(TensorData::new(z.clone(), [2 * images, dim]), &device), false);

    // This rank's images' first views, then their second views: rows of the one-process z.
    let mine: Vec<usize> = (0..2).flat_map(|view| (0..per_rank).map(move |i| view * images + rank * per_rank + i)).collect();
    let rows = |all: &[f32]| -> Vec<f32> { mine.iter().flat_map(|&r| all[r * dim..(r + 1) * dim].to_vec()).collect() };
    let (loss, got) = loss_and_gradient(Tensor::from_data(TensorData::new(rows(&z), [2 * per_rank, dim]), &device), true);

    let gradient_gap = got.iter().zip(rows(&want)).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
    let loss_gap = (loss - want_loss).abs();
    println!("rank {rank} of {ranks}: loss {loss} (one process {want_loss}), largest gradient difference {gradient_gap:e}");
    if loss_gap > 1e-6 || gradient_gap > 1e-6 {
        std::process::exit(1);
    }
    Ok(())
}
