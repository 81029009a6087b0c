//! SimCLR data augmentation (paper §3 and Appendix A; official `data_util.py`).
//!
//! One view is: random resized crop + resize back to the training size, horizontal flip with
//! p = 0.5, colour distortion with p = 0.8 (brightness, contrast, saturation, hue in random order,
//! clipped to `[0, 1]` after each op, strength `s`: 0.8s / 0.8s / 0.8s / 0.2s), random grayscale with
//! p = 0.2, and Gaussian blur with p = 0.5 (kernel 10% of the image side, σ ∈ [0.1, 2.0]).
//!
//! Choices where the references differ, documented here once:
//! - **Crop**: torchvision's `RandomResizedCrop` sampling (area 0.08–1, log-uniform aspect 3/4–4/3,
//!   10 attempts, then a centre crop clamped to the aspect range), resized with **bilinear**
//!   interpolation (half-pixel centres, no antialiasing since crops are only ever upsampled or
//!   mildly downsampled).
//! - **Brightness**: the v2 multiplicative form (`x · U[max(0, 1 − b), 1 + b]`), the official default.
//! - **Blur padding**: reflect, so a constant image stays constant (the official code zero-pads).
//! - **No colour distortion** (`s = 0`, the official `color_distort=False`): neither jitter nor the
//!   random grayscale, which is part of the colour distortion.
//! - **Evaluation** ([`AugmentConfig::eval`], official `preprocess_for_eval`): for views over 32 px a
//!   centre crop of 87.5% of the shorter side, resized, so non-square images are not distorted;
//!   32 px and under, the whole image resized.
//! - **Resize** ([`Resize`]): bilinear by default; `bicubic` is TF1's `resize_bicubic` as the
//!   official code calls it (for crops and evaluation), which networks imported from its
//!   checkpoints record.
//!
//! Every view is drawn from its own RNG seeded by `(seed, epoch, index, view)`, so the views do not
//! depend on thread scheduling and a resumed run sees exactly the views an unbroken run would.
//!
//! [`ablation`] holds the paper's augmentation ablation (§3.1): its seven transformations and the
//! one-branch protocol, chosen by [`AugmentConfig::one_branch`].

pub mod ablation;

use crate::image::Image;
use multiversion::multiversion;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The random crop's smallest area as a fraction of the image in the paper (and torchvision).
pub const PAPER_MIN_CROP_AREA: f32 = 0.08;

/// Which augmentations to apply and how strongly (defaults: the paper's full pipeline).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Output side in pixels (views are square).
    pub image_size: usize,
    /// Random resized crop; without it the whole image (or its [`center_crop`](Self::center_crop))
    /// is resized.
    pub crop: bool,
    /// Without the random crop: a centred square of this fraction of the shorter side
    /// (evaluation's 0.875); `None` resizes the whole image.
    pub center_crop: Option<f32>,
    /// Smallest crop area as a fraction of the image (paper: 0.08).
    pub min_area: f32,
    /// Horizontal flip with p = 0.5.
    pub flip: bool,
    /// Colour distortion strength `s` (paper: 1.0 ImageNet, 0.5 CIFAR); 0 disables it.
    pub color_strength: f32,
    /// Probability of applying colour jitter (paper: 0.8).
    pub color_prob: f32,
    /// Probability of converting to grayscale (paper: 0.2); part of the colour distortion.
    pub gray_prob: f32,
    /// Gaussian blur with p = `blur_prob`.
    pub blur: bool,
    /// Probability of blurring (paper: 0.5).
    pub blur_prob: f32,
    /// The ablation's one-branch protocol ([`ablation`]) when not empty: both views share one
    /// random crop and only the second gets these transformations, in order; the fields above
    /// other than the size, crop area and colour strength are then unused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_branch: Vec<ablation::Transform>,
    /// How crops are resized to the output side.
    #[serde(default)]
    pub resize: Resize,
}

/// How a crop is resized to the view's side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Bilinear, half-pixel centres (torchvision's).
    #[default]
    Bilinear,
    /// TF1's `tf.image.resize_bicubic` as the official code calls it ([`resize_bicubic`]), then
    /// clipped to [0, 1] as its `preprocess_for_eval`.
    Bicubic,
}

impl AugmentConfig {
    /// The paper's pipeline for `image_size` with colour strength `s` (0: no colour distortion at
    /// all, grayscale included); blur is on only for images larger than 32 px, as in the paper's
    /// CIFAR setting.
    pub fn simclr(image_size: usize, color_strength: f32) -> Self {
        Self {
            image_size,
            crop: true,
            center_crop: None,
            min_area: PAPER_MIN_CROP_AREA,
            flip: true,
            color_strength,
            color_prob: 0.8,
            gray_prob: if color_strength > 0.0 { 0.2 } else { 0.0 },
            blur: image_size > 32,
            blur_prob: 0.5,
            one_branch: Vec::new(),
            resize: Resize::Bilinear,
        }
    }

