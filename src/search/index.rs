//! The two indexes of `simclr search` over ℓ2-normalised rows: [`Exact`] (a matrix product and a
//! top-k selection) and [`Hnsw`] (`hnsw_rs`'s approximate graph, saved beside the embeddings).

use anyhow::{Context, Result};
use hnsw_rs::prelude::{AnnT, Distance, HnswIo};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One hit: a row of the embeddings and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// Row of `features.npy`.
    pub row: usize,
    /// Cosine similarity in [-1, 1].
    pub similarity: f32,
}

/// Rows of `data` (`n × dim`) scaled to unit ℓ2 norm (a zero row stays zero).
pub fn normalized(data: &[f32], dim: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    out.par_chunks_mut(dim.max(1)).for_each(|row| {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    });
    out
}

/// The `k` highest of `scores` as hits, best first (ties by lower row), skipping `exclude`.
fn top_k(scores: &[f32], k: usize, exclude: Option<usize>) -> Vec<Hit> {
    let mut hits: Vec<Hit> = scores.iter().enumerate().filter(|&(row, _)| Some(row) != exclude).map(|(row, &similarity)| Hit { row, similarity }).collect();
    let order = |a: &Hit, b: &Hit| b.similarity.total_cmp(&a.similarity).then(a.row.cmp(&b.row));
    if k < hits.len() {
        hits.select_nth_unstable_by(k, order);
        hits.truncate(k);
    }
    hits.sort_by(order);
    hits
}

/// Exact search: every row scored against each query.
pub struct Exact {
    rows: Vec<f32>,
    n: usize,
    dim: usize,
}

impl Exact {
    /// The index of the `n × dim` rows `data` (normalised here).
    pub fn new(data: &[f32], dim: usize) -> Self {
        Self { rows: normalized(data, dim), n: data.len() / dim.max(1), dim }
    }

    /// The `k` nearest rows of each query (`queries`: `m × dim`, normalised here), all scored in
    /// one matrix product `Q Xᵀ` (`m × n` values); `exclude[i]` leaves a row out of query i's hits.
    pub fn search(&self, queries: &[f32], k: usize, exclude: &[Option<usize>]) -> Vec<Vec<Hit>> {
        let q = normalized(queries, self.dim);
        let m = q.len() / self.dim.max(1);
        let mut scores = vec![0f32; m * self.n];
        // scores (m × n) = Q (m × dim) · Xᵀ (dim × n), row-major: Xᵀ has column stride dim.
        // SAFETY: the slices hold m·n, m·dim and n·dim values, as the strides describe.
        unsafe {
            gemm::gemm(
                m, self.n, self.dim,
                scores.as_mut_ptr(), 1, self.n as isize,
                false,
                q.as_ptr(), 1, self.dim as isize,
                self.rows.as_ptr(), self.dim as isize, 1,
                0.0, 1.0, false, false, false,
                gemm::Parallelism::Rayon(0),
            );
        }
        scores.par_chunks(self.n.max(1)).enumerate().map(|(i, s)| top_k(s, k, exclude.get(i).copied().flatten())).collect()
    }
}

/// HNSW construction parameters (hnsw_rs's names), stored with the index so a changed setting
/// rebuilds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct HnswParams {
    /// HNSW: neighbours kept per node and layer (M).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 24))]
    pub max_connections: usize,
    /// HNSW: candidates explored while inserting (efConstruction).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 200))]
    pub ef_construction: usize,
    /// HNSW: candidates explored per query (efSearch; at least -k is used).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 128))]
    pub ef_search: usize,
}

/// What is saved beside an HNSW index: which embeddings and parameters built it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct HnswMeta {
    features_sha256: String,
    max_connections: usize,
    ef_construction: usize,
}

/// The HNSW index files' base name (hnsw_rs writes `hnsw.hnsw.graph` and `hnsw.hnsw.data`).
const HNSW: &str = "hnsw";
/// The file beside them that says what built them ([`HnswMeta`]).
const HNSW_META: &str = "hnsw.json";

/// The distance 1 − x·y of unit vectors x, y (1 − cos, in [0, 2]). hnsw_rs's own `DistDot` asserts
/// x·y ≤ 1, which rounding breaks for a vector and itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        // Eight partial sums, so the compiler may keep them in one vector register.
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        (1.0 - acc.iter().sum::<f32>() - tail).max(0.0)
    }
}

/// An approximate index: hnsw_rs's graph over the normalised rows with the distance [`UnitCosine`]
/// (so hits come back as 1 − distance).
pub struct Hnsw<'a> {
    graph: hnsw_rs::hnsw::Hnsw<'a, f32, UnitCosine>,
    ef_search: usize,
}

