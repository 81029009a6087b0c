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

/// A contrast of accuracies, `Σ_c weight_c · top1_c`, measured at several seeds on one shared test
/// set, with its uncertainty from a two-level paired bootstrap.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contrast {
    /// The contrast averaged over seeds (accuracy points, a fraction × 100).
    pub estimate: f64,
    /// The contrast at each seed.
    pub per_seed: Vec<f64>,
    /// The central 95% of the bootstrap replicates (percentile interval).
    pub ci95: (f64, f64),
    /// Two-sided bootstrap p-value of "the contrast is 0": twice the share of replicates on the
    /// far side of 0 from the estimate, at least 1 / replicates.
    pub p_value: f64,
    /// Test images (over every test set the seeds were scored on).
    pub images: usize,
}

/// Bootstrap replicates [`contrast`] draws.
pub const REPLICATES: usize = 10_000;

/// The contrast `Σ_c weights[c] · accuracy(hits[s][c])` over the seeds `s` (every term of one seed
/// trained with that seed; every run scored on the same test images in the same order), in
/// points. Its uncertainty counts both sources of noise a reviewer asks about: each replicate
/// draws the seeds with replacement (seed noise: what another training run would give) and the
/// test images with replacement, the same images for every term and seed (test-set noise, kept
/// paired: an image every run gets right moves nothing). With one seed it is a paired bootstrap
/// over images, McNemar's question with a contrast of any number of classifiers.
pub fn contrast(hits: &[Vec<&[bool]>], weights: &[f64], seed: u64) -> Result<Contrast> {
    contrast_on(hits, &vec![0; hits.len()], weights, seed)
}

/// [`contrast`] where the seeds need not share their test images: seeds of equal `test_sets[s]`
/// were scored on the same images in the same order, others on images of their own (each seed a
/// fold of a k-fold split). The estimate pools every tested image (a seed weighs as its test
/// images); each replicate draws the seeds with replacement and, once for each test set, its
/// images with replacement, the same draw for every term and every seed on that set (paired).
pub fn contrast_on(hits: &[Vec<&[bool]>], test_sets: &[usize], weights: &[f64], seed: u64) -> Result<Contrast> {
    use rand::{Rng, SeedableRng};
    let len = |s: usize| hits[s].first().map_or(0, |h| h.len());
    let same_set_other_length = |s: usize| (0..s).any(|t| test_sets[t] == test_sets[s] && len(t) != len(s));
    if hits.is_empty() || test_sets.len() != hits.len() || (0..hits.len()).any(|s| len(s) == 0 || hits[s].len() != weights.len() || hits[s].iter().any(|h| h.len() != len(s)) || same_set_other_length(s)) {
        bail!("a contrast needs every term at every seed scored on the same test images ({} terms; rows per run differ or are missing)", weights.len());
    }
    // Each seed's contrast on each of its images, in points.
    let value: Vec<Vec<f64>> = hits
        .iter()
        .map(|terms| (0..terms[0].len()).map(|i| 100.0 * terms.iter().zip(weights).map(|(h, w)| if h[i] { *w } else { 0.0 }).sum::<f64>()).collect())
        .collect();
    let per_seed: Vec<f64> = value.iter().map(|v| v.iter().sum::<f64>() / v.len() as f64).collect();
    let seeds = value.len();
    let tested = (0..seeds).map(len).sum::<usize>() as f64;
    let estimate = value.iter().flatten().sum::<f64>() / tested;
    // The distinct test sets, each with its image count; `set_of[s]` indexes them.
    let mut sets: Vec<(usize, usize)> = (0..seeds).map(|s| (test_sets[s], len(s))).collect();
    (sets.sort_unstable(), sets.dedup());
    let set_of: Vec<usize> = (0..seeds).map(|s| sets.iter().position(|&(id, _)| id == test_sets[s]).expect("listed")).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut count: Vec<Vec<u32>> = sets.iter().map(|&(_, n)| vec![0; n]).collect();
    let mut replicates: Vec<f64> = (0..REPLICATES)
        .map(|_| {
            for c in &mut count {
                c.iter_mut().for_each(|c| *c = 0);
                let n = c.len();
                (0..n).for_each(|_| c[rng.random_range(0..n)] += 1);
            }
            let (mut drawn, mut images) = (0.0, 0);
            for _ in 0..seeds {
                let s = rng.random_range(0..seeds);
                drawn += value[s].iter().zip(&count[set_of[s]]).map(|(v, &c)| v * c as f64).sum::<f64>();
                images += len(s);
            }
            drawn / images as f64
        })
        .collect();
    replicates.sort_by(f64::total_cmp);
    let at = |q: f64| replicates[((q * REPLICATES as f64) as usize).min(REPLICATES - 1)];
    let far_side = replicates.iter().filter(|&&r| if estimate >= 0.0 { r <= 0.0 } else { r >= 0.0 }).count();
    let p_value = (2.0 * far_side.max(1) as f64 / REPLICATES as f64).min(1.0);
    let images = sets.iter().map(|&(_, n)| n).sum();
    Ok(Contrast { estimate, per_seed, ci95: (at(0.025), at(0.975)), p_value, images })
}
