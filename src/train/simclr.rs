//! SimCLR's objective (paper §2.1): the NT-Xent of this rank's views against the views of every
//! rank ([`crate::views`], [`crate::loss::nt_xent_gathered`]), plus the online linear probe's
//! cross-entropy on h where the batch has labels (official `run.py`'s `sup_head`, trained on
//! detached h alongside the contrastive loss). The NT-Xent couples the views only through their z,
//! the probe's loss is a sum over views: the objective runs in chunks by gradient caching
//! ([`crate::train::cache`], [`strategy`]).

use super::cache::{Cached, Chunk, GradientCache};
use super::{Loss, Objective, Strategy, Whole};
use crate::data::loader::Batch;
use crate::data::Dataset;
use crate::distributed::Collective;
use crate::loss::nt_xent_gathered;
use crate::model::SimClr;
use crate::views::{ChunkViews, Views};
use anyhow::{bail, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The NT-Xent at `temperature` (on unit-norm z unless `l2_normalize` is off), plus the online
/// probe where the model has one. Logs `loss` (the NT-Xent alone), `contrast_acc`,
/// `contrast_entropy` and, for a batch with labels, `probe_acc`.
#[derive(Clone, Copy, Debug)]
pub struct SimClrObjective {
    /// τ of eq. 1.
    pub temperature: f32,
    /// Whether z is scaled to unit norm (cosine similarity; Table 5's "ℓ2 norm").
    pub l2_normalize: bool,
}

/// This rank's part of a two-view batch: its images' views (`[2n, 3, S, S]`, first views then
/// second views, [`crate::views`]) and each image's label, if it has one.
pub struct ViewBatch {
    /// The views.
    pub pixels: Tensor<4>,
    /// The n images' labels.
    pub labels: Vec<Option<usize>>,
}

impl ViewBatch {
    /// The loader's `batch` of `ds`'s images, views of side `size`, on `device`.
    pub fn new(batch: Batch, ds: &dyn Dataset, size: usize, device: &Device) -> Self {
        let n = batch.images.len();
        let pixels = Tensor::<4>::from_data(TensorData::new(batch.pixels, [2 * n, 3, size, size]), device);
        ViewBatch { pixels, labels: batch.images.iter().map(|&i| ds.label(i)).collect() }
    }

    /// The label of each view (row of [`ViewBatch::pixels`]): its image's.
    fn row_labels(&self) -> Vec<Option<usize>> {
        self.labels.iter().chain(&self.labels).copied().collect()
    }
}

impl Objective<SimClr> for SimClrObjective {
    type Batch = ViewBatch;

    fn loss(&self, model: &SimClr, batch: ViewBatch, ranks: &'static dyn Collective) -> Result<Loss> {
        let labels = batch.row_labels();
        let labelled = labelled_rows(&labels, ranks);
        let hiddens = model.forward(batch.pixels);
        let Loss { total, mut logged } = self.coupled_loss(hiddens.last().expect("the head returns z").clone(), ranks)?;
        match probe_loss(model, &hiddens, &labels, labelled) {
            Some(probe) => {
                logged.extend(probe.logged);
                Ok(Loss { total: total + probe.total, logged })
            }
            None => Ok(Loss { total, logged }),
        }
    }
}

/// A chunk of a [`ViewBatch`] for the gradient cache: some of its views (taken from the batch's
/// pixels when a pass needs them, so that the chunks hold no copy of the batch), each with its
/// image's label, and the labelled views of the global batch (the probe's denominator).
pub struct ViewChunk {
    batch: Tensor<4>,
    rows: Tensor<1, Int>,
    labels: Vec<Option<usize>>,
    labelled: f32,
}

impl ViewChunk {
    /// The chunk's views.
    fn pixels(&self) -> Tensor<4> {
        self.batch.clone().select(0, self.rows.clone())
    }
}

/// In chunks of `images` images (2 · `images` views), the views shared as `views` says.
impl Cached<SimClr> for SimClrObjective {
    type Chunking = Chunking;
    type Chunk = ViewChunk;

    fn chunks(&self, batch: ViewBatch, chunking: &Chunking, ranks: &'static dyn Collective) -> Result<Vec<Chunk<ViewChunk>>> {
        let n = batch.labels.len();
        let Some(chunks) = chunking.views.rows(n, chunking.images) else {
            bail!("--micro-batch {}: must divide this rank's {n} images of the batch (--batch-size over the ranks); use a divisor of {n}", chunking.images);
        };
        let labels = batch.row_labels();
        let labelled = labelled_rows(&labels, ranks);
        let device = batch.pixels.device();
        let chunk = |rows: Vec<usize>| {
            let part = ViewChunk { batch: batch.pixels.clone(), rows: crate::ops::indices(&rows, &device), labels: rows.iter().map(|&r| labels[r]).collect(), labelled };
            Chunk { part, rows }
        };
        Ok(chunks.into_iter().map(chunk).collect())
    }

    fn rehearsal(&self, model: &SimClr) -> SimClr {
        model.rehearsal()
    }

    fn outputs(&self, model: &SimClr, chunk: &ViewChunk) -> Tensor<2> {
        model.forward(chunk.pixels()).pop().expect("the head returns z")
    }

    fn chunk_loss(&self, model: &SimClr, chunk: &ViewChunk) -> (Tensor<2>, Option<Loss>) {
        let hiddens = model.forward(chunk.pixels());
        let z = hiddens.last().expect("the head returns z").clone();
        (z, probe_loss(model, &hiddens, &chunk.labels, chunk.labelled))
    }

    fn coupled_loss(&self, z: Tensor<2>, ranks: &'static dyn Collective) -> Result<Loss> {
        let out = nt_xent_gathered(&Views::new(z).gather(ranks), self.temperature, self.l2_normalize);
        let logged = vec![("loss", out.loss.clone().detach()), ("contrast_acc", out.accuracy), ("contrast_entropy", out.entropy)];
        Ok(Loss { total: out.loss, logged })
    }
}

/// How the gradient cache cuts a rank's two-view batch (`--micro-batch`, `--chunk-views`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// Images a chunk (2 views each).
    pub images: usize,
    /// Which views share a chunk.
    pub views: ChunkViews,
}