    /// No augmentation: the whole image resized to `image_size`.
    pub fn identity(image_size: usize) -> Self {
        Self {
            image_size,
            crop: false,
            center_crop: None,
            min_area: 1.0,
            flip: false,
            color_strength: 0.0,
            color_prob: 0.0,
            gray_prob: 0.0,
            blur: false,
            blur_prob: 0.0,
            one_branch: Vec::new(),
            resize: Resize::Bilinear,
        }
    }

    /// Evaluation preprocessing (official `preprocess_for_eval`): for `image_size` over 32 px a centre
    /// crop of [`EVAL_CROP_PROPORTION`] of the shorter side, resized; otherwise the whole image.
    pub fn eval(image_size: usize) -> Self {
        Self { center_crop: (image_size > 32).then_some(EVAL_CROP_PROPORTION), ..Self::identity(image_size) }
    }
}

/// The official `CROP_PROPORTION`: evaluation's centre crop keeps 87.5% of the shorter side.
pub const EVAL_CROP_PROPORTION: f32 = 0.875;
/// The paper's view side on ImageNet, and the largest the views take by default.
pub const MAX_DEFAULT_VIEW_SIDE: usize = 224;

/// The side of the square views of images of `height` × `width` when `--image-size` is 0 (the
/// dataset's own size): the image's longer side, at most [`MAX_DEFAULT_VIEW_SIDE`].
pub fn default_view_side(height: usize, width: usize) -> usize {
    height.max(width).min(MAX_DEFAULT_VIEW_SIDE)
}


/// The centred square the official `center_crop` takes for square outputs: side
/// `rint(proportion · shorter side)`, offsets `(excess + 1) / 2`.
pub fn center_square(height: usize, width: usize, proportion: f32) -> Crop {
    let side = ((proportion * height.min(width) as f32).round_ties_even() as usize).clamp(1, height.min(width));
    Crop { top: (height - side).div_ceil(2), left: (width - side).div_ceil(2), height: side, width: side }
}

