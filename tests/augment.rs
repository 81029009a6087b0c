//! Invariants of the augmentations (paper App. A).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use simclr::augment::*;
use simclr::augment::ablation;
use simclr::image::Image;

fn test_image(h: usize, w: usize) -> Image {
    let mut img = Image::zeros(h, w);
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = ((i * 37 + 11) % 256) as f32 / 255.0;
    }
    img
}

#[test]
fn crop_area_and_aspect_stay_within_bounds() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for ((h, w), min_area) in [(28, 28), (32, 32), (96, 96), (375, 500)].into_iter().flat_map(|s| [(s, 0.08), (s, 0.2)]) {
        let area = (h * w) as f64;
        let mut smallest = 1.0f64;
        for _ in 0..2000 {
            let c = sample_crop(h, w, min_area as f32, &mut rng);
            assert!(c.top + c.height <= h && c.left + c.width <= w, "{c:?} leaves the image {h}x{w}");
            assert!(c.height >= 1 && c.width >= 1);
            let frac = (c.height * c.width) as f64 / area;
            let aspect = c.width as f64 / c.height as f64;
            let full = c.height == h && c.width == w;
            // Rounding to whole pixels widens the bounds by about one pixel per side.
            let slack_h = 1.0 / c.height as f64;
            let slack_w = 1.0 / c.width as f64;
            assert!(full || frac >= min_area * (1.0 - slack_h) * (1.0 - slack_w), "area fraction {frac} below {min_area}");
            smallest = smallest.min(frac);
            assert!(full || (aspect >= 0.75 * (1.0 - slack_w) / (1.0 + slack_h) && aspect <= (4.0 / 3.0) * (1.0 + slack_w) / (1.0 - slack_h)), "aspect {aspect} of {c:?}");
        }
        // 2000 draws reach close to the lower bound, so the bound is the one asked for.
        assert!(smallest < min_area * 1.3, "{h}x{w}: smallest area fraction {smallest} for min_area {min_area}");
    }
}

#[test]
fn flip_is_an_exact_mirror() {
    let img = test_image(5, 7);
    let f = hflip(&img);
    for c in 0..3 {
        for y in 0..5 {
            for x in 0..7 {
                assert_eq!(f.at(c, y, x), img.at(c, y, 6 - x));
            }
        }
    }
    assert_eq!(hflip(&f), img);
}

#[test]
fn jitter_with_strength_zero_is_the_identity() {
    let img = test_image(16, 16);
    let mut out = img.clone();
    color_jitter(&mut out, 0.0, &mut ChaCha8Rng::seed_from_u64(3));
    assert_eq!(out, img);
}

#[test]
fn jitter_changes_colours_and_stays_in_range() {
    let img = test_image(16, 16);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut changed = 0;
    for _ in 0..20 {
        let mut out = img.clone();
        color_jitter(&mut out, 1.0, &mut rng);
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
        changed += (out != img) as usize;
    }
    assert_eq!(changed, 20);
}

#[test]
fn hsv_round_trip() {
    for &(r, g, b) in &[(0.2f32, 0.4, 0.9), (1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.0, 0.7, 0.3), (0.9, 0.1, 0.6)] {
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let (r2, g2, b2) = hsv_to_rgb(h, s, v);
        assert!((r - r2).abs() < 1e-6 && (g - g2).abs() < 1e-6 && (b - b2).abs() < 1e-6);
    }
}

#[test]
fn grayscale_has_equal_channels_with_the_luma_weights() {
    let mut img = test_image(6, 6);
    let before = img.clone();
    to_grayscale(&mut img);
    let p = img.plane();
    for i in 0..p {
        assert_eq!(img.data[i], img.data[p + i]);
        assert_eq!(img.data[i], img.data[2 * p + i]);
        let y = 0.2989 * before.data[i] + 0.5870 * before.data[p + i] + 0.1140 * before.data[2 * p + i];
        assert!((img.data[i] - y).abs() < 1e-6);
    }
}

