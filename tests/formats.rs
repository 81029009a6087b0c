//! Every dataset format round-trips exact pixels and labels from files the test writes itself;
//! unreadable images are counted and skipped, or fail naming the file with --strict.

use simclr::data::folder::{Cache, ImageFolder};
use simclr::data::{self, BadImages, Dataset, DatasetKind, Source, Split};
use std::path::Path;

fn src(kind: DatasetKind, dir: &Path) -> Source {
    Source { kind: Some(kind), data: Some(dir.to_path_buf()), ..Default::default() }
}

/// Pixel value of image `i`, channel `c`, row `y`, column `x` in the synthetic sets.
fn px(i: usize, c: usize, y: usize, x: usize) -> u8 {
    ((i * 31 + c * 67 + y * 7 + x * 3) % 256) as u8
}

fn assert_pixels(img: &simclr::image::Image, i: usize, side: usize) {
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                assert_eq!((img.at(c, y, x) * 255.0).round() as u8, px(i, c, y, x), "image {i} c{c} y{y} x{x}");
            }
        }
    }
}

#[test]
fn cifar10_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let record = |i: usize, label: u8| {
        let mut r = vec![label];
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    r.push(px(i, c, y, x));
                }
            }
        }
        r
    };
    for b in 1..=5 {
        let bytes: Vec<u8> = (0..2).flat_map(|k| record(b * 10 + k, (b + k) as u8 % 10)).collect();
        std::fs::write(dir.path().join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(99, 7)).unwrap();
    let train = data::open(&src(DatasetKind::Cifar10, dir.path()), Split::Train).unwrap();
    assert_eq!((train.len(), train.num_classes()), (10, 10));
    assert_eq!(train.label(3), Some(((2 + 1) % 10) as usize));
    assert_pixels(&train.image(3).unwrap(), 21, 32);
    let test = data::open(&src(DatasetKind::Cifar10, dir.path()), Split::Test).unwrap();
    assert_eq!(test.label(0), Some(7));
    assert_pixels(&test.image(0).unwrap(), 99, 32);
    // A truncated batch is an error naming the file.
    std::fs::write(dir.path().join("test_batch.bin"), &record(99, 7)[..1000]).unwrap();
    let err = data::open(&src(DatasetKind::Cifar10, dir.path()), Split::Test).err().unwrap().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("truncated"), "{err}");
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for (i, (coarse, fine)) in [(3u8, 42u8), (19, 99)].iter().enumerate() {
        bytes.extend([*coarse, *fine]);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    bytes.push(px(i, c, y, x));
                }
            }
        }
    }
    std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
    let fine = data::open(&src(DatasetKind::Cifar100, dir.path()), Split::Train).unwrap();
    assert_eq!((fine.num_classes(), fine.label(0), fine.label(1)), (100, Some(42), Some(99)));
    assert_pixels(&fine.image(1).unwrap(), 1, 32);
    let coarse = data::open(&Source { coarse_labels: true, ..src(DatasetKind::Cifar100, dir.path()) }, Split::Train).unwrap();
    assert_eq!((coarse.num_classes(), coarse.label(0), coarse.label(1)), (20, Some(3), Some(19)));
}

#[test]
fn stl10_column_major_round_trip_and_pretrain_split() {
    let dir = tempfile::tempdir().unwrap();
    let images = |ids: &[usize]| {
        let mut out = Vec::new();
        for &i in ids {
            for c in 0..3 {
                for x in 0..96 {
                    for y in 0..96 {
                        out.push(px(i, c, y, x)); // column-major within each channel
                    }
                }
            }
        }
        out
    };
    std::fs::write(dir.path().join("train_X.bin"), images(&[0, 1])).unwrap();
    std::fs::write(dir.path().join("train_y.bin"), [1u8, 10]).unwrap();
    std::fs::write(dir.path().join("test_X.bin"), images(&[2])).unwrap();
    std::fs::write(dir.path().join("test_y.bin"), [5u8]).unwrap();
    std::fs::write(dir.path().join("unlabeled_X.bin"), images(&[3, 4, 5])).unwrap();
    let s = src(DatasetKind::Stl10, dir.path());
    let train = data::open(&s, Split::Train).unwrap();
    assert_eq!((train.len(), train.label(0), train.label(1)), (2, Some(0), Some(9)));
    assert_pixels(&train.image(1).unwrap(), 1, 96);
    let test = data::open(&s, Split::Test).unwrap();
    assert_eq!(test.label(0), Some(4));
    let pre = data::open(&s, Split::Pretrain).unwrap();
    assert_eq!(pre.len(), 5, "unlabelled + train");
    assert_eq!((pre.label(0), pre.label(3)), (None, Some(0)));
    assert_pixels(&pre.image(2).unwrap(), 5, 96);
    assert_pixels(&pre.image(4).unwrap(), 1, 96);
    std::fs::write(dir.path().join("test_y.bin"), [0u8]).unwrap();
    assert!(data::open(&s, Split::Test).err().unwrap().to_string().contains("not in 1..=10"));
}

