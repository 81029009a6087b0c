//! The training step every command runs (paper §2.1 Algorithm 1's update, official `run.py`'s
//! `train_step`): the [`Objective`]'s loss on this rank's part of the batch, its backward, the
//! gradient summed over the ranks ([`crate::distributed::sum_gradients`]), the optimiser's update at
//! the scheduled learning rate, and the logged values summed over the ranks.
//!
//! The objectives: [`simclr::SimClrObjective`] (NT-Xent over the views gathered from every rank,
//! plus the online linear probe; `pretrain`, `bench step`, `ablate`) and
//! [`supervised::CrossEntropy`] (fine-tuning, `ablate`'s supervised baseline, the SGD linear
//! probe). A new method (distillation's teacher logits as targets, another contrastive loss) is
//! another [`Objective`]; the step stays the one here.

pub mod simclr;
pub mod supervised;

use crate::distributed::Collective;
use crate::optim::Optimizer;
use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// What a training step minimises, and the values it reports.
pub trait Objective<M> {
    /// This rank's part of one step's batch.
    type Batch;

    /// The loss of `model` on `batch` and the values to log.
    fn loss(&self, model: &M, batch: Self::Batch) -> Result<Loss>;
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

/// The values one step logged, summed over the ranks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logged(pub Vec<(&'static str, f32)>);

impl Logged {
    /// The value logged under `name`.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// One training step of `model` on `batch`: forward and loss ([`Objective::loss`]), backward, the
/// gradient summed over `ranks` (the ranks that share the batch: [`crate::distributed::world`] in
/// a data-parallel run, [`crate::distributed::alone`] for work each process does alone),
/// `optim`'s update at learning rate `lr`. Returns the updated model and the logged values summed
/// over `ranks` (one exchange).
pub fn step<M: Module, O: Objective<M>>(model: M, optim: &mut Optimizer, objective: &O, batch: O::Batch, lr: f64, ranks: &dyn Collective) -> Result<(M, Logged)> {
    let Loss { total, logged } = objective.loss(&model, batch)?;
    let grads = crate::distributed::sum_gradients(GradientsParams::from_grads(total.backward(), &model), &model, ranks);
    let model = optim.step(lr, model, grads);
    let mut values: Vec<f32> = logged.iter().map(|(_, v)| v.clone().into_scalar()).collect();
    ranks.sum_f32(&mut values);
    Ok((model, Logged(logged.iter().map(|(name, _)| *name).zip(values).collect())))
}
