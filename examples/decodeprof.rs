//! Cost of one 224 px training image's pieces behind `docs/performance.md`: JPEG decode of a
//! 500×375 source, u8 → f32, and its two augmented views. `cargo run --release --example decodeprof`
use std::time::Instant;
fn main() {
    let (w, h) = (500u32, 375u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = simclr::augment::splitmix64((x as u64) << 32 | y as u64) as u8 / 4;
        image::Rgb([(x * 255 / w) as u8 / 2 + n, (y * 255 / h) as u8 / 2 + n, 128u8.wrapping_add(n)])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    let bytes = bytes.into_inner();
    println!("jpeg bytes {}", bytes.len());
    let n = 200;
    let t = Instant::now();
    let mut keep = 0usize;
    for _ in 0..n { let d = image::load_from_memory(&bytes).unwrap().into_rgb8(); keep += d.as_raw()[7] as usize; }
    println!("decode {:.3} ms", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    let raw = img.as_raw().clone();
    let t = Instant::now();
    for _ in 0..n { let i = simclr::image::Image::from_u8_hwc(&raw, h as usize, w as usize, 3); keep += i.data[5] as usize; }
    println!("to f32 {:.3} ms {keep}", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    let mut cfg = simclr::augment::AugmentConfig::simclr(224, 1.0);
    cfg.blur = true;
    let src = simclr::image::Image::from_u8_hwc(&raw, h as usize, w as usize, 3);
    let t = Instant::now();
    for i in 0..n { for v in 0..2 { let o = simclr::augment::augment(&src, &cfg, &mut simclr::augment::view_rng(0, 0, i as u64, v)); keep += o.data[3] as usize; } }
    println!("2 views from 500x375 {:.3} ms", t.elapsed().as_secs_f64() * 1e3 / n as f64);
    let small = image::imageops::resize(&img, 341, 256, image::imageops::FilterType::Triangle);
    let src = simclr::image::Image::from_u8_hwc(small.as_raw(), 256, 341, 3);
    let t = Instant::now();
    for i in 0..n { for v in 0..2 { let o = simclr::augment::augment(&src, &cfg, &mut simclr::augment::view_rng(0, 0, i as u64, v)); keep += o.data[3] as usize; } }
    println!("2 views from 341x256 {:.3} ms {keep}", t.elapsed().as_secs_f64() * 1e3 / n as f64);
}
