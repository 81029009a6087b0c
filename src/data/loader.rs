//! The view loader (paper §2.1, Algorithm 1's "for all k draw two augmentation functions"): a
//! background thread draws each step's batch — the epoch's image order, the augmented views of
//! each image (rayon-parallel) — a bounded queue of ready batches ahead of the step, so the step
//! only waits for data when augmentation is slower than the model.
//!
//! The order and every view are pure functions of `(seed, epoch, image index, view)`, so a resumed
//! run sees exactly the batches an unbroken run would.

use super::{BadImages, DataError, Dataset};
use crate::augment::{draw_view, splitmix64, AugmentConfig};
use crate::image::Image;
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Ready batches kept in the queue ahead of the step.
const PREFETCH: usize = 3;

/// The order of the images in `epoch`: a permutation seeded by `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(splitmix64(seed ^ splitmix64(epoch as u64))));
    order
}

/// `views` augmented views of each image `indices[i]`, as a `[views·N, 3, S, S]` buffer (all first
/// views, then all second views, …), augmented in parallel.
/// An unreadable image is replaced by the next readable one under [`BadImages::Skip`]; the
/// returned batch names the images actually used, so labels follow them.
pub fn make_views(
    ds: &dyn Dataset,
    indices: &[usize],
    views: usize,
    aug: &AugmentConfig,
    seed: u64,
    epoch: usize,
    bad: &BadImages,
) -> Result<Batch> {
    let n = indices.len();
    let read: Vec<(usize, Image)> = indices.par_iter().map(|&i| bad.read(ds, i)).collect::<Result<_, DataError>>()?;
    let pixels: Vec<Vec<f32>> = (0..views * n)
        .into_par_iter()
        .map(|v| {
            let (index, img) = &read[v % n];
            draw_view(img, aug, seed, epoch as u64, *index as u64, (v / n) as u64).data
        })
        .collect();
    Ok(Batch { images: read.into_iter().map(|(i, _)| i).collect(), pixels: pixels.concat() })
}

/// One batch from the loader: which images, and their augmented views.
pub struct Batch {
    /// Dataset indices of the batch's images.
    pub images: Vec<usize>,
    /// `[views·N, 3, S, S]` pixels (see [`make_views`]).
    pub pixels: Vec<f32>,
}

/// What a loader serves: `views` augmented views of each image of `pool` (indices into `ds`), `batch`
/// images a step, each epoch in the order [`epoch_order`] gives (the last incomplete batch dropped).
pub struct Loader {
    /// The images.
    pub ds: Arc<dyn Dataset>,
    /// Which of them are visited.
    pub pool: Vec<usize>,
    /// Augmented views of each image (2 for pretraining, 1 for fine-tuning).
    pub views: usize,
    /// The augmentation of each view.
    pub aug: AugmentConfig,
    /// Seed of the data order and of every view.
    pub seed: u64,
    /// Images a step (over all ranks).
    pub batch: usize,
    /// Which part of each batch this process takes.
    pub shard: Shard,
    /// What to do with unreadable images.
    pub bad: BadImages,
}

/// The part of every batch one rank of a data-parallel run takes ([`crate::distributed`]): of a
/// batch of B images, rank r of K takes images `r·B/K .. (r+1)·B/K`. The order and the views
/// depend on the image alone, so the ranks' parts are disjoint and together the whole batch.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub ranks: usize,
}

impl Shard {
    /// The whole batch: one process.
    pub const WHOLE: Shard = Shard { rank: 0, ranks: 1 };

    /// Images of a batch of `batch` this rank takes.
    pub fn part(&self, batch: usize) -> usize {
        batch / self.ranks
    }

    /// This rank's positions within a batch of `batch` images.
    fn positions(&self, batch: usize) -> std::ops::Range<usize> {
        let part = self.part(batch);
        self.rank * part..(self.rank + 1) * part
    }
}

impl Loader {
    /// Steps of an epoch: the whole batches of the pool.
    pub fn steps_per_epoch(&self) -> usize {
        self.pool.len() / self.batch
    }

    /// Starts a producer thread for steps `start..total`; at most [`PREFETCH`] batches wait in the
    /// queue.
    pub fn spawn(self, start: usize, total: usize) -> Receiver<Result<Batch>> {
        let steps_per_epoch = self.steps_per_epoch();
        let Loader { ds, pool, views, aug, seed, batch, shard, bad } = self;
        let (tx, rx) = sync_channel(PREFETCH);
        std::thread::spawn(move || {
            let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
            for step in start..total {
                let epoch = step / steps_per_epoch;
                if order.0 != epoch {
                    order = (epoch, epoch_order(pool.len(), seed, epoch).into_iter().map(|i| pool[i]).collect());
                }
                let at = (step % steps_per_epoch) * batch;
                let part = shard.positions(batch);
                let result = make_views(ds.as_ref(), &order.1[at + part.start..at + part.end], views, &aug, seed, epoch, &bad);
                if tx.send(result).is_err() {
                    return;
                }
            }
        });
        rx
    }
}
