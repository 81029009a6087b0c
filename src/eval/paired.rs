//! Paired comparison of two classifiers on the same test images (McNemar 1947): of the images
//! exactly one of them gets right, how many each, and the exact two-sided binomial p-value of
//! that split under "equally accurate" (each such image equally likely to favour either). The
//! test counts what differs between the two on each image, so it is far more sensitive than
//! comparing two accuracies as independent samples when both share the test set.

use anyhow::{bail, Result};
use serde::Serialize;

/// Two classifiers compared image by image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Paired {
    /// Images compared.
    pub images: usize,
    /// Accuracy of the first (fraction).
    pub top1_a: f64,
    /// Accuracy of the second (fraction).
    pub top1_b: f64,
    /// Images only the first gets right.
    pub only_a: usize,
    /// Images only the second gets right.
    pub only_b: usize,
    /// Exact two-sided McNemar p-value of `only_a` against `only_b` (1 when they are equal).
    pub p_value: f64,
}

/// Compares the per-image correctness `a` and `b` (the same images in the same order).
pub fn mcnemar(a: &[bool], b: &[bool]) -> Result<Paired> {
    if a.len() != b.len() || a.is_empty() {
        bail!("a paired comparison needs the same test images for both classifiers ({} and {} rows)", a.len(), b.len());
    }
    let only_a = a.iter().zip(b).filter(|(x, y)| **x && !**y).count();
    let only_b = a.iter().zip(b).filter(|(x, y)| !**x && **y).count();
    let accuracy = |c: &[bool]| c.iter().filter(|x| **x).count() as f64 / c.len() as f64;
    Ok(Paired { images: a.len(), top1_a: accuracy(a), top1_b: accuracy(b), only_a, only_b, p_value: binomial_two_sided(only_a, only_b) })
}

/// `P(X ≤ min(a, b)) · 2` (at most 1) for `X ~ Binomial(a + b, ½)`, summed in log space so that
/// tens of thousands of discordant images neither overflow nor underflow.
fn binomial_two_sided(a: usize, b: usize) -> f64 {
    let (k, n) = (a.min(b), a + b);
    if a == b {
        return 1.0;
    }
    let log_half_n = n as f64 * std::f64::consts::LN_2;
    let mut log_choose = 0.0; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        terms.push(log_choose - log_half_n);
        log_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// The top class of each row of `scores` (`classes` per row; ties: the first, as
/// [`crate::eval::confusion`] picks).
pub fn predictions(scores: &[f32], classes: usize) -> Vec<usize> {
    scores.chunks(classes).map(|row| row.iter().enumerate().fold(0, |best, (c, &s)| if s > row[best] { c } else { best })).collect()
}

/// Whether each prediction is its label.
pub fn hits(predicted: &[usize], labels: &[usize]) -> Vec<bool> {
    predicted.iter().zip(labels).map(|(p, l)| p == l).collect()
}

/// The share of rows (of `classes` scores each) on which `a` and `b` pick the same top class.
pub fn agreement(a: &[f32], b: &[f32], classes: usize) -> f64 {
    let (pa, pb) = (predictions(a, classes), predictions(b, classes));
    pa.iter().zip(&pb).filter(|(x, y)| x == y).count() as f64 / pa.len().max(1) as f64
}
