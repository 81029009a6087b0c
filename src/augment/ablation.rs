//! The augmentation ablation of paper §3.1 (Fig. 4–5, Table 1): the seven transformations it
//! studies, singly and in ordered pairs, under its **one-branch protocol** — "we always first
//! randomly crop images and resize them to the same resolution, and we then apply the targeted
//! transformation(s) only to one branch …, while leaving the other branch as the identity
//! (t(x_i) = x_i)". So both views of an image share one random resized crop (no flip), the first
//! view is that crop, the second is the crop passed through the listed transformations in order.
//!
//! Each targeted transformation is applied every time (probability 1), except the parts of colour
//! distortion that the paper draws with a probability of their own (jitter 0.8, grey 0.2).
//! Parameters, where the paper's Fig. 4 leaves them open, follow the work it cites:
//! - `crop`: random resized crop (area [`AugmentConfig::min_area`]–1, aspect 3/4–4/3) resized back,
//!   then a horizontal flip with p = 0.5 (Fig. 4b–c).
//! - `cutout`: one square of half the view's side, centred uniformly at random and clipped at the
//!   border, set to 0 (DeVries & Taylor 2017, Fig. 4g).
//! - `color`: the colour distortion of the full pipeline at `--color-strength` (Fig. 4d–e).
//! - `sobel`: the Sobel gradient magnitude of the luma, edges replicated, divided by its largest
//!   possible value 4√2 so it stays in [0, 1], in all three channels (Fig. 4j).
//! - `noise`: additive Gaussian noise of standard deviation [`NOISE_STD`] per value, clipped to
//!   [0, 1] (Fig. 4h).
//! - `blur`: the pipeline's Gaussian blur (kernel 10% of the side, σ ∈ [0.1, 2]) (Fig. 4i).
//! - `rotate`: a rotation by 90°, 180° or 270°, drawn uniformly (Fig. 4f).

use super::{augment, color_jitter, gaussian_blur, hflip, resize_bilinear, sample_crop, to_grayscale, AugmentConfig};
use crate::image::Image;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Standard deviation of the `noise` transformation, on values in [0, 1].
pub const NOISE_STD: f32 = 0.1;

/// One transformation of the ablation (Fig. 5's rows and columns, in its order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// Random resized crop and flip.
    Crop,
    /// One square set to zero.
    Cutout,
    /// Colour distortion (jitter and random grey).
    Color,
    /// Sobel edge magnitude.
    Sobel,
    /// Additive Gaussian noise.
    Noise,
    /// Gaussian blur.
    Blur,
    /// Rotation by a multiple of 90°.
    Rotate,
}

impl Transform {
    /// All seven, in the order of the paper's Fig. 5.
    pub const ALL: [Transform; 7] = [Self::Crop, Self::Cutout, Self::Color, Self::Sobel, Self::Noise, Self::Blur, Self::Rotate];

    /// The name used in flags, configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Cutout => "cutout",
            Self::Color => "color",
            Self::Sobel => "sobel",
            Self::Noise => "noise",
            Self::Blur => "blur",
            Self::Rotate => "rotate",
        }
    }

    /// Applies this transformation to `img` (a view of side `cfg.image_size`).
    pub fn apply(self, img: &Image, cfg: &AugmentConfig, rng: &mut impl Rng) -> Image {
        let side = cfg.image_size;
        match self {
            Self::Crop => {
                let out = resize_bilinear(img, sample_crop(img.height, img.width, cfg.min_area, rng), side, side);
                if rng.random::<f32>() < 0.5 { hflip(&out) } else { out }
            }
            Self::Cutout => {
                let half = img.height.min(img.width).div_ceil(2);
                cutout(img, rng.random_range(0..img.height), rng.random_range(0..img.width), half)
            }
            Self::Color => {
                let mut out = img.clone();
                if rng.random::<f32>() < 0.8 {
                    color_jitter(&mut out, cfg.color_strength, rng);
                }
                if rng.random::<f32>() < 0.2 {
                    to_grayscale(&mut out);
                }
                out
            }
            Self::Sobel => sobel(img),
            Self::Noise => gaussian_noise(img, NOISE_STD, rng),
            Self::Blur => gaussian_blur(img, side / 10, rng.random_range(0.1..=2.0f32)),
            Self::Rotate => rotate90(img, rng.random_range(1..=3)),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = if s == "colour" { "color" } else { s };
        Self::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            format!("unknown transformation `{s}`: expected one of {}", Self::ALL.map(Transform::name).join(", "))
        })
    }
}

