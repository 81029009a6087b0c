//! Data-parallel pretraining across processes (paper §2.2 "Training with large batch size" and
//! "Global BN"; official `run.py` with TPU replicas): K ranks, started by `mpirun -np K` (or
//! `srun`), each take a K-th of every global batch; the network stays identical on every rank.
//!
//! - **Gathered negatives**: every rank gathers the projections z of all ranks
//!   ([`crate::views::Views::gather`]) and computes its own views' rows of the NT-Xent against all
//!   2B views ([`crate::loss::nt_xent_gathered`]); the gather's backward sums the gradient of the
//!   gathered rows over the ranks, so each rank's z receives the one-process gradient on its rows.
//! - **Gradients** are summed over the ranks before the optimiser step ([`sum_gradients`]): the
//!   paths from the parameters to the loss through each rank's images partition the one-process
//!   graph, so the sum is the one-process gradient on the global batch, and LARS sees the same
//!   numbers on every rank.
//! - **Sync BN** (official `global_bn`): the batch statistics of every BN are summed over the
//!   ranks in the forward pass and the gradient sums `Σdy`, `Σdy·x̂` in the backward pass, inside
//!   the BN operation ([`crate::ops::batchnorm`]).
//!
//! The transport is MPI (feature `mpi`, the `mpi` crate over the system's MPI library) on host
//! buffers; without it, or when the process was not started by an MPI launcher, there is one rank
//! and every collective is the identity.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use std::sync::OnceLock;

/// The collective operations the data-parallel run needs, on host buffers. Every rank calls each
/// one in the same order with buffers of the same length.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn ranks(&self) -> usize;
    /// Replaces `values` by their element-wise sum over the ranks.
    fn sum_f32(&self, values: &mut [f32]);
    /// Replaces `values` by their element-wise sum over the ranks.
    fn sum_f64(&self, values: &mut [f64]);
    /// Replaces `values` by their element-wise maximum over the ranks.
    fn max_f64(&self, values: &mut [f64]);
    /// Every rank's `local` (all of the same length), concatenated in rank order.
    fn gather_f32(&self, local: &[f32]) -> Vec<f32>;
    /// Time spent in these collectives and bytes handed to them since the last call (none alone).
    fn take_traffic(&self) -> Traffic {
        Traffic::default()
    }
}

impl std::fmt::Debug for dyn Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} of {}", self.rank(), self.ranks())
    }
}

/// One process: every collective is the identity.
struct Alone;

impl Collective for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn max_f64(&self, _: &mut [f64]) {}
    fn gather_f32(&self, local: &[f32]) -> Vec<f32> {
        local.to_vec()
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// This process alone, whatever the launcher: for work each rank does by itself.
pub fn alone() -> &'static dyn Collective {
    &Alone
}

/// The ranks of this run: those MPI started ([`init`]), or this process alone.
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(Alone)).as_ref()
}

/// Whether this run has more than one rank.
pub fn is_distributed() -> bool {
    world().ranks() > 1
}

/// Whether this process writes the run's files (metrics, checkpoints, figures) and shows progress.
pub fn is_writer() -> bool {
    world().rank() == 0
}

/// Whether `flag` is set on any rank (so that every rank stops at the same step).
pub fn any(flag: bool) -> bool {
    let mut v = [flag as u8 as f64];
    world().max_f64(&mut v);
    v[0] > 0.0
}

/// Checks that every rank holds the same trained parameters after `step` (they must: every rank
/// applies the same summed gradient to the same initial network); an error naming the step
/// otherwise. BN running statistics are left out: without sync BN each rank's follow its own part
/// of the batch (the checkpoint keeps rank 0's, as the official code keeps replica 0's).
pub fn check_same_parameters<M: Module>(module: &M, step: usize) -> anyhow::Result<()> {
    let world = world();
    if world.ranks() == 1 {
        return Ok(());
    }
    let mut hash = Fingerprint(sha2::Sha256::default());
    crate::visit_trainable(module, &mut hash);
    let digest = sha2::Digest::finalize(hash.0);
    // The first 48 bits as a number every rank compares through a maximum and a minimum.
    let value = digest[..6].iter().fold(0u64, |v, &b| v << 8 | b as u64) as f64;
    let mut extremes = [value, -value];
    world.max_f64(&mut extremes);
    if extremes[0] != -extremes[1] {
        anyhow::bail!("the ranks' parameters differ after step {step}: the ranks did not run the same computation (mixed binaries or settings?); rerun from the last checkpoint with one binary and config");
    }
    Ok(())
}

/// SHA-256 of the values of the parameters it visits, in order.
struct Fingerprint(sha2::Sha256);

impl crate::TrainableVisitor for Fingerprint {
    fn visit<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let bytes: Vec<u8> = crate::floats(param.val()).iter().flat_map(|v| v.to_le_bytes()).collect();
        sha2::Digest::update(&mut self.0, bytes);
    }
}

/// Time this rank spent in collectives and the bytes it handed them ([`Collective::take_traffic`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Seconds inside collective operations: the transfers and the wait for the other ranks.
    pub seconds: f64,
    /// Bytes of this rank's buffers handed to collective operations.
    pub bytes: u64,
}