fn save(path: &Path, w: u32, h: u32, seed: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([px(seed, 0, y as usize, x as usize), px(seed, 1, y as usize, x as usize), px(seed, 2, y as usize, x as usize)]));
    img.save(path).unwrap();
}

#[test]
fn labelled_folder_exact_pixels_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save(&root.join("train/cat/a.png"), 5, 4, 1);
    save(&root.join("train/cat/deeper/b.bmp"), 6, 6, 2);
    save(&root.join("train/dog/c.png"), 3, 3, 3);
    std::fs::write(root.join("train/dog/notes.txt"), "not an image").unwrap();
    save(&root.join("test/cat/d.png"), 4, 4, 4);
    save(&root.join("test/dog/e.png"), 4, 4, 5);
    let ds = data::open(&src(DatasetKind::Folder, root), Split::Train).unwrap();
    assert_eq!((ds.len(), ds.num_classes()), (3, 2));
    assert_eq!((ds.label(0), ds.label(1), ds.label(2)), (Some(0), Some(0), Some(1)));
    let img = ds.image(0).unwrap();
    assert_eq!((img.height, img.width), (4, 5));
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!((img.at(c, y, x) * 255.0).round() as u8, px(1, c, y, x));
            }
        }
    }
    let bmp = ds.image(1).unwrap();
    assert_eq!((bmp.at(2, 5, 5) * 255.0).round() as u8, px(2, 2, 5, 5));
    let test = data::open(&src(DatasetKind::Folder, root), Split::Test).unwrap();
    assert_eq!((test.len(), test.label(1)), (2, Some(1)));
}

#[test]
fn unlabelled_tree_with_mixed_formats_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save(&root.join("a/x.png"), 8, 8, 1);
    save(&root.join("a/b/c/y.jpg"), 16, 12, 2);
    image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y) as u8])).save(root.join("grey.png")).unwrap();
    image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_fn(4, 4, |x, _| image::Rgba([65535, (x * 20000) as u16, 0, 1000]))
        .save(root.join("deep16.png"))
        .unwrap();
    image::RgbImage::from_pixel(6, 6, image::Rgb([10, 200, 30])).save(root.join("w.webp")).ok();
    let ds = data::open(&src(DatasetKind::UnlabelledFolder, root), Split::Pretrain).unwrap();
    let webp = root.join("w.webp").exists() as usize;
    assert_eq!(ds.len(), 4 + webp);
    assert_eq!(ds.num_classes(), 0);
    assert_eq!(ds.label(0), None);
    for i in 0..ds.len() {
        let img = ds.image(i).unwrap();
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // Sorted walk: a/b/c/y.jpg, a/x.png, deep16.png, grey.png, [w.webp]
    let grey = ds.image(3).unwrap();
    assert_eq!((grey.height, grey.width), (5, 7));
    assert_eq!((grey.at(0, 2, 3) * 255.0).round() as u8, 92);
    assert_eq!(grey.at(0, 2, 3), grey.at(2, 2, 3));
    let deep = ds.image(2).unwrap();
    assert_eq!((deep.at(0, 0, 0) * 255.0).round() as u8, 255, "16-bit → 8-bit");
    assert_eq!((deep.at(2, 0, 0) * 255.0).round() as u8, 251, "blue 0 at alpha 1000/65535 (4/255 in 8 bits) on white");
    assert!(data::open(&src(DatasetKind::UnlabelledFolder, root), Split::Test).is_err(), "no labels to evaluate with");
}

