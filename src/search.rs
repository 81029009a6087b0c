//! `simclr search`: the nearest neighbours of an image among the embeddings `simclr embed` wrote,
//! by cosine similarity (the similarity of the NT-Xent loss, paper Eq. 1, and of the kNN monitor).
//!
//! Two indexes over the ℓ2-normalised rows: [`Exact`], a matrix product of the queries with every
//! row and a top-k selection, and [`Hnsw`], the approximate graph index of `hnsw_rs` (Malkov and
//! Yashunin's HNSW) for large sets, built once and saved beside the embeddings.

use crate::config::{Config, DataSettings, RunSettings};
use crate::data::{self, Dataset, InMemoryDataset, Split};
use crate::eval::{Features, Layer};
use crate::image::Image;
use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use hnsw_rs::prelude::{AnnT, Distance, HnswIo};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Which index `simclr search` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Every row scored (a matrix product): exact, linear in the rows.
    Exact,
    /// hnsw_rs's approximate graph index, built once and saved beside the embeddings.
    Hnsw,
}

/// `simclr search`'s flags.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct SearchArgs {
    /// Folder `simclr embed` wrote (features.npy, index.npy, labels.npy, report.json).
    #[cfg_attr(feature = "cli", arg(long))]
    pub embeddings: PathBuf,
    /// What to look up: a row of features.npy (a number; the row itself is left out of the hits)
    /// or an image file, embedded by the network of --checkpoint.
    #[cfg_attr(feature = "cli", arg(long))]
    pub query: String,
    /// Network that embeds an image query [default: the one `simclr embed` used, from its report.json].
    #[cfg_attr(feature = "cli", arg(long))]
    pub checkpoint: Option<PathBuf>,
    /// Neighbours to return.
    #[cfg_attr(feature = "cli", arg(short, long, default_value_t = 10))]
    pub k: usize,
    /// Index: exact, or hnsw (approximate, for large sets).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "exact"))]
    pub index: IndexKind,
    /// HNSW parameters (--index hnsw).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub hnsw: HnswParams,
    /// Draw the query and its neighbours, best first, as a PNG strip (reads the images of the
    /// dataset `simclr embed` read).
    #[cfg_attr(feature = "cli", arg(long))]
    pub png: Option<PathBuf>,
    /// Also write the hits as JSON to this file.
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: Option<PathBuf>,
}

/// What `simclr embed` wrote into a folder.
struct Embeddings {
    features: Features,
    /// Image index (in the embedded split) of each row.
    image: Vec<usize>,
    /// `report.json`: the network, layer, image size and data behind the rows.
    report: serde_json::Value,
    dir: PathBuf,
}

impl Embeddings {
    fn read(dir: &Path) -> Result<Self> {
        if !dir.join("features.npy").exists() {
            bail!("--embeddings {}: no features.npy there; write one with `simclr embed --checkpoint RUN --out {}`", dir.display(), dir.display());
        }
        let features = crate::eval::embed::read(dir)?;
        let image = match crate::eval::embed::read_index(dir)? {
            Some(index) if index.len() == features.n => index,
            Some(index) => bail!("{}: {} entries for {} rows of features.npy; run `simclr embed` again", dir.join("index.npy").display(), index.len(), features.n),
            None => (0..features.n).collect(),
        };
        let report = crate::files::read(&dir.join("report.json"), crate::files::TEXT).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(serde_json::Value::Null);
        Ok(Self { features, image, report, dir: dir.to_path_buf() })
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.features.data[row * self.features.dim..(row + 1) * self.features.dim]
    }

    /// The dataset split the rows come from (as `simclr embed` opened it), if report.json says.
    fn dataset(&self) -> Result<Arc<dyn Dataset>> {
        let settings = &self.report["settings"];
        let data: DataSettings = serde_json::from_value(settings["data"].clone())
            .map_err(|_| anyhow::anyhow!("{}: no data settings; run `simclr embed` again to record them", self.dir.join("report.json").display()))?;
        let source = DataSettings { cache_size: 0, ..data.clone() }.source(&self.dir);
        Ok(if settings["split"] == "test" { data::open(&source, Split::Test)? } else { data::first(data::open(&source, Split::Train)?, data.limit) })
    }

    /// The image file's embedding: read, preprocessed for evaluation, through the network of
    /// `checkpoint` (or the one the report names) up to the report's layer, in `f32`.
    fn embed_image(&self, file: &Path, checkpoint: Option<&Path>, device: &Device) -> Result<Vec<f32>> {
        let report = self.dir.join("report.json");
        let config: Config = serde_json::from_value(self.report["model_config"].clone())
            .map_err(|_| anyhow::anyhow!("{}: missing or unreadable; it says which network made the embeddings", report.display()))?;
        let size = self.report["metrics"]["image_size"].as_u64().map(|s| s as usize).unwrap_or(config.model.image_size);
        let layer: Layer = self.report["metrics"]["layer"].as_str().unwrap_or("h").parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let named = self.report["checkpoint"].as_str().map(PathBuf::from);
        // One image: the default arithmetic and memory order, whatever the network trained with.
        let config = Config { run: RunSettings { precision: Default::default(), memory_format: Default::default(), ..config.run }, ..config };
        let loaded = crate::eval::load(checkpoint.or(named.as_deref()), &config, size, device)?;
        let index = layer.index(loaded.model.head.len())?;
        let img = crate::grid::load_file(file).with_context(|| "--query: neither a row number nor a readable image file")?;
        let pixels = img.to_u8_hwc();
        let one = InMemoryDataset::new(pixels, 1, img.height, img.width, 3, None, 0).map_err(|e| anyhow::anyhow!(e))?;
        let f = crate::eval::extract(&loaded.model, index, &one, loaded.image_size, 1, &crate::data::BadImages::new(true), device)?;
        if f.dim != self.features.dim {
            bail!(
                "--checkpoint: its layer {layer} has {} values but the embeddings have {}; pass the network `simclr embed` used",
                f.dim,
                self.features.dim
            );
        }
        Ok(f.data)
    }
}

