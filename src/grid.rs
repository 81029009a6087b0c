//! `simclr augment`: a PNG grid of what the network sees (paper Fig. 3 and 4): the original image,
//! then one row per operation — crop (with flip), colour distortion, blur, crop + colour, and the
//! full pipeline — and a row of independently drawn view pairs.

use crate::augment::{augment, view_rng, AugmentConfig};
use crate::image::Image;
use anyhow::{Context, Result};
use std::path::Path;

/// The rows of the grid: a name and the pipeline that draws its samples.
pub fn rows(full: &AugmentConfig) -> Vec<(&'static str, AugmentConfig)> {
    let none = AugmentConfig::identity(full.image_size);
    let strength = full.color_strength.max(0.5);
    let colour = AugmentConfig { color_strength: strength, color_prob: 1.0, gray_prob: full.gray_prob, ..none.clone() };
    vec![
        ("crop", AugmentConfig { crop: true, min_area: full.min_area, flip: true, ..none.clone() }),
        ("colour", colour.clone()),
        ("blur", AugmentConfig { blur: true, blur_prob: 1.0, ..none.clone() }),
        ("crop+colour", AugmentConfig { crop: true, min_area: full.min_area, flip: true, ..colour }),
        ("full", full.clone()),
    ]
}

/// Draws the grid for `img`: each row starts with the original, then `samples` augmentations;
/// the last row holds `samples / 2` pairs of views of one draw each. Cells are upscaled
/// (nearest neighbour) to at least 96 px and separated by 2 px white lines.
pub fn render(img: &Image, full: &AugmentConfig, samples: usize, seed: u64) -> image::RgbImage {
    let side = full.image_size;
    let mut rows: Vec<Vec<Image>> = rows(full)
        .into_iter()
        .enumerate()
        .map(|(r, (_, cfg))| {
            let mut row = vec![augment(img, &AugmentConfig::identity(side), &mut view_rng(seed, 0, 0, 0))];
            row.extend((0..samples).map(|k| augment(img, &cfg, &mut view_rng(seed, r as u64 + 1, k as u64, 0))));
            row
        })
        .collect();
    let mut pairs = vec![augment(img, &AugmentConfig::identity(side), &mut view_rng(seed, 0, 0, 0))];
    for k in 0..samples / 2 {
        pairs.extend((0..2).map(|v| augment(img, full, &mut view_rng(seed, 99, k as u64, v))));
    }
    rows.push(pairs);
    tile(&rows, side)
}

/// The two views of the first `count` images of a loader's batch (`pixels`: `[2n, 3, side, side]`,
/// first views then second views, [`crate::views`]): first views in the top row, each image's
/// second view below it. What TensorBoard shows of a run's first batch.
pub fn batch_views(pixels: &[f32], side: usize, count: usize) -> image::RgbImage {
    let plane = 3 * side * side;
    let n = pixels.len() / plane / 2;
    let view = |row: usize| Image { height: side, width: side, data: pixels[row * plane..(row + 1) * plane].to_vec() };
    let rows: Vec<Vec<Image>> = (0..2).map(|v| (0..count.min(n)).map(|i| view(v * n + i)).collect()).collect();
    tile(&rows, side)
}

/// `rows` of views of side `side` laid out on white, each scaled up to about 96 px.
fn tile(rows: &[Vec<Image>], side: usize) -> image::RgbImage {
    let scale = 96usize.div_ceil(side).max(1);
    let cell = side * scale;
    let gap = 2;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1);
    let (w, h) = (cols * (cell + gap) + gap, rows.len() * (cell + gap) + gap);
    let mut out = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, view) in row.iter().enumerate() {
            let px = view.to_u8_hwc();
            for y in 0..cell {
                for x in 0..cell {
                    let s = ((y / scale) * side + x / scale) * 3;
                    let (ox, oy) = (gap + c * (cell + gap) + x, gap + r * (cell + gap) + y);
                    out.put_pixel(ox as u32, oy as u32, image::Rgb([px[s], px[s + 1], px[s + 2]]));
                }
            }
        }
    }
    out
}

/// Renders the grid and writes it as PNG to `file`.
pub fn write(img: &Image, full: &AugmentConfig, samples: usize, seed: u64, file: &Path) -> Result<()> {
    crate::config::check::nonzero("--samples", samples)?;
    crate::config::check::at_most("--samples", samples, 64, "augmentations a row")?;
    crate::config::check::at_most("--image-size", full.image_size, crate::config::check::MAX_IMAGE_SIZE, "pixels a side")?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    render(img, full, samples, seed).save(file).with_context(|| format!("writing {}", file.display()))
}

/// Reads an image file as an [`Image`].
pub fn load_file(file: &Path) -> Result<Image> {
    let img = crate::data::folder::read_image(file).with_context(|| format!("--image {}: cannot read it as an image", file.display()))?;
    let (w, h) = img.dimensions();
    Ok(Image::from_u8_hwc(img.as_raw(), h as usize, w as usize, 3))
}