#[test]
fn a_labelled_folder_without_a_test_split_holds_out_part_of_each_class_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sizes = [("a", 5), ("b", 10), ("tiny", 1)];
    for (class, n) in sizes {
        (0..n).for_each(|i| save(&root.join(format!("{class}/nested/{i}.png")), 4, 4, i));
    }
    let fold_of = |fraction, seed, fold| Source {
        min_class_images: 2,
        hold_out: Some(data::HoldOut { fraction, seed, fold }),
        ..src(DatasetKind::Folder, root)
    };
    let held = |fraction, seed| fold_of(fraction, seed, 0);
    let files = |ds: &dyn Dataset| -> Vec<String> { (0..ds.len()).map(|i| ds.file(i).unwrap().display().to_string()).collect() };
    let (train, test) = (data::open(&held(0.2, 3), Split::Train).unwrap(), data::open(&held(0.2, 3), Split::Test).unwrap());
    // "tiny" (1 image) left out, the others relabelled 0 and 1; a fifth of each class held out.
    assert_eq!((train.num_classes(), test.num_classes()), (2, 2));
    let count = |ds: &dyn Dataset, label| (0..ds.len()).filter(|&i| ds.label(i) == Some(label)).count();
    assert_eq!([count(test.as_ref(), 0), count(test.as_ref(), 1)], [1, 2]);
    assert_eq!([count(train.as_ref(), 0), count(train.as_ref(), 1)], [4, 8]);
    let (mut all, test_files) = (files(train.as_ref()), files(test.as_ref()));
    all.extend(test_files.clone());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 15, "disjoint, and together every image of a and b");
    assert!(all.iter().all(|f| !f.contains("tiny")));
    // Pretraining reads the training part; the same seed draws the same split, another seed another.
    assert_eq!(files(data::open(&held(0.2, 3), Split::Pretrain).unwrap().as_ref()), files(train.as_ref()));
    assert_eq!(files(data::open(&held(0.2, 3), Split::Test).unwrap().as_ref()), test_files);
    let mut other = files(data::open(&held(0.2, 4), Split::Test).unwrap().as_ref());
    let mut same = test_files.clone();
    (other.sort(), same.sort());
    assert_ne!(other, same);
    // k-fold: a fraction of 0.2 cuts each class into 5 slices; fold k holds out the k-th, and
    // the 5 folds' test splits are disjoint and test every image of a and b once (fold 0 above).
    assert_eq!(data::HoldOut::folds(0.2), 5);
    assert_eq!((data::HoldOut::folds(1.0 / 3.0), data::HoldOut::folds(0.3), data::HoldOut::folds(0.5)), (3, 4, 2));
    let mut tested = Vec::new();
    for fold in 0..5 {
        let (train, test) = (data::open(&fold_of(0.2, 3, fold), Split::Train).unwrap(), data::open(&fold_of(0.2, 3, fold), Split::Test).unwrap());
        assert_eq!([count(test.as_ref(), 0), count(test.as_ref(), 1)], [1, 2], "fold {fold}");
        let (mut both, test_files) = (files(train.as_ref()), files(test.as_ref()));
        assert!(both.iter().all(|f| !test_files.contains(f)), "fold {fold}: a test image is trained on");
        both.extend(test_files.clone());
        (both.sort(), both.dedup());
        assert_eq!(both.len(), 15, "fold {fold}: train and test together are every image");
        tested.extend(test_files);
    }
    tested.sort();
    assert_eq!(tested, all, "each image tested once over the 5 folds");
    // A fraction that does not divide 1: ⌈1/0.3⌉ = 4 folds cut at 0.3, 0.6, 0.9 of a class, the
    // last the rest (b: 3, 3, 3, 1); a's cuts 1.5 → 2, 3, 4.5 → 5 keep one image back (2, 1, 1, 1).
    let per_fold = |label| (0..4).map(|fold| count(data::open(&fold_of(0.3, 3, fold), Split::Test).unwrap().as_ref(), label)).collect::<Vec<_>>();
    assert_eq!((per_fold(0), per_fold(1)), (vec![2, 1, 1, 1], vec![3, 3, 3, 1]));
    // A folder with its own test/ split refuses a drawn one.
    save(&root.join("test/a/0.png"), 4, 4, 0);
    let e = data::open(&held(0.2, 3), Split::Train).err().unwrap().to_string();
    assert!(e.contains("--test-fraction") && e.contains("test/"), "{e}");
}

#[test]
fn transparent_pixels_are_composited_on_white() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Invisible black, half-transparent orange (alpha 128), opaque blue.
    let pixels = [[0, 0, 0, 0], [200, 100, 0, 128], [0, 0, 255, 255]];
    image::RgbaImage::from_fn(3, 1, |x, _| image::Rgba(pixels[x as usize])).save(root.join("clip.png")).unwrap();
    let ds = data::open(&src(DatasetKind::UnlabelledFolder, root), Split::Pretrain).unwrap();
    let img = ds.image(0).unwrap();
    let rgb = |x: usize| [0, 1, 2].map(|c| (img.at(c, 0, x) * 255.0).round() as u8);
    // c·a + 255·(255 − a), over 255, rounded: (200·128 + 255·127 + 127) / 255 = 227, …
    assert_eq!([rgb(0), rgb(1), rgb(2)], [[255, 255, 255], [227, 177, 127], [0, 0, 255]]);
}

