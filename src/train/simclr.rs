//! SimCLR's objective (paper §2.1): the NT-Xent of this rank's views against the views of every
//! rank ([`crate::views`], [`crate::loss::nt_xent_gathered`]), plus the online linear probe's
//! cross-entropy on h where the batch has labels (official `run.py`'s `sup_head`, trained on
//! detached h alongside the contrastive loss).

use super::{Loss, Objective};
use crate::data::loader::Batch;
use crate::data::Dataset;
use crate::distributed::Collective;
use crate::loss::nt_xent_gathered;
use crate::model::SimClr;
use crate::views::Views;
use anyhow::Result;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

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
}

impl Objective<SimClr> for SimClrObjective {
    type Batch = ViewBatch;

    fn loss(&self, model: &SimClr, batch: ViewBatch, ranks: &'static dyn Collective) -> Result<Loss> {
        let hiddens = model.forward(batch.pixels);
        let views = Views::new(hiddens.last().expect("the head returns z").clone()).gather(ranks);
        let out = nt_xent_gathered(&views, self.temperature, self.l2_normalize);
        let mut logged = vec![("loss", out.loss.clone().detach()), ("contrast_acc", out.accuracy), ("contrast_entropy", out.entropy)];
        let probe = model.probe_logits(hiddens[0].clone()).and_then(|logits| probe_loss(logits, &batch.labels, ranks));
        let total = match probe {
            Some((ce, acc)) => {
                logged.push(("probe_acc", acc));
                out.loss + ce
            }
            None => out.loss,
        };
        Ok(Loss { total, logged })
    }
}

/// Cross-entropy of the online probe on both views of the batch's labelled images, and its
/// accuracy; `None` when no image of the global batch has a label (e.g. STL-10's unlabelled part).
/// Both are this rank's part of the global batch's values (sums over its images divided by the
/// labelled images of every rank), so that the ranks' parts add up to them.
fn probe_loss(logits: Tensor<2>, labels: &[Option<usize>], ranks: &dyn Collective) -> Option<(Tensor<1>, Tensor<1>)> {
    let [rows, classes] = logits.dims();
    let mut onehot = vec![0f32; rows * classes];
    let mut labelled = 0usize;
    for r in 0..rows {
        if let Some(label) = labels[r % labels.len()] {
            onehot[r * classes + label] = 1.0;
            labelled += 1;
        }
    }
    let mut labelled = [labelled as f32];
    ranks.sum_f32(&mut labelled);
    let labelled = labelled[0];
    if labelled == 0.0 {
        return None;
    }
    let device = logits.device();
    let y = Tensor::<2>::from_data(TensorData::new(onehot, [rows, classes]), &device);
    let predicted = logits.clone().detach().argmax(1).reshape([rows]).one_hot::<2>(classes).float();
    let acc = (predicted * y.clone()).sum().div_scalar(labelled);
    let ce = (log_softmax(logits, 1) * y).sum().neg().div_scalar(labelled);
    Some((ce, acc))
}