/// What keeps MPI initialised: MPI is finalised when it drops, at the end of `main`.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// Joins the MPI job this process was started in (by `mpirun`, `srun`, …: told by the launcher's
/// environment variables); a process started otherwise runs alone. Call once, first thing.
pub fn init() -> anyhow::Result<Session> {
    #[cfg(feature = "mpi")]
    if launched_by_mpi() {
        let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
            anyhow::bail!("MPI was initialised twice");
        };
        let world = mpi_world::Mpi::new(universe.world());
        if WORLD.set(Box::new(world)).is_err() {
            anyhow::bail!("the ranks were chosen before MPI started: call simclr::distributed::init first");
        }
        return Ok(Session { _universe: Some(universe) });
    }
    #[cfg(feature = "mpi")]
    return Ok(Session { _universe: None });
    #[cfg(not(feature = "mpi"))]
    {
        if launched_by_mpi() {
            tracing::warn!("started by an MPI launcher, but this build has no MPI (cargo feature `mpi`): every rank trains alone");
        }
        Ok(Session {})
    }
}

/// Whether an MPI launcher (Open MPI's `mpirun`, a PMI/PMIx launcher such as `srun`) started us.
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"].iter().any(|v| std::env::var_os(v).is_some())
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use super::{Collective, Traffic};
    use mpi::collective::SystemOperation;
    use std::sync::atomic::{AtomicU64, Ordering};
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    /// `MPI_COMM_WORLD`, and the time and bytes of its collectives since the last count.
    pub(super) struct Mpi {
        world: SimpleCommunicator,
        rank: usize,
        ranks: usize,
        nanos: AtomicU64,
        bytes: AtomicU64,
    }

    impl Mpi {
        pub(super) fn new(world: SimpleCommunicator) -> Self {
            let (rank, ranks) = (world.rank() as usize, world.size() as usize);
            Mpi { world, rank, ranks, nanos: AtomicU64::new(0), bytes: AtomicU64::new(0) }
        }

        /// Runs the collective `f` over a `bytes`-byte buffer, adding its time and size to the traffic.
        fn counted<T>(&self, bytes: usize, f: impl FnOnce() -> T) -> T {
            let start = std::time::Instant::now();
            let out = f();
            self.nanos.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            out
        }
    }

    // SAFETY: MPI is initialised `Funneled` and the run calls the collectives from the thread that
    // runs the training step (forward and backward alike) only, one at a time.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.ranks
        }
        fn sum_f32(&self, values: &mut [f32]) {
            let local = values.to_vec();
            self.counted(std::mem::size_of_val(values), || self.world.all_reduce_into(&local[..], values, SystemOperation::sum()));
        }
        fn sum_f64(&self, values: &mut [f64]) {
            let local = values.to_vec();
            self.counted(std::mem::size_of_val(values), || self.world.all_reduce_into(&local[..], values, SystemOperation::sum()));
        }
        fn max_f64(&self, values: &mut [f64]) {
            let local = values.to_vec();
            self.counted(std::mem::size_of_val(values), || self.world.all_reduce_into(&local[..], values, SystemOperation::max()));
        }
        fn gather_f32(&self, local: &[f32]) -> Vec<f32> {
            let mut all = vec![0f32; local.len() * self.ranks];
            self.counted(std::mem::size_of_val(local), || self.world.all_gather_into(local, &mut all[..]));
            all
        }
        fn take_traffic(&self) -> Traffic {
            Traffic { seconds: self.nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9, bytes: self.bytes.swap(0, Ordering::Relaxed) }
        }
    }
}

/// `values` each summed over the ranks, in one exchange.
pub fn sums<const N: usize>(mut values: [f32; N]) -> [f32; N] {
    world().sum_f32(&mut values);
    values
}

/// Sums `grads` of `module`'s parameters over the ranks of `world`, in one exchange.
pub fn sum_gradients<M: Module>(mut grads: GradientsParams, module: &M, world: &dyn Collective) -> GradientsParams {
    if world.ranks() == 1 {
        return grads;
    }
    let mut flat = Flatten { grads: &grads, values: Vec::new() };
    module.visit(&mut flat);
    let mut values = flat.values;
    world.sum_f32(&mut values);
    module.visit(&mut Restore { grads: &mut grads, values: &values, at: 0 });
    grads
}

/// Every parameter's gradient, one after another in the module's visiting order (the same on
/// every rank).
struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.values.extend(crate::floats(grad));
        }
    }
}

/// Replaces each gradient by its part of `values`, laid out as [`Flatten`] wrote them.
struct Restore<'a> {
    grads: &'a mut GradientsParams,
    values: &'a [f32],
    at: usize,
}

impl ModuleVisitor for Restore<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let (shape, n) = (grad.shape(), grad.shape().num_elements());
            let values = self.values[self.at..self.at + n].to_vec();
            self.grads.register::<D>(param.id, Tensor::<1>::from_data(TensorData::new(values, [n]), &grad.device()).reshape(shape));
            self.at += n;
        }
    }
}