#[test]
fn bad_files_are_skipped_and_counted_or_fail_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save(&root.join("good1.png"), 8, 8, 1);
    std::fs::write(root.join("empty.png"), b"").unwrap();
    let png = std::fs::read(root.join("good1.png")).unwrap();
    std::fs::write(root.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(root.join("garbage.jpg"), b"definitely not a jpeg").unwrap();
    save(&root.join("good2.png"), 8, 8, 2);
    let ds = ImageFolder::open(root, false, None, None).unwrap();
    assert_eq!(ds.len(), 5);
    // Sorted: empty, garbage, good1, good2, truncated.
    let skip = BadImages::new(false);
    let (i, _) = skip.read(&ds, 0).unwrap();
    assert_eq!(i, 2, "empty and garbage skipped, good1 used with its own index");
    let (i, _) = skip.read(&ds, 4).unwrap();
    assert_eq!(i, 2, "truncated skipped, wraps around past the known bad ones to good1");
    let skipped = skip.log().unwrap().take();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped.iter().any(|s| s.contains("empty.png") && s.contains("empty file")));
    assert!(skipped.iter().any(|s| s.contains("truncated.png")));
    assert!(skipped.iter().any(|s| s.contains("garbage.jpg")));

    let err = BadImages::new(true).read(&ds, 1).err().unwrap().to_string();
    assert!(err.contains("garbage.jpg") && err.contains("cannot decode"), "{err}");
}

/// A PNG whose header declares `side × side` RGBA pixels (no image data follows): what a decoder
/// sees first of a huge drawing.
fn huge_png_header(side: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
    };
    let ihdr = [&side.to_be_bytes()[..], &side.to_be_bytes(), &[8, 6, 0, 0, 0]].concat();
    [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &[]), &chunk(b"IEND", &[])].concat()
}

#[test]
fn an_image_over_the_decoders_memory_limit_is_skipped_with_advice_to_shrink_it() {
    let dir = tempfile::tempdir().unwrap();
    save(&dir.path().join("a.png"), 8, 8, 1);
    // 30,000² RGBA pixels are 3.6 GB, over the decoder's 512 MiB limit (openclipart has such files).
    std::fs::write(dir.path().join("b.png"), huge_png_header(30_000)).unwrap();
    let ds = ImageFolder::open(dir.path(), false, None, None).unwrap();
    let err = ds.image(1).err().unwrap().to_string();
    assert!(err.contains("b.png") && err.contains("too large") && err.contains("shrink") && !err.contains("re-download"), "{err}");
    assert_eq!(BadImages::new(false).read(&ds, 1).unwrap().0, 0, "skipped like any unreadable image");
}

#[test]
fn file_lists_pick_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (cls, name) in [("n01", "n01_1.png"), ("n01", "n01_2.png"), ("n02", "n02_1.png"), ("n02", "n02_2.png")] {
        save(&root.join(cls).join(name), 4, 4, name.len());
    }
    let list = root.join("1percent.txt");
    std::fs::write(&list, "n01_2.png\nn02/n02_1.png\n").unwrap();
    let ds = ImageFolder::open(root, true, Some(&list), None).unwrap();
    assert_eq!(ds.len(), 2);
    assert!(ds.path(0).ends_with("n01/n01_2.png") && ds.path(1).ends_with("n02/n02_1.png"));
    assert_eq!((ds.label(0), ds.label(1)), (Some(0), Some(1)));
    std::fs::write(&list, "missing.png\n").unwrap();
    let err = ImageFolder::open(root, true, Some(&list), None).err().unwrap().to_string();
    assert!(err.contains("line 1") && err.contains("missing.png"), "{err}");
}

#[test]
fn cache_hits_on_the_second_pass_with_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    for i in 0..4 {
        save(&root.join(format!("{i}.png")), 40, 30, i);
    }
    let cache = Cache { dir: dir.path().join("cache"), size: 20 };
    let ds = ImageFolder::open(&root, false, None, Some(cache.clone())).unwrap();
    let first: Vec<_> = (0..4).map(|i| ds.image(i).unwrap()).collect();
    assert_eq!(ds.decodes(), 4);
    assert_eq!((first[0].height, first[0].width), (20, 27), "shorter side resized to 20");
    let second: Vec<_> = (0..4).map(|i| ds.image(i).unwrap()).collect();
    assert_eq!(ds.decodes(), 4, "second pass served from the cache");
    assert_eq!(first, second);
    // A fresh dataset on the same cache decodes nothing.
    let again = ImageFolder::open(&root, false, None, Some(cache)).unwrap();
    assert_eq!(again.image(3).unwrap(), first[3]);
    assert_eq!(again.decodes(), 0);
}
