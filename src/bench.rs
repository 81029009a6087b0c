//! `simclr bench`: throughput measurements (never timed assertions in tests).
//!
//! - `data`: augmentation views per second on one core, through the whole pipeline — decode,
//!   crop + resize, flip, colour jitter, grayscale, blur, and the copy into the batch buffer — at
//!   32 px (PNG source 32×32) and 224 px (JPEG source 500×375, and the raw 341×256 RGB8 the
//!   `--cache-size 256` cache serves from epoch 2 on). As in pretraining ([`make_views`]), each
//!   decoded image gives its two views.
//! - `step`: `pretrain`'s training step ([`crate::train::step`]: forward, NT-Xent, online probe,
//!   backward, gradient sum over the ranks, optimiser update; in chunks with `--micro-batch`) on
//!   random images; median over the timed steps after warm-up, and the process's peak RSS.
//! - `search`: [`crate::search`]'s exact and HNSW indexes on random vectors: query latency, HNSW
//!   build time and recall@k.
//!
//! [`make_views`]: crate::data::loader::make_views

use crate::augment::{augment, view_rng, AugmentConfig};
use crate::config::Config;
use crate::image::Image;
use crate::data::loader::Shard;
use crate::optim::Optimizer;
use anyhow::Result;
use crate::train::simclr::{SimClrObjective, ViewBatch};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One row of `bench data`.
#[derive(Debug, Serialize)]
pub struct DataRow {
    /// View side in pixels.
    pub image_size: usize,
    /// Source image (format and size), decoded once for its two views.
    pub source: String,
    /// Views produced per second on one core.
    pub views_per_sec_per_core: f64,
}

fn synthetic(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let n = crate::augment::splitmix64((x as u64) << 32 | y as u64) as u8 / 4;
        image::Rgb([(x * 255 / w) as u8 / 2 + n, (y * 255 / h) as u8 / 2 + n, 128u8.wrapping_add(n)])
    })
}

fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).expect("encoding a synthetic image");
    bytes.into_inner()
}

/// Measures the augmentation pipeline on the calling thread for about `budget` per size.
pub fn data(budget: Duration) -> Vec<DataRow> {
    // (view side, source side, encoded format; None = raw RGB8 as `--cache-size 256` stores it).
    let cases = [
        (32usize, (32u32, 32u32), Some(image::ImageFormat::Png)),
        (224, (500, 375), Some(image::ImageFormat::Jpeg)),
        (224, (341, 256), None),
    ];
    cases
        .iter()
        .map(|&(size, (w, h), format)| {
            let source = synthetic(w, h);
            let bytes = format.map(|f| encode(&source, f)).unwrap_or_else(|| source.as_raw().clone());
            let mut cfg = AugmentConfig::simclr(size, 1.0);
            cfg.blur = true;
            let mut buffer = vec![0f32; 3 * size * size];
            let start = Instant::now();
            let mut views = 0u64;
            let mut images = 0u64;
            while start.elapsed() < budget || views < 20 {
                let img = match format {
                    Some(_) => {
                        let rgb = image::load_from_memory(&bytes).expect("decoding the synthetic image").into_rgb8();
                        Image::from_u8_hwc(rgb.as_raw(), h as usize, w as usize, 3)
                    }
                    None => Image::from_u8_hwc(&bytes, h as usize, w as usize, 3),
                };
                for v in 0..2 {
                    let view = augment(&img, &cfg, &mut view_rng(0, 0, images, v));
                    buffer.copy_from_slice(&view.data);
                    views += 1;
                }
                images += 1;
            }
            DataRow {
                image_size: size,
                source: match format {
                    Some(f) => format!("{f:?} {w}x{h}"),
                    None => format!("cached RGB8 {w}x{h}"),
                },
                views_per_sec_per_core: views as f64 / start.elapsed().as_secs_f64(),
            }
        })
        .collect()
}