#[test]
fn blur_preserves_a_constant_image_and_smooths_an_edge() {
    let mut img = Image::zeros(32, 32);
    img.data.iter_mut().for_each(|v| *v = 0.37);
    let out = gaussian_blur(&img, 10, 1.5);
    assert!(out.data.iter().all(|v| (v - 0.37).abs() < 1e-6));

    let mut edge = Image::zeros(32, 32);
    for c in 0..3 {
        for y in 0..32 {
            for x in 16..32 {
                edge.data[(c * 32 + y) * 32 + x] = 1.0;
            }
        }
    }
    let out = gaussian_blur(&edge, 10, 1.5);
    assert!(out.at(0, 10, 15) > 0.1 && out.at(0, 10, 16) < 0.9, "the edge is smoothed");
    let sum_in: f32 = edge.data.iter().sum();
    let sum_out: f32 = out.data.iter().sum();
    assert!((sum_in - sum_out).abs() / sum_in < 1e-4, "reflect padding keeps the mass of a symmetric edge");
}

#[test]
fn blur_equals_a_direct_two_dimensional_convolution() {
    // Odd sides exercise the partial vector chunks; the kernel wider than 16 the tap loop.
    let (h, w, size, sigma) = (23, 37, 20, 1.7f64);
    let img = test_image(h, w);
    let r = size as isize / 2;
    let g: Vec<f64> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = g.iter().sum();
    let reflect = |i: isize, n: usize| -> usize {
        let p = 2 * (n as isize - 1);
        let m = i.rem_euclid(p);
        (if m < n as isize { m } else { p - m }) as usize
    };
    let out = gaussian_blur(&img, size, sigma as f32);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let mut want = 0.0;
                for (i, dy) in (-r..=r).enumerate() {
                    for (j, dx) in (-r..=r).enumerate() {
                        want += g[i] * g[j] / (total * total) * img.at(c, reflect(y as isize + dy, h), reflect(x as isize + dx, w)) as f64;
                    }
                }
                assert!((out.at(c, y, x) as f64 - want).abs() < 1e-5, "({c}, {y}, {x}): {} vs {want}", out.at(c, y, x));
            }
        }
    }
}

