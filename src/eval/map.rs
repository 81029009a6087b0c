//! A 2-D map of embeddings coloured by class (`simclr embed --map`, `simclr plot-embeddings`): do
//! the classes separate in h? The layout is the projection on the first two principal components
//! (PCA): linear, deterministic and fast (two power iterations over the rows, seconds for 10,000
//! rows of 2,048 dimensions here), so two encoders' maps are comparable and nothing is tuned.
//! t-SNE or UMAP separate clusters more but depend on their settings and seed and take minutes on
//! such sets on two cores; no maintained pure-Rust UMAP was at hand.

use super::Features;
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use rayon::prelude::*;
use std::path::Path;

/// Classes a map colours at most (CIFAR-100's).
pub const MAX_CLASSES: usize = 100;

/// Rows drawn at most (evenly spaced rows of larger sets).
pub const MAX_POINTS: usize = 10_000;

/// Each of `f`'s rows (at most [`MAX_POINTS`], evenly spaced) projected on the first two principal
/// components of those rows: (row, x, y). An error for fewer than 3 rows or non-finite values.
pub fn pca2(f: &Features) -> Result<Vec<(usize, f32, f32)>> {
    if f.n < 3 || f.dim == 0 {
        bail!("{} rows of {} values: a map needs at least 3 rows", f.n, f.dim);
    }
    if let Some(i) = f.data.iter().position(|v| !v.is_finite()) {
        bail!("row {}: its features are not finite numbers; the network's weights or the images are broken", i / f.dim);
    }
    let step = f.n.div_ceil(MAX_POINTS);
    let rows: Vec<usize> = (0..f.n).step_by(step).collect();
    let d = f.dim;
    let mut mean = vec![0f64; d];
    for &r in &rows {
        for (m, v) in mean.iter_mut().zip(&f.data[r * d..(r + 1) * d]) {
            *m += *v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.len() as f64);
    let centred: Vec<Vec<f64>> = rows.par_iter().map(|&r| f.data[r * d..(r + 1) * d].iter().zip(&mean).map(|(v, m)| *v as f64 - m).collect()).collect();
    // Block power iteration on the covariance XᵀX with two vectors, orthonormalised each round.
    let mut basis = [(0..d).map(|i| ((i * 7 + 1) % 13) as f64 - 6.0).collect::<Vec<_>>(), (0..d).map(|i| ((i * 5 + 3) % 11) as f64 - 5.0).collect::<Vec<_>>()];
    for _ in 0..100 {
        basis = orthonormal(basis.map(|v| covariance_times(&centred, &v)));
    }
    Ok(rows.iter().zip(&centred).map(|(&r, x)| (r, dot(x, &basis[0]) as f32, dot(x, &basis[1]) as f32)).collect())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// XᵀX v for the rows X.
fn covariance_times(rows: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    rows.par_iter()
        .fold(|| vec![0f64; v.len()], |mut acc, x| {
            let s = dot(x, v);
            acc.iter_mut().zip(x).for_each(|(a, xi)| *a += s * xi);
            acc
        })
        .reduce(|| vec![0f64; v.len()], |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
}

/// Gram-Schmidt on two vectors (a zero vector stays zero: all rows equal).
fn orthonormal([a, b]: [Vec<f64>; 2]) -> [Vec<f64>; 2] {
    let unit = |v: Vec<f64>| {
        let norm = dot(&v, &v).sqrt();
        if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v }
    };
    let a = unit(a);
    let along = dot(&a, &b);
    let b = unit(b.iter().zip(&a).map(|(y, x)| y - along * x).collect());
    [a, b]
}

/// Draws `points` (row, x, y) of `f` into `file` (PNG), coloured by the rows' labels with a legend
/// of `class_names` (unlabelled features in one colour), under `title`.
pub fn draw(points: &[(usize, f32, f32)], f: &Features, class_names: &[String], title: &str, file: &Path) -> Result<()> {
    crate::curves::register_font();
    let (w, h) = (900u32, 720u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let draw_error = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing the map: {e:?}");
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(&e))?;
        let range = |pick: fn(&(usize, f32, f32)) -> f32| {
            let (lo, hi) = points.iter().map(pick).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let pad = ((hi - lo) * 0.05).max(1e-6);
            (lo - pad)..(hi + pad)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(range(|p| p.1), range(|p| p.2))
            .map_err(|e| draw_error(&e))?;
        chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 12)).draw().map_err(|e| draw_error(&e))?;
        let classes = if f.is_labelled() { f.labels.iter().max().map_or(1, |m| m.saturating_add(1)) } else { 1 };
        if classes > MAX_CLASSES {
            bail!("labels up to {}: a map tells at most {MAX_CLASSES} classes apart by colour; the labels are not class indices", classes - 1);
        }
        for class in 0..classes {
            let colour = Palette99::pick(class).to_rgba();
            let mine = points.iter().filter(|(r, _, _)| !f.is_labelled() || f.labels[*r] == class);
            let drawn = chart.draw_series(mine.map(|&(_, x, y)| Circle::new((x, y), 2, colour.filled()))).map_err(|e| draw_error(&e))?;
            if f.is_labelled() {
                let name = class_names.get(class).cloned().unwrap_or_else(|| format!("class {class}"));
                drawn.label(name).legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
            }
        }
        if f.is_labelled() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| draw_error(&e))?;
        }
        root.present().map_err(|e| draw_error(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer holds w × h RGB pixels");
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    }
    img.save(file).with_context(|| format!("{}: cannot write the PNG", file.display()))
}

/// The map of the embeddings `simclr embed` wrote into `dir` (features.npy, labels.npy if any,
/// report.json for the dataset's class names), drawn into `png`; returns the rows drawn.
pub fn plot_folder(dir: &Path, png: &Path) -> Result<usize> {
    let f = super::embed::read(dir)?;
    let report: serde_json::Value = crate::files::read_to_string(&dir.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let kind: Option<crate::data::DatasetKind> = serde_json::from_value(report["settings"]["data"]["dataset"].clone()).ok();
    let names = kind.and_then(crate::data::DatasetKind::class_names).unwrap_or_default();
    let points = pca2(&f)?;
    let title = format!("{} ({} rows of {} values, layer {})", dir.display(), f.n, f.dim, report["metrics"]["layer"].as_str().unwrap_or("?"));
    draw(&points, &f, &names, &title, png)?;
    Ok(points.len())
}
