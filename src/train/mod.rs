//! The training loop every command runs ([`run`]) and its step ([`step`]; paper §2.1 Algorithm 1's
//! update, official `run.py`'s `train_step`): the gradient of the [`Objective`]'s loss on this
//! rank's part of the batch, summed over the ranks ([`crate::distributed::sum_gradients`]), the
//! optimiser's update at the scheduled learning rate, and the logged values summed over the ranks.
//! What a command does between steps — metrics, checkpoints, per-epoch monitors, progress,
//! stopping on request — is its [`StepHook`].
//!
//! How the step gets the gradient is its [`Strategy`]: the whole batch in one forward and backward
//! ([`Whole`]), or in chunks with the whole batch's gradient by gradient caching
//! ([`cache::GradientCache`], `--micro-batch`).
//!
//! The objectives: [`simclr::SimClrObjective`] (NT-Xent over the views gathered from every rank,
//! plus the online linear probe; `pretrain`, `bench step`, `ablate`) and
//! [`supervised::CrossEntropy`] (fine-tuning, `ablate`'s supervised baseline, the SGD linear
//! probe) and [`distill::Distillation`] (SimCLR v2's third stage: a teacher's probabilities as
//! targets). A new method (another contrastive loss) is another [`Objective`]; the step stays the
//! one here.

pub mod cache;
pub mod distill;
pub mod simclr;
pub mod supervised;

use crate::distributed::Collective;
use crate::optim::Optimizer;
use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use std::ops::Range;
use std::time::Instant;

/// What a training step minimises, and the values it reports.
pub trait Objective<M> {
    /// This rank's part of one step's batch.
    type Batch;

    /// The loss of `model` on `batch`, this rank's part of a global batch shared by `ranks`, and
    /// the values to log.
    fn loss(&self, model: &M, batch: Self::Batch, ranks: &'static dyn Collective) -> Result<Loss>;
}

/// An objective's result on one batch.
pub struct Loss {
    /// What the step minimises: this rank's share of the global batch's loss (the ranks' shares add
    /// up to it), differentiable.
    pub total: Tensor<1>,
    /// Named values to log, each this rank's share of the global value (the step sums them over
    /// the ranks), detached.
    pub logged: Vec<(&'static str, Tensor<1>)>,
}

/// How a step gets the gradient of its objective's loss on a batch.
pub trait Strategy<M> {
    /// This rank's part of one step's batch.
    type Batch;

    /// The gradient, with respect to `model`'s parameters, of the loss of `model` on `batch` (this
    /// rank's part of a global batch shared by `ranks`): this rank's part, before the sum over the
    /// ranks. With it the values to log, this rank's shares, detached.
    fn gradients(&self, model: &M, batch: Self::Batch, ranks: &'static dyn Collective) -> Result<Gradient>;
}

/// What a [`Strategy`] computes for one batch.
pub struct Gradient {
    /// This rank's gradient of the loss.
    pub params: GradientsParams,
    /// Named values to log, each this rank's share of the global value, detached.
    pub logged: Vec<(&'static str, Tensor<1>)>,
}

/// The objective's loss on the whole batch in one forward and its backward.
#[derive(Clone, Copy, Debug, Default)]
pub struct Whole<O>(pub O);

impl<M: Module, O: Objective<M>> Strategy<M> for Whole<O> {
    type Batch = O::Batch;

    fn gradients(&self, model: &M, batch: O::Batch, ranks: &'static dyn Collective) -> Result<Gradient> {
        let Loss { total, logged } = self.0.loss(model, batch, ranks)?;
        Ok(Gradient { params: GradientsParams::from_grads(total.backward(), model), logged })
    }
}

/// The values one step logged, summed over the ranks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logged(pub Vec<(&'static str, f32)>);

impl Logged {
    /// The value logged under `name`.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// One training step of `model` on `batch`: the gradient of the loss as `strategy` computes it
/// ([`Strategy::gradients`]), summed over `ranks` (the ranks that share the batch:
/// [`crate::distributed::world`] in a data-parallel run, [`crate::distributed::alone`] for work
/// each process does alone), `optim`'s update at learning rate `lr`. Returns the updated model and
/// the logged values summed over `ranks` (one exchange).
pub fn step<M: Module, S: Strategy<M> + ?Sized>(model: M, optim: &mut Optimizer, strategy: &S, batch: S::Batch, lr: f64, ranks: &'static dyn Collective) -> Result<(M, Logged)> {
    let Gradient { params, logged } = strategy.gradients(&model, batch, ranks)?;
    let grads = crate::distributed::sum_gradients(params, &model, ranks);
    let model = optim.step(lr, model, grads);
    let mut values: Vec<f32> = logged.iter().map(|(_, v)| v.clone().into_scalar()).collect();
    ranks.sum_f32(&mut values);
    Ok((model, Logged(logged.iter().map(|(name, _)| *name).zip(values).collect())))
}

/// What a command does after each step of [`run`].
pub trait StepHook<M> {
    /// Called after each step with what it did; [`Flow::Stop`] ends the run there.
    fn after_step(&mut self, end: StepEnd<'_, M>) -> Result<Flow>;
}

/// Whether [`run`] goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// On to the next step.
    Continue,
    /// End the run after this step.
    Stop,
}

/// No hook: every step runs.
impl<M> StepHook<M> for () {
    fn after_step(&mut self, _: StepEnd<'_, M>) -> Result<Flow> {
        Ok(Flow::Continue)
    }
}

/// What one step of [`run`] did.
pub struct StepEnd<'a, M> {
    /// Steps done, this one included.
    pub done: usize,
    /// The learning rate of this step.
    pub lr: f64,
    /// The values the objective logged, summed over the ranks.
    pub logged: &'a Logged,
    /// The model after the update.
    pub model: &'a M,
    /// The optimiser after the update.
    pub optim: &'a Optimizer,
    /// Seconds spent waiting for the batch.
    pub wait_s: f64,
    /// Seconds of the step itself (forward, backward, update), the wait excluded.
    pub step_s: f64,
}

/// The steps `steps` (0-based step numbers; a resumed run starts past 0) of `model`: each takes
/// its batch from `next_batch(step)`, runs [`step`] with `strategy` at learning rate `lr(step)`
/// over `ranks`, and hands what it did to `hook`, which may stop the run. Returns the trained model.
#[allow(clippy::too_many_arguments)]
pub fn run<M: Module, S: Strategy<M> + ?Sized>(
    mut model: M,
    optim: &mut Optimizer,
    strategy: &S,
    lr: impl Fn(usize) -> f64,
    steps: Range<usize>,
    ranks: &'static dyn Collective,
    mut next_batch: impl FnMut(usize) -> Result<S::Batch>,
    hook: &mut dyn StepHook<M>,
) -> Result<M> {
    for number in steps {
        let start = Instant::now();
        let batch = next_batch(number)?;
        let wait_s = start.elapsed().as_secs_f64();
        let lr = lr(number);
        let logged;
        (model, logged) = step(model, optim, strategy, batch, lr, ranks)?;
        let step_s = start.elapsed().as_secs_f64() - wait_s;
        let end = StepEnd { done: number + 1, lr, logged: &logged, model: &model, optim, wait_s, step_s };
        if hook.after_step(end)? == Flow::Stop {
            break;
        }
    }
    Ok(model)
}
