//! IDX reading: the real Fashion-MNIST files when installed, the built-in subset, and clear errors
//! for truncated or garbled files.

use simclr::data::{self, idx, Dataset, DatasetKind, Split};
use std::io::Write;
use std::path::Path;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn real_fashion_mnist_when_installed() {
    if !Path::new(FASHION).exists() {
        eprintln!("skipped: {FASHION} missing (apt-get install -y dataset-fashion-mnist); CI installs it");
        return;
    }
    let src = data::Source { kind: Some(DatasetKind::FashionMnist), data: Some(FASHION.into()), ..Default::default() };
    let train = data::open(&src, Split::Train).unwrap();
    let test = data::open(&src, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.num_classes(), 10);
    assert_eq!(train.image(0).unwrap().height, 28);
    // The first training image is an ankle boot (label 9), the first test image too.
    assert_eq!(train.label(0), Some(9));
    assert_eq!(test.label(0), Some(9));
    let mut counts = [0usize; 10];
    (0..train.len()).for_each(|i| counts[train.label(i).unwrap()] += 1);
    assert_eq!(counts, [6000; 10]);
    let img = train.image(0).unwrap();
    assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let plane = img.plane();
    assert_eq!(&img.data[..plane], &img.data[plane..2 * plane], "grey becomes three equal channels");
}

#[test]
fn builtin_subset_is_class_balanced() {
    let train = data::builtin(Split::Train);
    let test = data::builtin(Split::Test);
    assert_eq!((train.len(), test.len()), (5000, 1000));
    for (ds, per) in [(&train, 500), (&test, 100)] {
        let mut counts = [0usize; 10];
        (0..ds.len()).for_each(|i| counts[ds.label(i).unwrap()] += 1);
        assert_eq!(counts, [per; 10]);
    }
    // Real images, not noise: the mean pixel of Fashion-MNIST is about 0.286.
    let mean: f32 = (0..200).map(|i| train.image(i).unwrap().data.iter().sum::<f32>() / (3.0 * 784.0)).sum::<f32>() / 200.0;
    assert!((0.2..0.4).contains(&mean), "mean pixel {mean}");
}

fn write_idx(path: &Path, magic_type: u8, dims: &[u32], body: &[u8], gzip: bool) {
    let mut bytes = vec![0, 0, magic_type, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(body);
    let mut f = std::fs::File::create(path).unwrap();
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        f.write_all(&enc.finish().unwrap()).unwrap();
    } else {
        f.write_all(&bytes).unwrap();
    }
}

#[test]
fn raw_and_gzip_idx_round_trip_exact_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7 % 256) as u8).collect();
    write_idx(&dir.path().join("train-images-idx3-ubyte"), 0x08, &[3, 4, 5], &pixels, false);
    write_idx(&dir.path().join("train-labels-idx1-ubyte.gz"), 0x08, &[3], &[2, 0, 1], true);
    let ds = idx::load_split(dir.path(), "train").unwrap();
    assert_eq!((ds.len(), ds.image_shape(), ds.num_classes()), (3, (4, 5), 3));
    assert_eq!((ds.label(0), ds.label(1), ds.label(2)), (Some(2), Some(0), Some(1)));
    let img = ds.image(1).unwrap();
    for p in 0..20 {
        assert_eq!((img.data[p] * 255.0).round() as u8, pixels[20 + p]);
    }
}

#[test]
fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(&dir.path().join("train-images-idx3-ubyte"), 0x08, &[10, 28, 28], &[0u8; 700], false);
    write_idx(&dir.path().join("train-labels-idx1-ubyte"), 0x08, &[10], &[0u8; 10], false);
    let err = idx::load_split(dir.path(), "train").err().unwrap().to_string();
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("truncated"), "{err}");
}

#[test]
fn garbled_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gz");
    std::fs::write(&p, [0x1f, 0x8b, 1, 2, 3, 4, 5]).unwrap();
    let err = idx::read_idx(&p).err().unwrap().to_string();
    assert!(err.contains("x.gz") && err.contains("gzip"), "{err}");
    std::fs::write(&p, b"hello world, not idx").unwrap();
    let err = idx::read_idx(&p).err().unwrap().to_string();
    assert!(err.contains("not an IDX file"), "{err}");
    write_idx(&p, 0x0D, &[1], &[0, 0, 0, 0], false);
    assert!(idx::read_idx(&p).err().unwrap().to_string().contains("not unsigned byte"));
}

#[test]
fn missing_files_name_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let src = data::Source { kind: Some(DatasetKind::FashionMnist), data: Some(dir.path().into()), ..Default::default() };
    let err = data::open(&src, Split::Train).err().unwrap().to_string();
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("apt-get install"), "{err}");
    let src = data::Source { kind: Some(DatasetKind::FashionMnist), ..Default::default() };
    let err = data::open(&src, Split::Train).err().unwrap().to_string();
    assert!(err.contains("--data"), "{err}");
}