/// Result of `bench step`.
#[derive(Debug, Serialize)]
pub struct StepResult {
    /// Architecture and width.
    pub model: String,
    /// Images per step (each with two views).
    pub batch_size: usize,
    /// Images per chunk of the gradient cache (0: the whole batch at once).
    pub micro_batch: usize,
    /// View side.
    pub image_size: usize,
    /// Backend device.
    pub device: String,
    /// Arithmetic of the encoder.
    pub precision: crate::device::Precision,
    /// Memory order of the activations.
    pub memory_format: crate::device::MemoryFormat,
    /// Median seconds per step.
    pub median_step_s: f64,
    /// Images (not views) per second at the median step.
    pub images_per_sec: f64,
    /// Every timed step, seconds.
    pub steps_s: Vec<f64>,
    /// Peak resident memory of the process, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
}

/// A `/proc/self/status` memory field in MiB (Linux only).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The process's peak resident set size in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// The process's current resident set size in MiB.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// Classes of the online probe's random labels when the config names none (pretraining takes the
/// dataset's).
const PROBE_CLASSES: usize = 10;

/// Times `steps` training steps after `warmup` untimed ones, for the model and batch of `cfg`: the
/// loop and step `pretrain` runs ([`crate::train::run`] with [`SimClrObjective`], the online probe
/// included where `cfg` has it, on random labels), on random views made on the host as the loader
/// makes them; a step's time is [`crate::train::StepEnd::step_s`], the time `pretrain` records
/// as its step time. Under `mpirun`, each rank takes its part of the batch and the step gathers
/// the views and sums the gradients over the ranks, as in `pretrain`.
pub fn step(cfg: &Config, steps: usize, warmup: usize, device: &Device) -> Result<StepResult> {
    cfg.validate()?;
    let mut cfg = cfg.clone();
    if cfg.monitor.online_probe && cfg.monitor.num_classes == 0 {
        cfg.monitor.num_classes = PROBE_CLASSES;
    }
    let size = if cfg.model.image_size > 0 { cfg.model.image_size } else { 32 };
    let ad = device.clone().autodiff();
    let world = crate::distributed::world();
    let part = Shard { rank: world.rank(), ranks: world.ranks() }.part(cfg.optim.batch_size);
    let compute = cfg.run.compute(device)?.with_sync_bn(cfg.optim.sync_bn, world);
    let model = cfg.model(size).init_seeded(cfg.run.seed, &ad).with_compute(compute);
    let mut optim = Optimizer::new(cfg.rule());
    let objective = SimClrObjective { temperature: cfg.optim.temperature, l2_normalize: cfg.optim.l2_normalize };
    let strategy = crate::train::simclr::strategy(objective, cfg.optim.micro_batch, cfg.optim.chunk_views);
    let classes = cfg.monitor.num_classes;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.run.seed);
    // Each batch made on the host and handed to the device as the loader's is.
    let next_batch = |_| {
        let pixels: Vec<f32> = (0..2 * part * 3 * size * size).map(|_| rng.random::<f32>()).collect();
        let labels = (0..part).map(|image| (classes > 0).then_some(image % classes.max(1))).collect();
        Ok(ViewBatch { pixels: Tensor::<4>::from_data(TensorData::new(pixels, [2 * part, 3, size, size]), &ad), labels })
    };
    let mut timer = StepTimes { warmup, times: Vec::new() };
    crate::train::run(model, &mut optim, strategy.as_ref(), |_| 0.1, 0..warmup + steps, world, next_batch, &mut timer)?;
    let times = timer.times;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(StepResult {
        model: format!("{:?} x{}", cfg.model.arch, cfg.model.width),
        batch_size: cfg.optim.batch_size,
        micro_batch: cfg.optim.micro_batch,
        image_size: size,
        device: format!("{device:?}"),
        precision: compute.precision,
        memory_format: compute.memory_format,
        median_step_s: median,
        images_per_sec: cfg.optim.batch_size as f64 / median,
        steps_s: times,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Records the step time of every step after the first `warmup`; an error once the loss is not
/// finite.
struct StepTimes {
    warmup: usize,
    times: Vec<f64>,
}

impl crate::train::StepHook<crate::model::SimClr> for StepTimes {
    fn after_step(&mut self, end: crate::train::StepEnd<'_, crate::model::SimClr>) -> Result<crate::train::Flow> {
        let loss = end.logged.get("loss").unwrap_or(f32::NAN);
        if !loss.is_finite() {
            anyhow::bail!("bench step: the loss became {loss} at step {}", end.done);
        }
        if end.done > self.warmup {
            self.times.push(end.step_s);
        }
        Ok(crate::train::Flow::Continue)
    }
}

/// What `bench search` measures.
#[derive(Debug, Serialize)]
pub struct SearchBench {
    /// Rows in the index.
    pub rows: usize,
    /// Dimension of a row.
    pub dim: usize,
    /// Centres the vectors are drawn around (0: i.i.d. uniform).
    pub clusters: usize,
    /// Queries timed.
    pub queries: usize,
    /// Neighbours per query.
    pub k: usize,
    /// Exact search, one query per call.
    pub exact_ms_per_query: f64,
    /// Exact search, every query in one call (one matrix product).
    pub exact_batched_ms_per_query: f64,
    /// Building the HNSW index (parallel insertion).
    pub hnsw_build_s: f64,
    /// HNSW search, one query per call.
    pub hnsw_ms_per_query: f64,
    /// Share of the exact top-k that HNSW returns.
    pub hnsw_recall: f64,
    /// HNSW parameters.
    pub hnsw: crate::search::HnswParams,
}

/// `n` random vectors of `dim` values from `seed`: with `clusters` = 0 i.i.d. uniform in [-1, 1);
/// else row i is centre i mod `clusters` (drawn once from `seed`, uniform in [-1, 1)) plus uniform
/// noise in [-0.5, 0.5), structure like that of learned embeddings (classes, near-duplicates).
pub fn random_vectors(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    if clusters == 0 {
        return (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    }
    let mut centres = rand_chacha::ChaCha8Rng::seed_from_u64(u64::MAX);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| centres.random_range(-1.0f32..1.0)).collect();
    (0..n).flat_map(|i| centres[(i % clusters) * dim..(i % clusters + 1) * dim].to_vec()).map(|c| c + rng.random_range(-0.5f32..0.5)).collect()
}

/// `bench search`: `rows` [`random_vectors`] of `dim` values (around `clusters` centres) indexed,
/// `queries` others drawn alike searched one at a time and all at once.
pub fn search(rows: usize, dim: usize, clusters: usize, queries: usize, k: usize, hnsw: crate::search::HnswParams) -> SearchBench {
    use crate::search::{recall, Exact, Hnsw};
    let data = random_vectors(rows, dim, clusters, 1);
    let q = random_vectors(queries, dim, clusters, 2);
    let per_query = |start: Instant| start.elapsed().as_secs_f64() * 1e3 / queries.max(1) as f64;
    let exact = Exact::new(&data, dim);
    let start = Instant::now();
    let truth: Vec<_> = q.chunks(dim).map(|one| exact.search(one, k, &[]).swap_remove(0)).collect();
    let exact_ms_per_query = per_query(start);
    let start = Instant::now();
    std::hint::black_box(exact.search(&q, k, &[]));
    let exact_batched_ms_per_query = per_query(start);
    let start = Instant::now();
    let index = Hnsw::build(&data, dim, hnsw);
    let hnsw_build_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let found: Vec<_> = q.chunks(dim).map(|one| index.search(one, dim, k, &[]).swap_remove(0)).collect();
    let hnsw_ms_per_query = per_query(start);
    SearchBench { rows, dim, clusters, queries, k, exact_ms_per_query, exact_batched_ms_per_query, hnsw_build_s, hnsw_ms_per_query, hnsw_recall: recall(&truth, &found), hnsw }
}