#[test]
fn full_pipeline_outputs_are_in_range_and_sized() {
    let img = test_image(28, 28);
    for (size, blur) in [(28, false), (64, true)] {
        let mut cfg = AugmentConfig::simclr(size, 1.0);
        cfg.blur = blur;
        for i in 0..50 {
            let v = augment(&img, &cfg, &mut view_rng(0, 0, i, 0));
            assert_eq!((v.height, v.width, v.data.len()), (size, size, 3 * size * size));
            assert!(v.data.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }
}

#[test]
fn same_seed_same_views_different_seed_different_views() {
    let img = test_image(28, 28);
    let cfg = AugmentConfig::simclr(28, 1.0);
    let a = augment(&img, &cfg, &mut view_rng(7, 2, 5, 0));
    let b = augment(&img, &cfg, &mut view_rng(7, 2, 5, 0));
    assert_eq!(a, b);
    let other_seed = augment(&img, &cfg, &mut view_rng(8, 2, 5, 0));
    let other_view = augment(&img, &cfg, &mut view_rng(7, 2, 5, 1));
    assert_ne!(a, other_seed);
    assert_ne!(a, other_view, "the two views of a pair are drawn independently");
}

#[test]
fn identity_config_keeps_the_image() {
    let img = test_image(28, 28);
    let out = augment(&img, &AugmentConfig::identity(28), &mut view_rng(0, 0, 0, 0));
    for (a, b) in img.data.iter().zip(&out.data) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn saturation_shortcut_matches_the_hsv_round_trip() {
    for &(r, g, b, f) in &[(0.2f32, 0.4, 0.9, 0.5f32), (0.9, 0.1, 0.6, 1.7), (0.3, 0.3, 0.31, 3.0), (0.5, 0.2, 0.2, 0.0), (0.4, 0.4, 0.4, 2.0), (0.0, 0.0, 0.0, 1.5)] {
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let want = hsv_to_rgb(h, (s * f).clamp(0.0, 1.0), v);
        let mut img = Image::zeros(1, 1);
        img.data = vec![r, g, b];
        adjust_saturation(&mut img, f);
        assert!((img.data[0] - want.0).abs() < 1e-5 && (img.data[1] - want.1).abs() < 1e-5 && (img.data[2] - want.2).abs() < 1e-5, "{r},{g},{b} x{f}: {:?} vs {want:?}", img.data);
    }
}

#[test]
fn hue_shift_matches_the_hsv_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Grey and black pixels (no chroma) first: they must come out unchanged.
    let fixed = [(0.6f32, 0.6f32, 0.6f32), (0.0, 0.0, 0.0)].into_iter();
    let random = std::iter::repeat_with(|| (rand::Rng::random(&mut rng), rand::Rng::random(&mut rng), rand::Rng::random(&mut rng))).take(2000).collect::<Vec<_>>();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for (r, g, b) in fixed.chain(random) {
        let d: f32 = rand::Rng::random_range(&mut rng, -0.5..=0.5);
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let want = hsv_to_rgb((h + d).rem_euclid(1.0), s, v);
        let mut img = Image::zeros(1, 1);
        img.data = vec![r, g, b];
        shift_hue(&mut img, d);
        for (got, want) in img.data.iter().zip([want.0, want.1, want.2]) {
            assert!((got - want).abs() < 1e-5, "rgb ({r}, {g}, {b}) shifted by {d}: {:?} vs {want:?}", img.data);
        }
    }
}

// Reference HSV conversions (hue in [0, 1)), as tf.image's, to check the closed forms against.

/// RGB in `[0, 1]` to HSV with hue in `[0, 1)`.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta <= 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

/// HSV (hue in `[0, 1)`) back to RGB.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    (r + m, g + m, b + m)
}

#[test]
fn crop_min_area_setting_reaches_the_pipeline() {
    use simclr::config::{AugmentArgs, Config, ConfigArgs};
    let args = ConfigArgs { augment: AugmentArgs { crop_min_area: Some(0.2), ..Default::default() }, ..Default::default() };
    let cfg = Config::resolve(None, &args).unwrap();
    assert_eq!(cfg.augment(28).min_area, 0.2);
    assert_eq!(Config::default().augment(28).min_area, 0.08, "the paper's default");
}

#[test]
fn colour_strength_zero_means_no_colour_distortion_at_all() {
    // Official `color_distort=False`: neither jitter nor the random grayscale that belongs to it.
    let img = test_image(16, 16);
    let cfg = AugmentConfig { crop: false, flip: false, ..AugmentConfig::simclr(16, 0.0) };
    assert_eq!(cfg.gray_prob, 0.0);
    for v in 0..200 {
        assert_eq!(augment(&img, &cfg, &mut view_rng(1, 0, 0, v)), img, "view {v} changed colours");
    }
    // With any strength, about 20% of views are grey.
    let cfg = AugmentConfig { crop: false, flip: false, color_prob: 0.0, ..AugmentConfig::simclr(16, 0.5) };
    let grey = (0..200).filter(|&v| augment(&img, &cfg, &mut view_rng(1, 0, 0, v)) != img).count();
    assert!((20..=60).contains(&grey), "{grey} of 200 views grey");
}

#[test]
fn evaluation_takes_the_official_centre_crop_above_32_px() {
    // 40 × 64 image, 35 px views: side rint(0.875 · 40) = 35, offsets ((40 − 35) + 1) / 2 = 3 and
    // ((64 − 35) + 1) / 2 = 15, then a 35 → 35 resize, which keeps every pixel.
    let img = test_image(40, 64);
    let out = augment(&img, &AugmentConfig::eval(35), &mut view_rng(0, 0, 0, 0));
    assert_eq!((out.height, out.width), (35, 35));
    for c in 0..3 {
        for y in 0..35 {
            for x in 0..35 {
                assert!((out.at(c, y, x) - img.at(c, y + 3, x + 15)).abs() < 1e-6, "c{c} y{y} x{x}");
            }
        }
    }
    // 32 px and under: the whole image, resized (no crop), as the official code for CIFAR sizes.
    let small = test_image(32, 32);
    assert_eq!(augment(&small, &AugmentConfig::eval(32), &mut view_rng(0, 0, 0, 0)), augment(&small, &AugmentConfig::identity(32), &mut view_rng(0, 0, 0, 0)));
    assert_eq!(simclr::augment::center_square(50, 30, 0.875), simclr::augment::Crop { top: 12, left: 2, height: 26, width: 26 });
}

// The ablation's transformations (paper §3.1, Fig. 4) against hand-computed pixels.

fn grey(h: usize, w: usize, values: &[f32]) -> Image {
    let mut img = Image::zeros(h, w);
    for c in 0..3 {
        img.data[c * h * w..(c + 1) * h * w].copy_from_slice(values);
    }
    img
}

fn plane(img: &Image, c: usize) -> &[f32] {
    &img.data[c * img.plane()..(c + 1) * img.plane()]
}

#[test]
fn cutout_zeroes_the_square_clipped_at_the_border() {
    let img = grey(4, 4, &[1.0; 16]);
    // Side 2 centred at (1, 2): rows 0..2, columns 1..3.
    let out = ablation::cutout(&img, 1, 2, 2);
    let expected = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    for c in 0..3 {
        assert_eq!(plane(&out, c), &expected);
    }
    // Side 3 centred in the corner: only the part inside the image, rows and columns 0..2.
    let corner = ablation::cutout(&img, 0, 0, 3);
    assert_eq!(plane(&corner, 0), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn sobel_is_the_edge_magnitude_of_the_luma() {
    // A vertical step 0 → 1 between columns 1 and 2, in every row.
    let img = grey(3, 4, &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
    let luma = 0.2989f32 + 0.5870 + 0.1140;
    // Columns 1 and 2: gx = (1 + 2 + 1)·luma, gy = 0 (rows replicated), / (4√2); columns 0 and 3: 0.
    let edge = 4.0 * luma / (4.0 * std::f32::consts::SQRT_2);
    let out = ablation::sobel(&img);
    for c in 0..3 {
        for (got, want) in plane(&out, c).iter().zip([0.0, edge, edge, 0.0].repeat(3)) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
    // A constant image has no edges.
    assert!(ablation::sobel(&grey(3, 3, &[0.7; 9])).data.iter().all(|&v| v.abs() < 1e-6));
}

#[test]
fn rotations_move_pixels_counter_clockwise() {
    // a b c / d e f
    let img = grey(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let quarter = ablation::rotate90(&img, 1);
    assert_eq!((quarter.height, quarter.width), (3, 2));
    assert_eq!(plane(&quarter, 2), &[3.0, 6.0, 2.0, 5.0, 1.0, 4.0]); // c f / b e / a d
    assert_eq!(plane(&ablation::rotate90(&img, 2), 1), &[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]); // f e d / c b a
    assert_eq!(plane(&ablation::rotate90(&img, 3), 0), &[4.0, 1.0, 5.0, 2.0, 6.0, 3.0]); // d a / e b / f c
    assert_eq!(ablation::rotate90(&quarter, 3), img);
}

#[test]
fn noise_has_the_stated_spread_and_stays_in_range() {
    let img = grey(64, 64, &[0.5; 64 * 64]);
    let out = ablation::gaussian_noise(&img, 0.1, &mut ChaCha8Rng::seed_from_u64(5));
    let diffs: Vec<f64> = out.data.iter().zip(&img.data).map(|(a, b)| f64::from(a - b)).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let std = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / diffs.len() as f64).sqrt();
    // 12,288 draws: the mean within 4 standard errors of 0, the spread within 3% of 0.1.
    assert!(mean.abs() < 4.0 * 0.1 / (diffs.len() as f64).sqrt(), "mean {mean}");
    assert!((std - 0.1).abs() < 0.003, "std {std}");
    assert_ne!(plane(&out, 0), plane(&out, 1), "each value draws its own noise");
    let clipped = ablation::gaussian_noise(&grey(8, 8, &[0.0; 64]), 0.5, &mut ChaCha8Rng::seed_from_u64(6));
    assert!(clipped.data.iter().all(|v| (0.0..=1.0).contains(v)) && clipped.data.iter().any(|&v| v > 0.0));
}

#[test]
fn one_branch_views_share_the_crop_and_only_the_second_is_transformed() {
    let img = test_image(40, 40);
    let cfg = AugmentConfig { one_branch: vec![ablation::Transform::Rotate], ..AugmentConfig::simclr(24, 1.0) };
    for index in 0..8 {
        let first = draw_view(&img, &cfg, 3, 0, index, 0);
        let second = draw_view(&img, &cfg, 3, 0, index, 1);
        assert_eq!((first.height, first.width), (24, 24));
        // The first view is the shared crop itself: no flip, no colour, no blur.
        let crop_only = AugmentConfig { crop: true, ..AugmentConfig::identity(24) };
        assert!(first.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_ne!(first, augment(&img, &crop_only, &mut view_rng(3, 0, index, 0)), "the shared crop has a stream of its own");
        assert!((1..=3).any(|q| ablation::rotate90(&first, q) == second), "view 1 is a rotation of view 0");
    }
    // Without one_branch the two views are drawn independently, as before.
    let standard = AugmentConfig::simclr(24, 1.0);
    assert_eq!(draw_view(&img, &standard, 3, 0, 1, 1), augment(&img, &standard, &mut view_rng(3, 0, 1, 1)));
}

#[test]
fn transform_lists_parse_and_name_the_choices() {
    let t: ablation::Transforms = "crop,colour".parse().unwrap();
    assert_eq!(t.0, vec![ablation::Transform::Crop, ablation::Transform::Color]);
    assert_eq!(t.to_string(), "crop,color");
    let err = "crop,warp".parse::<ablation::Transforms>().unwrap_err();
    assert!(err.contains("`warp`") && err.contains("cutout") && err.contains("rotate"), "{err}");
    for t in ablation::Transform::ALL {
        let out = t.apply(&test_image(24, 24), &AugmentConfig::simclr(24, 1.0), &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!((out.height, out.width), (24, 24), "{t}");
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)), "{t}");
    }
}

#[test]
fn bicubic_resize_is_tensorflows_resize_bicubic() {
    // tests/fixtures/tf/resize_bicubic.json: TF1's tf.image.resize_bicubic of an 11 × 9 image
    // (scripts/make-tf-fixtures.py), down, up, to its own size and to a square.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tf/resize_bicubic.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let values = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
    let mut img = Image::zeros(11, 9);
    img.data = values(&fixture["image"]["data"]);
    let whole = Crop { top: 0, left: 0, height: 11, width: 9 };
    for case in fixture["resized"].as_array().unwrap() {
        let (h, w) = (case["height"].as_u64().unwrap() as usize, case["width"].as_u64().unwrap() as usize);
        let ours = resize_bicubic(&img, whole, h, w);
        for (i, (a, b)) in ours.data.iter().zip(values(&case["data"])).enumerate() {
            assert!((a - b).abs() < 1e-5, "{h}×{w}, value {i}: ours {a}, TensorFlow {b}");
        }
    }
    // Evaluation with `resize = bicubic` clips the overshoot to [0, 1].
    let cfg = AugmentConfig { resize: Resize::Bicubic, ..AugmentConfig::eval(16) };
    let out = augment(&img, &cfg, &mut ChaCha8Rng::seed_from_u64(0));
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(resize_bicubic(&img, whole, 16, 16).data.iter().any(|v| !(0.0..=1.0).contains(v)), "the fixture overshoots somewhere");
}