/// The step of a SimCLR run: the whole batch at once with `micro_batch` 0, else in chunks of
/// `micro_batch` images by gradient caching, `views` sharing a chunk as it says.
pub fn strategy(objective: SimClrObjective, micro_batch: usize, views: ChunkViews) -> Box<dyn Strategy<SimClr, Batch = ViewBatch>> {
    match micro_batch {
        0 => Box::new(Whole(objective)),
        images => Box::new(GradientCache { objective, chunking: Chunking { images, views } }),
    }
}

/// The labelled rows of the global batch whose rows on this rank have `labels`.
fn labelled_rows(labels: &[Option<usize>], ranks: &dyn Collective) -> f32 {
    let mut labelled = [labels.iter().filter(|l| l.is_some()).count() as f32];
    ranks.sum_f32(&mut labelled);
    labelled[0]
}

/// The online probe's cross-entropy on its layer of `hiddens` (`[rows, ·]` each, each row's label in `labels`) and its
/// accuracy, as this rank's part of the global batch's (sums over its rows divided by the
/// `labelled` rows of the global batch, so that the parts add up to them); `None` without a probe
/// or when no image of the global batch has a label (e.g. STL-10's unlabelled part).
fn probe_loss(model: &SimClr, hiddens: &[Tensor<2>], labels: &[Option<usize>], labelled: f32) -> Option<Loss> {
    let logits = model.probe_logits(hiddens)?;
    if labelled == 0.0 {
        return None;
    }
    let [rows, classes] = logits.dims();
    let y = crate::eval::linear::one_hot_where_labelled(labels.iter().copied(), classes, &logits.device());
    let predicted = logits.clone().detach().argmax(1).reshape([rows]).one_hot::<2>(classes).float();
    let acc = (predicted * y.clone()).sum().div_scalar(labelled);
    let ce = (log_softmax(logits, 1) * y).sum().neg().div_scalar(labelled);
    Some(Loss { total: ce, logged: vec![("probe_acc", acc)] })
}