/// An ordered list of transformations for the one-branch protocol, written `crop,color`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Transforms(pub Vec<Transform>);

impl FromStr for Transforms {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let list = s.split(',').map(str::parse).collect::<Result<Vec<Transform>, String>>().map_err(|e| format!("--one-branch {s}: {e}"))?;
        Ok(Self(list))
    }
}

impl TryFrom<String> for Transforms {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Transforms> for String {
    fn from(t: Transforms) -> String {
        t.to_string()
    }
}

impl fmt::Display for Transforms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.iter().map(|t| t.name()).collect::<Vec<_>>().join(","))
    }
}

/// View `view` of `img` under the one-branch protocol: the shared random resized crop (drawn from
/// `shared`, the same for both views), and for view 1 the transformations of `cfg.one_branch` in
/// order (drawn from `rng`).
pub fn one_branch_view(img: &Image, cfg: &AugmentConfig, view: u64, shared: &mut impl Rng, rng: &mut impl Rng) -> Image {
    let crop = AugmentConfig { crop: true, min_area: cfg.min_area, ..AugmentConfig::identity(cfg.image_size) };
    let base = augment(img, &crop, shared);
    match view {
        0 => base,
        _ => cfg.one_branch.iter().fold(base, |x, t| t.apply(&x, cfg, rng)),
    }
}

/// `img` with the square of side `side` centred at (`cy`, `cx`) — clipped at the border — set to 0.
pub fn cutout(img: &Image, cy: usize, cx: usize, side: usize) -> Image {
    let mut out = img.clone();
    let span = |c: usize, n: usize| c.saturating_sub(side / 2)..(c + side.div_ceil(2)).min(n);
    let (rows, cols) = (span(cy, img.height), span(cx, img.width));
    for plane in out.data.chunks_exact_mut(img.plane()) {
        for y in rows.clone() {
            plane[y * img.width + cols.start..y * img.width + cols.end].fill(0.0);
        }
    }
    out
}

/// The Sobel gradient magnitude `√(gx² + gy²) / (4√2)` of the luma (`tf.image.rgb_to_grayscale`
/// weights), edge pixels replicated, in all three channels.
pub fn sobel(img: &Image) -> Image {
    let mut grey = img.clone();
    to_grayscale(&mut grey);
    let (h, w) = (img.height, img.width);
    let at = |y: isize, x: isize| grey.data[y.clamp(0, h as isize - 1) as usize * w + x.clamp(0, w as isize - 1) as usize];
    let mut out = Image::zeros(h, w);
    let scale = 1.0 / (4.0 * std::f32::consts::SQRT_2);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = at(y - 1, x + 1) + 2.0 * at(y, x + 1) + at(y + 1, x + 1) - at(y - 1, x - 1) - 2.0 * at(y, x - 1) - at(y + 1, x - 1);
            let gy = at(y + 1, x - 1) + 2.0 * at(y + 1, x) + at(y + 1, x + 1) - at(y - 1, x - 1) - 2.0 * at(y - 1, x) - at(y - 1, x + 1);
            let m = (gx * gx + gy * gy).sqrt() * scale;
            for c in 0..3 {
                out.data[(c * h + y as usize) * w + x as usize] = m;
            }
        }
    }
    out
}

/// `img` plus independent Gaussian noise of standard deviation `std` on every value, clipped to
/// [0, 1].
pub fn gaussian_noise(img: &Image, std: f32, rng: &mut impl Rng) -> Image {
    let normal = Normal::new(0.0f32, std).expect("a finite, non-negative standard deviation");
    let data = img.data.iter().map(|&v| (v + normal.sample(rng)).clamp(0.0, 1.0)).collect();
    Image { data, ..*img }
}

/// `img` rotated `quarters` × 90° counter-clockwise (a square view keeps its shape; other images
/// swap height and width).
pub fn rotate90(img: &Image, quarters: u32) -> Image {
    let (h, w) = (img.height, img.width);
    let (oh, ow) = if quarters % 2 == 1 { (w, h) } else { (h, w) };
    let mut out = Image::zeros(oh, ow);
    for c in 0..3 {
        for y in 0..oh {
            for x in 0..ow {
                // Source pixel of output (y, x) for a counter-clockwise rotation.
                let (sy, sx) = match quarters % 4 {
                    0 => (y, x),
                    1 => (x, w - 1 - y),
                    2 => (h - 1 - y, w - 1 - x),
                    _ => (h - 1 - x, y),
                };
                out.data[(c * oh + y) * ow + x] = img.at(c, sy, sx);
            }
        }
    }
    out
}
