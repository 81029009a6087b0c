//! Memory stays bounded on a large image folder: one epoch over 10,000 JPEGs of 500×375, decoded
//! lazily a few batches at a time.
//! Slow (writes ~10k files): `cargo test --release --test folder_memory -- --ignored`.

use std::process::Command;

#[test]
#[ignore]
fn pretraining_on_10k_jpegs_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let sub: Vec<_> = (0..10).map(|d| root.join(format!("d{d}"))).collect();
    sub.iter().for_each(|d| std::fs::create_dir_all(d).unwrap());
    let base = image::RgbImage::from_fn(500, 375, |x, y| image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    base.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    let bytes = bytes.into_inner();
    for i in 0..10_000 {
        std::fs::write(sub[i % 10].join(format!("{i:05}.jpg")), &bytes).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_simclr"))
        .args(["pretrain", "--dataset", "unlabelled-folder", "--width", "0.0625", "--image-size", "32", "--batch-size", "128"])
        .args(["--max-steps", "78", "--quiet", "--data"])
        .arg(&root)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rss: f64 = stdout.split("peak RSS ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
    println!("peak RSS on 10,000 JPEGs of 500x375: {rss} MiB");
    // Decoding everything would take 10,000 × 500 × 375 × 3 bytes = 5.6 GB as u8 (22 GB as f32).
    assert!(rss < 1024.0, "peak RSS {rss} MiB");
}
