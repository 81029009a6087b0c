//! Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018, InstDisc; the
//! monitor lightly and solo-learn use): cosine similarity, the k most similar training images vote
//! for their class with weight `exp(sim / T)`. Defaults k = 200, T = 0.1.

use crate::eval::Features;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

/// kNN settings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Knn {
    /// Neighbours that vote.
    pub k: usize,
    /// Temperature of the vote weights.
    pub temperature: f32,
}

impl Default for Knn {
    fn default() -> Self {
        Self { k: 200, temperature: 0.1 }
    }
}

fn normalized(f: &Features, device: &Device) -> Tensor<2> {
    let t = Tensor::<2>::from_data(TensorData::new(f.data.clone(), [f.n, f.dim]), device);
    crate::loss::l2_normalize(t)
}

impl Knn {
    /// Checks the settings: at least one neighbour, a finite temperature above 0.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::config::check::nonzero("--k", self.k)?;
        crate::config::check::positive("--knn-temperature", self.temperature as f64)
    }

    /// Class scores (summed vote weights), `test.n × classes` row-major, of each test row against
    /// the labelled `train` rows.
    pub fn scores(&self, train: &Features, test: &Features, classes: usize, device: &Device) -> Vec<f32> {
        let k = self.k.min(train.n);
        let bank = normalized(train, device).transpose();
        let mut out = vec![0f32; test.n * classes];
        const CHUNK: usize = 512;
        for start in (0..test.n).step_by(CHUNK) {
            let rows: Vec<usize> = (start..(start + CHUNK).min(test.n)).collect();
            let sims = crate::floats(normalized(&test.subset(&rows), device).matmul(bank.clone()));
            for (r, sim) in sims.chunks(train.n).enumerate() {
                let mut idx: Vec<usize> = (0..train.n).collect();
                if k < train.n {
                    idx.select_nth_unstable_by(k - 1, |&a, &b| sim[b].total_cmp(&sim[a]));
                }
                let scores = &mut out[(start + r) * classes..(start + r + 1) * classes];
                for &j in &idx[..k] {
                    scores[train.labels[j]] += (sim[j] / self.temperature).exp();
                }
            }
        }
        out
    }
}
