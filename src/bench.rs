//! `simclr bench`: throughput measurements (never timed assertions in tests).
//!
//! - `data`: augmentation views per second on one core, through the whole pipeline — decode,
//!   crop + resize, flip, colour jitter, grayscale, blur, and the copy into the batch buffer — at
//!   32 px (PNG source 32×32) and 224 px (JPEG source 500×375, and the raw 341×256 RGB8 the
//!   `--cache-size 256` cache serves from epoch 2 on). As in pretraining ([`make_views`]), each
//!   decoded image gives its two views.
//! - `step`: one training step (forward, NT-Xent, backward, optimiser update) on random images;
//!   median over the timed steps after warm-up, and the process's peak RSS.
//!
//! [`make_views`]: crate::data::loader::make_views

use crate::augment::{augment, view_rng, AugmentConfig};
use crate::config::Config;
use crate::image::Image;
use crate::loss::nt_xent;
use crate::optim::Optimizer;
use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
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
    /// View side.
    pub image_size: usize,
    /// Backend device.
    pub device: String,
    /// Arithmetic of the convolutions.
    pub precision: crate::device::Precision,
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

/// Times `steps` training steps after `warmup` untimed ones, for the model and batch of `cfg`.
pub fn step(cfg: &Config, steps: usize, warmup: usize, device: &Device) -> Result<StepResult> {
    cfg.validate()?;
    let size = if cfg.model.image_size > 0 { cfg.model.image_size } else { 32 };
    let ad = device.clone().autodiff();
    let mut model = cfg.model(size).init_seeded(cfg.run.seed, &ad);
    let mut optim = Optimizer::new(cfg.rule());
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let x = Tensor::<4>::random([2 * cfg.optim.batch_size, 3, size, size], Distribution::Uniform(0.0, 1.0), &ad);
        let t0 = Instant::now();
        let out = nt_xent(model.forward(x).pop().expect("z"), cfg.optim.temperature);
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(0.1, model, grads);
        let _: f32 = out.loss.into_scalar();
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(StepResult {
        model: format!("{:?} x{}", cfg.model.arch, cfg.model.width),
        batch_size: cfg.optim.batch_size,
        image_size: size,
        device: format!("{device:?}"),
        precision: crate::device::precision(),
        median_step_s: median,
        images_per_sec: cfg.optim.batch_size as f64 / median,
        steps_s: times,
        peak_rss_mib: peak_rss_mib(),
    })
}
