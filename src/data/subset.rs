//! Datasets made of other datasets: a [`Subset`] of one (label fractions, file lists, `--limit`),
//! the [`Concat`]enation of several, and a [`class_balanced`] sample of labels.

use super::{DataError, Dataset};
use crate::image::Image;
use std::path::PathBuf;
use std::sync::Arc;

/// The images `indices` of another dataset, in that order (label subsets, file lists).
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

/// The first `limit` images of `ds` (`--limit`; 0, or a limit past its end, keeps them all).
pub fn first(ds: Arc<dyn Dataset>, limit: usize) -> Arc<dyn Dataset> {
    if limit == 0 || limit >= ds.len() {
        return ds;
    }
    Arc::new(Subset::new(ds, (0..limit).collect()))
}

impl Subset {
    /// A view of `inner` restricted to `indices` (each must be below `inner.len()`).
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Self {
        assert!(indices.iter().all(|&i| i < inner.len()), "subset index out of range");
        Self { inner, indices }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn image(&self, index: usize) -> Result<Image, DataError> {
        self.inner.image(self.indices[index])
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.inner.label(self.indices[index])
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_name(&self, label: usize) -> Option<String> {
        self.inner.class_name(label)
    }
    fn file(&self, index: usize) -> Option<PathBuf> {
        self.inner.file(*self.indices.get(index)?)
    }
}

/// Several datasets one after the other (STL-10's unlabelled + train images for pretraining).
pub struct Concat {
    parts: Vec<Arc<dyn Dataset>>,
}

impl Concat {
    /// Joins `parts` in order.
    pub fn new(parts: Vec<Arc<dyn Dataset>>) -> Self {
        Self { parts }
    }

    fn locate(&self, mut index: usize) -> Option<(&dyn Dataset, usize)> {
        for p in &self.parts {
            if index < p.len() {
                return Some((p.as_ref(), index));
            }
            index -= p.len();
        }
        None
    }
}

impl Dataset for Concat {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    fn image(&self, index: usize) -> Result<Image, DataError> {
        let (d, i) = self
            .locate(index)
            .ok_or_else(|| DataError::Invalid(format!("image index {index} out of range (dataset has {})", self.len())))?;
        d.image(i)
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.locate(index).and_then(|(d, i)| d.label(i))
    }
    fn num_classes(&self) -> usize {
        self.parts.iter().map(|p| p.num_classes()).max().unwrap_or(0)
    }
    fn file(&self, index: usize) -> Option<PathBuf> {
        self.locate(index).and_then(|(d, i)| d.file(i))
    }
}

/// A class-balanced sample of the images whose labels are `labels`: `take(class, images of the
/// class)` of each class, drawn with `seed`, as sorted indices.
pub fn class_balanced(
    labels: &[usize],
    classes: usize,
    seed: u64,
    take: impl Fn(usize, usize) -> anyhow::Result<usize>,
) -> anyhow::Result<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut sample = Vec::new();
    for (c, mut members) in by_class.into_iter().enumerate() {
        let n = take(c, members.len())?.min(members.len());
        members.shuffle(&mut rng);
        sample.extend_from_slice(&members[..n]);
    }
    sample.sort_unstable();
    Ok(sample)
}
