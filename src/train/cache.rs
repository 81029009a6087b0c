//! Gradient caching (Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under
//! Memory Limited Setup", 2021): the gradient of a big batch's contrastive loss with the memory of a
//! chunk of it (`--micro-batch`). A contrastive loss couples the rows of a batch only through their
//! outputs (SimCLR's z, paper §2.1): the loss of every anchor needs the z of every view, but no view
//! needs another's activations. So, for this rank's batch in chunks:
//!
//! 1. every chunk forward without a graph ([`Cached::rehearsal`]), keeping only its rows' outputs;
//! 2. the loss on all of them (gathered over the ranks as in a whole-batch step) and its gradient
//!    with respect to those outputs, `dL/dz`;
//! 3. every chunk forward again with the graph, then the backward of `Σ z · dL/dz` (its slice)
//!    plus the chunk's own loss terms (the online probe); the parameters' gradients add up over
//!    the chunks to the whole batch's.
//!
//! Memory: one chunk's activations, plus the batch's outputs and the loss's `[2n, 2N]` logits.
//! Compute: one more forward than a whole-batch step. What differs from the whole batch is only
//! what depends on the chunk: training-mode BN normalises each chunk with its own statistics (as K
//! ranks without sync BN normalise theirs; [`crate::views::ChunkViews`] says which views share a
//! chunk), and updates its running statistics once a chunk, in the second pass.

use super::{Gradient, Loss, Objective, Strategy};
use crate::distributed::Collective;
use anyhow::Result;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Int, Tensor};

/// An objective whose loss is a loss of its rows' outputs (coupled across the batch) plus terms
/// of each row alone, so that [`GradientCache`] can compute its gradient in chunks.
pub trait Cached<M>: Objective<M> {
    /// How a batch is cut into chunks.
    type Chunking;
    /// A part of a batch.
    type Chunk;

    /// `batch` cut as `chunking` says, each chunk with the positions its rows' outputs take among
    /// the batch's (the order [`Cached::coupled_loss`] reads them in).
    fn chunks(&self, batch: Self::Batch, chunking: &Self::Chunking, ranks: &'static dyn Collective) -> Result<Vec<Chunk<Self::Chunk>>>;

    /// `model` as the first pass runs it: the same function of its input, without gradient and
    /// without changing any state of `model` (BN's running statistics). The same function means
    /// the same random draws too: SimCLR's forward draws none (the views are the loader's, a pure
    /// function of seed, epoch and image; the network has no dropout); an objective whose forward
    /// did would have to replay them here.
    fn rehearsal(&self, model: &M) -> M;

    /// The outputs (`[rows, d]`) of `model` on `chunk`.
    fn outputs(&self, model: &M, chunk: &Self::Chunk) -> Tensor<2>;

    /// The outputs of `model` on `chunk` and the loss terms of the chunk's rows alone (this rank's
    /// share of the global batch's), if the objective has any.
    fn chunk_loss(&self, model: &M, chunk: &Self::Chunk) -> (Tensor<2>, Option<Loss>);

    /// The loss of this rank's batch from the outputs of all its rows (`[rows, d]`, in the
    /// batch's order): this rank's share of the global batch's, gathered over `ranks` as a
    /// whole-batch step does.
    fn coupled_loss(&self, outputs: Tensor<2>, ranks: &'static dyn Collective) -> Result<Loss>;
}

/// A chunk of a batch and where its rows' outputs go among the batch's.
pub struct Chunk<C> {
    /// The chunk.
    pub part: C,
    /// For each of its rows, the position of its output among the batch's.
    pub rows: Vec<usize>,
}

/// The [`Strategy`] of gradient caching: `objective` on chunks cut as `chunking` says.
pub struct GradientCache<O: Cached<M>, M> {
    /// The objective.
    pub objective: O,
    /// How each batch is cut.
    pub chunking: O::Chunking,
}

impl<M: Module, O: Cached<M>> Strategy<M> for GradientCache<O, M> {
    type Batch = O::Batch;

    fn gradients(&self, model: &M, batch: O::Batch, ranks: &'static dyn Collective) -> Result<Gradient> {
        let objective = &self.objective;
        let chunks = objective.chunks(batch, &self.chunking, ranks)?;
        // Pass 1: the outputs of every chunk, without a graph, in the chunks' order.
        let rehearsal = objective.rehearsal(model);
        let outputs = Tensor::cat(chunks.iter().map(|c| objective.outputs(&rehearsal, &c.part).detach()).collect(), 0).require_grad();
        drop(rehearsal);
        // The loss on all of them, in the batch's order, and its gradient on each output.
        let in_batch_order = outputs.clone().select(0, batch_order(&chunks, &outputs.device()));
        let Loss { total, mut logged } = objective.coupled_loss(in_batch_order, ranks)?;
        let cached = Tensor::from_inner(outputs.grad(&total.backward()).expect("the loss depends on every output"));
        // Pass 2: each chunk again with its graph, its outputs' gradient propagated to the weights.
        let mut sum = GradientsAccumulator::<M>::new();
        let mut start = 0;
        for chunk in &chunks {
            let rows = start..start + chunk.rows.len();
            start = rows.end;
            let (outputs, own) = objective.chunk_loss(model, &chunk.part);
            let d = outputs.dims()[1];
            let mut surrogate = (outputs * cached.clone().slice([rows, 0..d])).sum();
            if let Some(own) = own {
                surrogate = surrogate + own.total;
                add_logged(&mut logged, own.logged);
            }
            sum.accumulate(model, GradientsParams::from_grads(surrogate.backward(), model));
        }
        Ok(Gradient { params: sum.grads(), logged })
    }
}

/// For each output in the batch's order, its index among the chunks' outputs concatenated.
fn batch_order<C>(chunks: &[Chunk<C>], device: &burn::tensor::Device) -> Tensor<1, Int> {
    let positions: Vec<usize> = chunks.iter().flat_map(|c| c.rows.iter().copied()).collect();
    let mut index = vec![0; positions.len()];
    for (i, &position) in positions.iter().enumerate() {
        index[position] = i;
    }
    crate::ops::indices(&index, device)
}

/// `more` added to `logged`: values of a name already there summed, new names appended.
fn add_logged(logged: &mut Vec<(&'static str, Tensor<1>)>, more: Vec<(&'static str, Tensor<1>)>) {
    for (name, value) in more {
        match logged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum = sum.clone() + value,
            None => logged.push((name, value)),
        }
    }
}