/// The RNG of one view: a pure function of `(seed, epoch, index, view)`.
pub fn view_rng(seed: u64, epoch: u64, index: u64, view: u64) -> ChaCha8Rng {
    let mut h = seed;
    for part in [epoch, index, view] {
        h = splitmix64(h ^ splitmix64(part.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// SplitMix64 finaliser, used to mix seed parts into one well-spread 64-bit seed.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG stream of the crop that both views share under the one-branch protocol.
const SHARED_VIEW: u64 = u64::MAX;

/// View `view` of image `index` in `epoch`: the configured pipeline drawn from
/// [`view_rng`]`(seed, epoch, index, view)`, or under the one-branch protocol
/// ([`AugmentConfig::one_branch`]) the crop shared by both views, transformed on view 1 only.
pub fn draw_view(img: &Image, cfg: &AugmentConfig, seed: u64, epoch: u64, index: u64, view: u64) -> Image {
    let mut rng = view_rng(seed, epoch, index, view);
    match cfg.one_branch.is_empty() {
        true => augment(img, cfg, &mut rng),
        false => ablation::one_branch_view(img, cfg, view, &mut view_rng(seed, epoch, index, SHARED_VIEW), &mut rng),
    }
}

/// Applies the configured pipeline to `img` once.
pub fn augment(img: &Image, cfg: &AugmentConfig, rng: &mut impl Rng) -> Image {
    let region = match (cfg.crop, cfg.center_crop) {
        (true, _) => sample_crop(img.height, img.width, cfg.min_area, rng),
        (false, Some(proportion)) => center_square(img.height, img.width, proportion),
        (false, None) => Crop { top: 0, left: 0, height: img.height, width: img.width },
    };
    let mut out = match cfg.resize {
        Resize::Bilinear => resize_bilinear(img, region, cfg.image_size, cfg.image_size),
        Resize::Bicubic => {
            let mut out = resize_bicubic(img, region, cfg.image_size, cfg.image_size);
            clip_unit(&mut out);
            out
        }
    };
    if cfg.flip && rng.random::<f32>() < 0.5 {
        mirror_rows(&mut out);
    }
    if cfg.color_strength > 0.0 && rng.random::<f32>() < cfg.color_prob {
        color_jitter(&mut out, cfg.color_strength, rng);
    }
    if rng.random::<f32>() < cfg.gray_prob {
        to_grayscale(&mut out);
    }
    if cfg.blur && rng.random::<f32>() < cfg.blur_prob {
        let sigma = rng.random_range(0.1..=2.0f32);
        out = gaussian_blur(&out, cfg.image_size / 10, sigma);
    }
    out
}

/// A crop rectangle in pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Number of rows.
    pub height: usize,
    /// Number of columns.
    pub width: usize,
}

/// Samples a random resized crop as torchvision does: area fraction in `[min_area, 1]`, aspect ratio
/// log-uniform in `[3/4, 4/3]`, 10 attempts, then a centre crop clamped to that aspect range.
pub fn sample_crop(height: usize, width: usize, min_area: f32, rng: &mut impl Rng) -> Crop {
    const RATIO: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);
    let area = (height * width) as f32;
    let (log_lo, log_hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(min_area.min(1.0)..=1.0);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if (1..=width).contains(&w) && (1..=height).contains(&h) {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Crop { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f32 / height as f32;
    let (h, w) = if in_ratio < RATIO.0 {
        ((width as f32 / RATIO.0).round() as usize, width)
    } else if in_ratio > RATIO.1 {
        (height, (height as f32 * RATIO.1).round() as usize)
    } else {
        (height, width)
    };
    Crop { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// Bilinear resize of the `crop` region of `img` to `out_h × out_w` (half-pixel centres, edge clamp).
pub fn resize_bilinear(img: &Image, crop: Crop, out_h: usize, out_w: usize) -> Image {
    let mut out = Image::zeros(out_h, out_w);
    let sy = crop.height as f32 / out_h as f32;
    let sx = crop.width as f32 / out_w as f32;
    let axis = |o: usize, scale: f32, start: usize, len: usize| {
        let src = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let i0 = src.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (start + i0, start + i1, src - i0 as f32)
    };
    let xs: Vec<_> = (0..out_w).map(|x| axis(x, sx, crop.left, crop.width)).collect();
    let ys: Vec<_> = (0..out_h).map(|y| axis(y, sy, crop.top, crop.height)).collect();
    resize_planes(img, &xs, &ys, &mut out);
    out
}

/// TensorFlow's legacy bicubic resize of the `crop` region of `img` to `out_h × out_w`
/// (`tf.compat.v1.image.resize_bicubic` with `align_corners` and `half_pixel_centers` off, as the
/// official `center_crop` and `crop_and_resize` call it): output pixel `o` samples the source at
/// `o · in/out` (no half-pixel shift), Keys' cubic with a = −0.75 weighs its four neighbours
/// (clamped to the edge), at the fraction rounded to 1/1024 as TensorFlow's coefficient table.
/// Values can overshoot [0, 1].
pub fn resize_bicubic(img: &Image, crop: Crop, out_h: usize, out_w: usize) -> Image {
    const TABLE: f32 = 1024.0;
    const A: f32 = -0.75;
    // Keys' kernel at distance x ∈ [0, 1] and x + 1 ∈ [1, 2].
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| {
        let x = x + 1.0;
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    };
    let taps = |out: usize, start: usize, len: usize| -> Vec<([usize; 4], [f32; 4])> {
        let scale = len as f32 / out as f32;
        (0..out)
            .map(|o| {
                let at = o as f32 * scale;
                let floor = at.floor();
                let step = ((at - floor) * TABLE).round_ties_even();
                let (d, e) = (step / TABLE, (TABLE - step) / TABLE);
                let index = |k: isize| start + (floor as isize + k).clamp(0, len as isize - 1) as usize;
                ([index(-1), index(0), index(1), index(2)], [far(d), near(d), near(e), far(e)])
            })
            .collect()
    };
    let (xs, ys) = (taps(out_w, crop.left, crop.width), taps(out_h, crop.top, crop.height));
    let mut out = Image::zeros(out_h, out_w);
    let (in_plane, w) = (img.plane(), img.width);
    for (src, dst) in img.data.chunks_exact(in_plane).zip(out.data.chunks_exact_mut(out_h * out_w)) {
        for ((rows, wy), line) in ys.iter().zip(dst.chunks_exact_mut(out_w)) {
            for ((cols, wx), d) in xs.iter().zip(line.iter_mut()) {
                let across = |r: usize| (0..4).map(|k| wx[k] * src[r * w + cols[k]]).sum::<f32>();
                *d = (0..4).map(|k| wy[k] * across(rows[k])).sum();
            }
        }
    }
    out
}

/// The interpolation loop of [`resize_bilinear`]: channel planes outside, output pixels of a row
/// inside, so each output row is written contiguously.
#[multiversion(targets = "simd")]
fn resize_planes(img: &Image, xs: &[(usize, usize, f32)], ys: &[(usize, usize, f32)], out: &mut Image) {
    let (in_plane, out_w) = (img.plane(), out.width);
    for (src, dst) in img.data.chunks_exact(in_plane).zip(out.data.chunks_exact_mut(ys.len() * out_w)) {
        for (&(y0, y1, fy), row) in ys.iter().zip(dst.chunks_exact_mut(out_w)) {
            let (r0, r1) = (&src[y0 * img.width..][..img.width], &src[y1 * img.width..][..img.width]);
            for (d, &(x0, x1, fx)) in row.iter_mut().zip(xs) {
                let top = r0[x0] * (1.0 - fx) + r0[x1] * fx;
                let bottom = r1[x0] * (1.0 - fx) + r1[x1] * fx;
                *d = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

/// Mirrors the image left to right.
pub fn hflip(img: &Image) -> Image {
    let mut out = img.clone();
    mirror_rows(&mut out);
    out
}

fn mirror_rows(img: &mut Image) {
    for row in img.data.chunks_mut(img.width) {
        row.reverse();
    }
}

/// Colour jitter with strength `s` (official `color_jitter_rand`): brightness, contrast and
/// saturation factors up to 0.8s, hue shift up to 0.2s, applied in a random order, each result
/// clipped to `[0, 1]`. An op whose strength is 0 is skipped, so `s = 0` is the identity.
pub fn color_jitter(img: &mut Image, s: f32, rng: &mut impl Rng) {
    let (b, c, sat, hue) = (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s);
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    for op in order {
        match op {
            0 if b > 0.0 => scale_pixels(img, rng.random_range((1.0 - b).max(0.0)..=1.0 + b)),
            1 if c > 0.0 => adjust_contrast(img, rng.random_range((1.0 - c).max(0.0)..=1.0 + c)),
            2 if sat > 0.0 => adjust_saturation(img, rng.random_range((1.0 - sat).max(0.0)..=1.0 + sat)),
            3 if hue > 0.0 => shift_hue(img, rng.random_range(-hue.min(0.5)..=hue.min(0.5))),
            _ => {}
        }
        clip_unit(img);
    }
}

/// Clips every value to `[0, 1]`.
#[multiversion(targets = "simd")]
fn clip_unit(img: &mut Image) {
    for v in &mut img.data {
        *v = v.clamp(0.0, 1.0);
    }
}

/// Multiplies every value by `factor` (brightness).
#[multiversion(targets = "simd")]
fn scale_pixels(img: &mut Image, factor: f32) {
    for v in &mut img.data {
        *v *= factor;
    }
}

/// `tf.image.adjust_contrast`: each channel moved away from its own mean by `factor`.
#[multiversion(targets = "simd")]
fn adjust_contrast(img: &mut Image, factor: f32) {
    let plane = img.plane();
    for channel in img.data.chunks_mut(plane) {
        let mean = channel.iter().sum::<f32>() / plane as f32;
        for v in channel {
            *v = (*v - mean) * factor + mean;
        }
    }
}

/// Applies `f` to the (r, g, b) values of every pixel, channel planes walked in lockstep. Always
/// inlined, so the loop is compiled for the SIMD target of its multiversioned caller.
#[inline(always)]
fn for_each_pixel(img: &mut Image, mut f: impl FnMut(&mut f32, &mut f32, &mut f32)) {
    let plane = img.plane();
    let (r, rest) = img.data.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        f(r, g, b);
    }
}

/// `tf.image.adjust_saturation`: HSV saturation times `factor`, clipped to `[0, 1]`. Hue and value
/// are unchanged, so each channel moves along `V − (V − c)·S'/S` — computed without the round trip.
#[multiversion(targets = "simd")]
pub fn adjust_saturation(img: &mut Image, factor: f32) {
    // Branch-free so the loop vectorises: a grey pixel (S = 0) has every channel equal to V, so
    // any ratio leaves it unchanged.
    for_each_pixel(img, |r, g, b| {
        let v = r.max(*g).max(*b);
        let s = (v - r.min(*g).min(*b)) / v.max(f32::MIN_POSITIVE);
        let ratio = (s * factor).clamp(0.0, 1.0) / s.max(f32::MIN_POSITIVE);
        *r = v - (v - *r) * ratio;
        *g = v - (v - *g) * ratio;
        *b = v - (v - *b) * ratio;
    });
}

/// `tf.image.adjust_hue`: rotates the HSV hue by `delta` (in turns, `[-0.5, 0.5]`). Value V and
/// chroma C = V − min are kept, so each channel is `V − C·clamp(min(k, 4 − k), 0, 1)` with
/// `k = (n + 6h') mod 6`, n = 5, 3, 1 for R, G, B — the branch-free form of HSV → RGB.
#[multiversion(targets = "simd")]
pub fn shift_hue(img: &mut Image, delta: f32) {
    // Branch-free so the loop vectorises: a grey pixel (C = 0) comes out as V in every channel.
    for_each_pixel(img, |r, g, b| {
        let v = r.max(*g).max(*b);
        let c = v - r.min(*g).min(*b);
        let inv = 1.0 / c.max(f32::MIN_POSITIVE);
        let h6 = if v == *r {
            (*g - *b) * inv
        } else if v == *g {
            (*b - *r) * inv + 2.0
        } else {
            (*r - *g) * inv + 4.0
        };
        // h6 + 6δ lies in [-4, 9): wrap into [0, 6) without `fmod`, which dominated the cost.
        let mut h6 = h6 + 6.0 * delta;
        h6 += if h6 < 0.0 { 6.0 } else if h6 >= 6.0 { -6.0 } else { 0.0 };
        let channel = |n: f32| {
            let k = n + h6;
            let k = if k >= 6.0 { k - 6.0 } else { k };
            v - c * k.min(4.0 - k).clamp(0.0, 1.0)
        };
        (*r, *g, *b) = (channel(5.0), channel(3.0), channel(1.0));
    });
}

/// Replaces each pixel by its luma (`tf.image.rgb_to_grayscale` weights) in all three channels.
#[multiversion(targets = "simd")]
pub fn to_grayscale(img: &mut Image) {
    for_each_pixel(img, |r, g, b| {
        let y = 0.2989 * *r + 0.5870 * *g + 0.1140 * *b;
        (*r, *g, *b) = (y, y, y);
    });
}

/// `dst[x] = Σ_k weights[k] · taps[k][x]`, summed in tap order. Sixteen outputs at a time stay in
/// registers across all taps, so each tap costs one load and one multiply-add per vector instead of
/// a pass over `dst` in memory. Always inlined into the multiversioned blur.
#[inline(always)]
fn weighted_sum(dst: &mut [f32], taps: &[&[f32]], weights: &[f32]) {
    const LANES: usize = 16;
    let full = dst.len() / LANES * LANES;
    for (c, d) in dst[..full].chunks_exact_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        for (tap, &wk) in taps.iter().zip(weights) {
            let src: &[f32; LANES] = tap[c * LANES..(c + 1) * LANES].try_into().expect("a full chunk");
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += wk * v;
            }
        }
        d.copy_from_slice(&acc);
    }
    for (x, d) in dst.iter_mut().enumerate().skip(full) {
        *d = taps.iter().zip(weights).fold(0.0, |a, (tap, &wk)| a + wk * tap[x]);
    }
}

/// Separable Gaussian blur with a `2 * (kernel_size / 2) + 1` tap kernel of std `sigma`
/// (official: kernel 10% of the side), reflect padding.
#[multiversion(targets = "simd")]
pub fn gaussian_blur(img: &Image, kernel_size: usize, sigma: f32) -> Image {
    let radius = kernel_size / 2;
    if radius == 0 {
        return img.clone();
    }
    let weights: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| w / total).collect();
    let (h, w) = (img.height, img.width);
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as usize
    };
    let mut tmp = Image::zeros(h, w);
    let mut out = Image::zeros(h, w);
    let mut padded = vec![0f32; w + 2 * radius];
    for (src, dst) in img.data.chunks_exact(w).zip(tmp.data.chunks_exact_mut(w)) {
        // Only the 2·radius border values need `reflect` (an integer division each).
        padded[radius..radius + w].copy_from_slice(src);
        for j in (0..radius).chain(radius + w..w + 2 * radius) {
            padded[j] = src[reflect(j as isize - radius as isize, w)];
        }
        let taps: Vec<&[f32]> = (0..weights.len()).map(|k| &padded[k..k + w]).collect();
        weighted_sum(dst, &taps, &weights);
    }
    for (plane, planes_out) in tmp.data.chunks_exact(h * w).zip(out.data.chunks_exact_mut(h * w)) {
        for (y, dst) in planes_out.chunks_exact_mut(w).enumerate() {
            let taps: Vec<&[f32]> = (0..weights.len()).map(|k| &plane[reflect(y as isize + k as isize - radius as isize, h) * w..][..w]).collect();
            weighted_sum(dst, &taps, &weights);
        }
    }
    out
}
