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
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod index;

pub use index::{normalized, recall, with_hnsw, Exact, Hit, Hnsw, HnswParams, UnitCosine};


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