/// What a query is.
enum Query {
    Row(usize),
    Image(PathBuf),
}

impl Query {
    fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(row) if !Path::new(s).exists() => Query::Row(row),
            _ => Query::Image(PathBuf::from(s)),
        }
    }
}

/// One row of the embeddings, described: its image (index in the embedded split), label and file.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Row of features.npy.
    pub row: usize,
    /// Index of its image in the embedded split.
    pub image: usize,
    /// Its label, where the embeddings have labels.
    pub label: Option<usize>,
    /// Its image file, where the dataset has files and can be opened again.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A neighbour of the query.
#[derive(Clone, Debug, Serialize)]
pub struct Neighbour {
    /// The row.
    #[serde(flatten)]
    pub entry: Entry,
    /// Cosine similarity to the query.
    pub similarity: f32,
}

/// What was looked up.
#[derive(Clone, Debug)]
pub enum Asked {
    /// A row of the embeddings.
    Row(Entry),
    /// An image file, embedded by the network.
    Image(PathBuf),
}

/// What `simclr search` found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The query.
    pub query: Asked,
    /// Its neighbours, most similar first.
    pub neighbours: Vec<Neighbour>,
    /// The PNG strip written (`--png`).
    pub png: Option<PathBuf>,
}

/// `simclr search`: the query's `k` nearest rows; writes `--json` and the `--png` strip.
pub fn search(args: &SearchArgs, device: &Device) -> Result<Found> {
    let emb = Embeddings::read(&args.embeddings)?;
    let n = emb.features.n;
    let query = Query::parse(&args.query);
    let (vector, exclude, others) = match &query {
        Query::Row(r) if *r >= n => bail!("--query {r}: out of range; features.npy has {n} rows (0 … {})", n.saturating_sub(1)),
        Query::Row(r) => (emb.row(*r).to_vec(), Some(*r), n - 1),
        Query::Image(file) => (emb.embed_image(file, args.checkpoint.as_deref(), device)?, None, n),
    };
    if args.k == 0 || args.k > others {
        bail!("-k {}: choose 1 … {others} (the embeddings hold {n} rows{})", args.k, if exclude.is_some() { ", the query among them" } else { "" });
    }
    let dim = emb.features.dim;
    let hits = match args.index {
        IndexKind::Exact => Exact::new(&emb.features.data, dim).search(&vector, args.k, &[exclude]),
        IndexKind::Hnsw => with_hnsw(&emb.dir, &emb.features.data, dim, args.hnsw, |h| h.search(&vector, dim, args.k, &[exclude]))?.0,
    }
    .swap_remove(0);
    let files = emb.dataset().ok();
    let entry = |row: usize| Entry {
        row,
        image: emb.image[row],
        label: emb.features.labels.get(row).copied(),
        file: files.as_ref().and_then(|d| d.file(emb.image[row])),
    };
    let neighbours: Vec<Neighbour> = hits.iter().map(|h| Neighbour { entry: entry(h.row), similarity: h.similarity }).collect();
    if let Some(file) = &args.json {
        std::fs::write(file, serde_json::to_vec_pretty(&serde_json::json!({ "query": args.query, "index": args.index, "hits": neighbours }))?)
            .with_context(|| format!("--json {}: cannot write the file", file.display()))?;
    }
    if let Some(png) = &args.png {
        let ds = emb.dataset().context("--png needs the images")?;
        let first = match &query {
            Query::Row(r) => ds.image(emb.image[*r])?,
            Query::Image(file) => crate::grid::load_file(file)?,
        };
        let mut cells = vec![(first, "query".to_string())];
        for (rank, hit) in neighbours.iter().enumerate() {
            cells.push((ds.image(hit.entry.image)?, format!("{} · {:.3}", rank + 1, hit.similarity)));
        }
        strip(&cells, png)?;
    }
    let query = match query {
        Query::Row(r) => Asked::Row(entry(r)),
        Query::Image(file) => Asked::Image(file),
    };
    Ok(Found { query, neighbours, png: args.png.clone() })
}

/// Draws `cells` (image, caption) side by side, each scaled to 96 px with its caption below, into
/// the PNG `file`.
fn strip(cells: &[(Image, String)], file: &Path) -> Result<()> {
    use plotters::prelude::*;
    const SIDE: u32 = 96;
    const CAPTION: u32 = 20;
    const GAP: u32 = 4;
    let (w, h) = (cells.len() as u32 * (SIDE + GAP) + GAP, SIDE + CAPTION + 2 * GAP);
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, (img, _)) in cells.iter().enumerate() {
        let rgb = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.to_u8_hwc()).expect("an image holds height × width RGB pixels");
        let cell = image::imageops::resize(&rgb, SIDE, SIDE, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut canvas, &cell, (GAP + i as u32 * (SIDE + GAP)) as i64, GAP as i64);
    }
    crate::curves::register_font();
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let style = TextStyle::from(("sans-serif", 13).into_font()).color(&BLACK);
        for (i, (_, caption)) in cells.iter().enumerate() {
            let x = (GAP + i as u32 * (SIDE + GAP)) as i32;
            root.draw_text(caption, &style, (x + 2, (GAP + SIDE + 3) as i32)).map_err(|e| anyhow::anyhow!("drawing the strip: {e:?}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("drawing the strip: {e:?}"))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer holds w × h RGB pixels");
    img.save(file).with_context(|| format!("--png {}: cannot write the PNG", file.display()))
}