impl Hnsw<'static> {
    /// Builds the index of the `n × dim` rows `data` (inserted in parallel).
    pub fn build(data: &[f32], dim: usize, params: HnswParams) -> Self {
        let rows = normalized(data, dim);
        let n = rows.len() / dim.max(1);
        let graph = hnsw_rs::hnsw::Hnsw::new(params.max_connections, n.max(1), 16, params.ef_construction, UnitCosine);
        let items: Vec<(&[f32], usize)> = rows.chunks_exact(dim).enumerate().map(|(i, r)| (r, i)).collect();
        graph.parallel_insert_slice(&items);
        Self { graph, ef_search: params.ef_search }
    }
}

impl Hnsw<'_> {
    /// The (approximately) `k` nearest rows of each query (`m × dim`, normalised here).
    pub fn search(&self, queries: &[f32], dim: usize, k: usize, exclude: &[Option<usize>]) -> Vec<Vec<Hit>> {
        let q = normalized(queries, dim);
        q.par_chunks(dim.max(1))
            .enumerate()
            .map(|(i, query)| {
                let skip = exclude.get(i).copied().flatten();
                let want = k + usize::from(skip.is_some());
                let mut hits: Vec<Hit> = self
                    .graph
                    .search(query, want, self.ef_search.max(want))
                    .into_iter()
                    .filter(|h| Some(h.d_id) != skip)
                    .map(|h| Hit { row: h.d_id, similarity: 1.0 - h.distance })
                    .collect();
                hits.truncate(k);
                hits
            })
            .collect()
    }

    /// Saves the graph and its data into `dir` with what built it (`features_sha256`, `params`).
    fn save(&self, dir: &Path, features_sha256: &str, params: HnswParams) -> Result<()> {
        self.graph.file_dump(dir, HNSW).map_err(|e| anyhow::anyhow!("writing the HNSW index into {}: {e}", dir.display()))?;
        let meta = HnswMeta { features_sha256: features_sha256.into(), max_connections: params.max_connections, ef_construction: params.ef_construction };
        std::fs::write(dir.join(HNSW_META), serde_json::to_vec_pretty(&meta)?).with_context(|| format!("writing {}", dir.join(HNSW_META).display()))
    }
}

/// SHA-256 of the rows as little-endian `f32` bytes (the data of `features.npy`), in hex.
fn features_sha256(data: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for chunk in data.chunks(1 << 14) {
        hasher.update(chunk.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    }
    format!("{:x}", hasher.finalize())
}

/// Runs `f` with the HNSW index of the embeddings in `dir` (`data`, `n × dim`): the saved one when
/// it was built from these very features with `params`, else a new one, built and saved first.
/// Returns `f`'s result and whether the index was built now.
pub fn with_hnsw<R>(dir: &Path, data: &[f32], dim: usize, params: HnswParams, f: impl FnOnce(&Hnsw) -> R) -> Result<(R, bool)> {
    let sha = features_sha256(data);
    let want = HnswMeta { features_sha256: sha.clone(), max_connections: params.max_connections, ef_construction: params.ef_construction };
    let saved: Option<HnswMeta> = crate::files::read(&dir.join(HNSW_META), crate::files::TEXT).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if saved.as_ref() == Some(&want) {
        let mut io = HnswIo::new(dir, HNSW);
        let loaded = io.load_hnsw::<f32, UnitCosine>();
        match loaded {
            Ok(graph) if graph.get_nb_point() == data.len() / dim.max(1) => {
                tracing::info!("HNSW index from {}", dir.join(HNSW_META).display());
                return Ok((f(&Hnsw { graph, ef_search: params.ef_search }), false));
            }
            _ => tracing::warn!("the HNSW index in {} cannot be read; building it again", dir.display()),
        }
    }
    tracing::info!("building the HNSW index of {} rows (saved in {})", data.len() / dim.max(1), dir.display());
    let index = Hnsw::build(data, dim, params);
    index.save(dir, &sha, params)?;
    Ok((f(&index), true))
}

/// Fraction of the exact hits that the approximate ones found (recall@k, averaged over queries).
pub fn recall(exact: &[Vec<Hit>], approximate: &[Vec<Hit>]) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    for (e, a) in exact.iter().zip(approximate) {
        found += e.iter().filter(|h| a.iter().any(|x| x.row == h.row)).count();
        total += e.len();
    }
    found as f64 / total.max(1) as f64
}
