//! Hostile files: mutation fuzzing of every reader of files this tool did not write itself, on stable
//! Rust. Each target starts from valid seed files the test writes, then feeds the reader mutations
//! of them — truncation at every offset, flipped bytes, 32-bit words set to huge sizes, inserted
//! bytes — for a bounded time, drawn from a seeded RNG. A reader must answer each with a value or an
//! error: never a panic, a hang (over 2 s) or an allocation over 1 GiB (this binary's allocator
//! refuses those, which aborts the test loudly).
//!
//! `.ci/run` runs one second a target; a longer pass: `SIMCLR_FUZZ_SECONDS=60 cargo test --release
//! --test fuzz -- --nocapture` (prints the executions per target). Inputs that once failed are kept
//! as regression tests below.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simclr::data::{self, DatasetKind, Source, Split};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Refuses any single allocation over 1 GiB: a reader that trusts a declared size aborts here
/// instead of exhausting the machine's memory.
struct Capped;

const ALLOCATION_CAP: usize = 1 << 30;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// One mutation of `seed`: the `i`-th truncation first (while offsets remain), then random edits.
fn mutate(seed: &[u8], i: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    if i < seed.len().min(4096) {
        // Truncation at every offset (of the first 4 KiB, where the headers are).
        return seed[..i].to_vec();
    }
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if out.is_empty() {
            out.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..5) {
            0 => out[at] ^= 1 << rng.random_range(0..8),
            1 => out[at] = rng.random(),
            2 => {
                // A 32-bit word set to a huge size, big- or little-endian.
                let word = [u32::MAX, 0x7fff_ffff, 0x4000_0000, 0x0001_0000][rng.random_range(0..4)];
                let bytes = if rng.random() { word.to_be_bytes() } else { word.to_le_bytes() };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let n = rng.random_range(1..=16);
                let insert: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(at..at, insert);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Feeds `read` mutations of each seed for the time budget (`SIMCLR_FUZZ_SECONDS`, default 1 s,
/// shared by the seeds); returns the executions. A panic or a slow input fails the test, printing
/// the input in hex for a regression test.
fn fuzz(name: &str, seeds: &[Vec<u8>], mut read: impl FnMut(&[u8])) -> usize {
    let budget: f64 = std::env::var("SIMCLR_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let per_seed = Duration::from_secs_f64(budget / seeds.len() as f64);
    let mut runs = 0;
    for (s, seed) in seeds.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(s as u64);
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < per_seed {
            let input = mutate(seed, i, &mut rng);
            let t = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&input)));
            let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
            assert!(outcome.is_ok(), "{name}: the reader panicked on input {i} of seed {s} ({} bytes, first 256 in hex: {hex})", input.len());
            assert!(t.elapsed() < Duration::from_secs(2), "{name}: input {i} of seed {s} took {:?} ({hex})", t.elapsed());
            i += 1;
            runs += 1;
        }
    }
    eprintln!("fuzz {name}: {runs} executions");
    runs
}

fn source(kind: DatasetKind, dir: &Path) -> Source {
    Source { kind: Some(kind), data: Some(dir.to_path_buf()), ..Default::default() }
}

/// Opens the split and reads every image and label, as training would.
fn read_all(src: &Source, split: Split) {
    if let Ok(ds) = data::open(src, split) {
        for i in 0..ds.len() {
            let _ = ds.image(i);
            let _ = ds.label(i);
        }
    }
}

fn idx(kind: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    dims.iter().for_each(|d| out.extend(d.to_be_bytes()));
    out.extend_from_slice(body);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 77]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 77]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    bytes.into_inner()
}

#[test]
fn dataset_readers_survive_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // IDX (Fashion-MNIST / MNIST), raw and gzip: mutate the test images, labels fixed.
    let labels = idx(8, &[2], &[1, 3]);
    let images = idx(8, &[2, 3, 3], &(0..18).collect::<Vec<u8>>());
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    fuzz("idx", &[images.clone(), gzip(&images)], |bytes| {
        std::fs::write(d.join("t10k-images-idx3-ubyte"), bytes).unwrap();
        read_all(&source(DatasetKind::FashionMnist, d), Split::Test);
    });
    assert!(simclr::data::idx::parse_idx(&images).is_ok(), "the seed itself is valid");

    // CIFAR-10 binary: two records.
    let record = |label: u8| std::iter::once(label).chain((0..3072).map(|i| (i % 251) as u8)).collect::<Vec<u8>>();
    fuzz("cifar10", &[[record(1), record(9)].concat()], |bytes| {
        std::fs::write(d.join("test_batch.bin"), bytes).unwrap();
        read_all(&source(DatasetKind::Cifar10, d), Split::Test);
    });

    // STL-10 binary: mutate the labels and the images in turn.
    let stl_x: Vec<u8> = (0..2 * 3 * 96 * 96).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.join("test_X.bin"), &stl_x).unwrap();
    fuzz("stl10 labels", &[vec![1, 10]], |bytes| {
        std::fs::write(d.join("test_y.bin"), bytes).unwrap();
        read_all(&source(DatasetKind::Stl10, d), Split::Test);
    });
    std::fs::write(d.join("test_y.bin"), [1u8, 10]).unwrap();
    fuzz("stl10 images", &[stl_x], |bytes| {
        std::fs::write(d.join("test_X.bin"), bytes).unwrap();
        read_all(&source(DatasetKind::Stl10, d), Split::Test);
    });

    // Image folders: the decoders, and the file list.
    let images = d.join("images");
    std::fs::create_dir_all(images.join("cat")).unwrap();
    std::fs::create_dir_all(images.join("dog")).unwrap();
    std::fs::write(images.join("dog/b.png"), png(6, 5)).unwrap();
    fuzz("png and jpeg", &[png(7, 5), jpeg(8, 8)], |bytes| {
        std::fs::write(images.join("cat/a.png"), bytes).unwrap();
        read_all(&source(DatasetKind::Folder, &images), Split::Train);
    });
    std::fs::write(images.join("cat/a.png"), png(7, 5)).unwrap();
    let list = d.join("list.txt");
    fuzz("file list", &[b"cat/a.png\ndog/b.png\n".to_vec()], |bytes| {
        std::fs::write(&list, bytes).unwrap();
        read_all(&Source { file_list: Some(list.clone()), ..source(DatasetKind::Folder, &images) }, Split::Train);
    });
}

#[test]
fn run_and_weight_file_readers_survive_hostile_files() {
    use simclr::checkpoint;
    use simclr::config::{Config, ModelSettings};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let device = simclr::default_device();

    // A real checkpoint of a narrow network, whose files are the seeds.
    let cfg = Config { model: ModelSettings { width: 0.0625, proj_dim: 8, image_size: 16, ..Default::default() }, ..Config::default() };
    let model = cfg.model(16).init_seeded(0, &device);
    let state = checkpoint::TrainState { step: 1, epoch: 0, seed: 0 };
    let ckpt = checkpoint::save(d, &cfg, &model, &simclr::optim::Optimizer::new(cfg.rule()), &state).unwrap();
    let seed = |name: &str| std::fs::read(ckpt.join(name)).unwrap();
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();

    fuzz("config.toml", &[seed("config.toml")], |bytes| {
        std::fs::write(work.join("config.toml"), bytes).unwrap();
        let _ = Config::from_file(&work.join("config.toml"));
    });
    fuzz("state.json", &[seed("state.json")], |bytes| {
        std::fs::write(work.join("state.json"), bytes).unwrap();
        let _ = checkpoint::read_state(&work);
    });
    for f in checkpoint::FILES {
        std::fs::write(work.join(f), seed(f)).unwrap();
    }
    fuzz("manifest.json", &[seed("manifest.json")], |bytes| {
        std::fs::write(work.join("manifest.json"), bytes).unwrap();
        let _ = checkpoint::verify(&work);
    });
    // The weights behind a manifest that matches them (a hostile file can carry its own manifest).
    fuzz("model.safetensors", &[seed("model.safetensors")], |bytes| {
        std::fs::write(work.join("model.safetensors"), bytes).unwrap();
        let _ = checkpoint::load_model(cfg.model(16).init(&device), &work.join("model.safetensors"));
    });

    // Weights to import: safetensors and a PyTorch zip file.
    let st = d.join("w.safetensors");
    fuzz("import safetensors", &[seed("model.safetensors")], |bytes| {
        std::fs::write(&st, bytes).unwrap();
        let _ = simclr::import::read_tensors(&st);
    });
    let pth = d.join("w.pth");
    let fixture = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet50-w0.0625.pth")).unwrap();
    fuzz("import pth", &[fixture], |bytes| {
        std::fs::write(&pth, bytes).unwrap();
        let _ = simclr::import::read_tensors(&pth);
    });

    // Features written by `embed` (and the feature cache).
    let npy = d.join("npy");
    let features = simclr::eval::Features { n: 3, dim: 2, data: vec![0.5; 6], labels: vec![0, 1, 2] };
    simclr::eval::embed::write(&features, &npy).unwrap();
    let (f_seed, l_seed) = (std::fs::read(npy.join("features.npy")).unwrap(), std::fs::read(npy.join("labels.npy")).unwrap());
    fuzz("features.npy", &[f_seed], |bytes| {
        std::fs::write(npy.join("features.npy"), bytes).unwrap();
        let _ = simclr::eval::embed::read(&npy);
    });
    fuzz("labels.npy", &[l_seed], |bytes| {
        std::fs::write(npy.join("labels.npy"), bytes).unwrap();
        let _ = simclr::eval::embed::read(&npy);
    });

    // TensorBoard events: lying lengths and CRCs.
    let mut events = simclr::tensorboard::EventWriter::create(&d.join("tb")).unwrap();
    events.scalars(3, &[("loss", 1.5), ("lr", 0.1)]).unwrap();
    events.png("views", 3, png(4, 4), 4, 4).unwrap();
    events.flush().unwrap();
    let tb = events.path().to_path_buf();
    let tb_seed = std::fs::read(&tb).unwrap();
    fuzz("tfevents", &[tb_seed], |bytes| {
        std::fs::write(&tb, bytes).unwrap();
        let _ = simclr::tensorboard::read(&tb);
    });
}

/// A LevelDB varint at `bytes[*at..]`.
fn varint(bytes: &[u8], at: &mut usize) -> usize {
    let mut value = 0;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        value |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The `(offset, size)` of every block of a checkpoint index: the data blocks (from the index
/// block's handles) and the index block (from the footer).
fn table_blocks(index: &[u8]) -> Vec<(usize, usize)> {
    let mut at = index.len() - 48;
    let _meta = (varint(index, &mut at), varint(index, &mut at));
    let (offset, size) = (varint(index, &mut at), varint(index, &mut at));
    let block = &index[offset..offset + size];
    let restarts = u32::from_le_bytes(block[size - 4..].try_into().unwrap()) as usize;
    let entries = &block[..size - 4 - 4 * restarts];
    let mut blocks = vec![(offset, size)];
    let mut at = 0;
    while at < entries.len() {
        let (_shared, key, value) = (varint(entries, &mut at), varint(entries, &mut at), varint(entries, &mut at));
        at += key;
        let mut v = at;
        blocks.push((varint(entries, &mut v), varint(entries, &mut v)));
        at += value;
    }
    blocks
}

/// `index` with the contents of block `(offset, size)` replaced by a mutation of them and its
/// masked CRC recomputed, so the parser behind the CRC check sees the lying entries.
fn resealed(index: &[u8], (offset, size): (usize, usize), mutated: &[u8]) -> Vec<u8> {
    let mut out = index[..offset].to_vec();
    out.extend_from_slice(mutated);
    out.push(0);
    out.extend_from_slice(&simclr::tensorboard::masked_crc(&out[offset..]).to_le_bytes());
    out.extend_from_slice(&index[offset + size + 5..]);
    out
}

#[test]
fn tensorflow_checkpoint_reader_survives_lying_tables_offsets_sizes_and_shards() {
    use simclr::tfcheckpoint::Bundle;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/se");
    let (index, data) = (std::fs::read(fixture.join("model.ckpt-1.index")).unwrap(), std::fs::read(fixture.join("model.ckpt-1.data-00000-of-00001")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("model.ckpt-1");
    let (index_file, data_file) = (dir.path().join("model.ckpt-1.index"), dir.path().join("model.ckpt-1.data-00000-of-00001"));
    let read_all = || {
        if let Ok(bundle) = Bundle::open(&prefix) {
            for name in bundle.entries().keys() {
                let _ = bundle.read(name);
            }
        }
    };
    std::fs::write(&data_file, &data).unwrap();
    fuzz("checkpoint index", &[index.clone()], |bytes| {
        std::fs::write(&index_file, bytes).unwrap();
        read_all();
    });
    // Behind the CRCs: each block's entries mutated (lying keys, entry offsets, sizes, shapes,
    // shard ids, dtypes, header shard counts) with a CRC that matches.
    let blocks = table_blocks(&index);
    assert!(blocks.len() >= 2, "{blocks:?}");
    for (b, &(offset, size)) in blocks.iter().enumerate() {
        fuzz(&format!("checkpoint index block {b}, resealed"), &[index[offset..offset + size].to_vec()], |bytes| {
            std::fs::write(&index_file, resealed(&index, (offset, size), bytes)).unwrap();
            read_all();
        });
    }
    std::fs::write(&index_file, &index).unwrap();
    fuzz("checkpoint data", &[data], |bytes| {
        std::fs::write(&data_file, bytes).unwrap();
        read_all();
    });
}

#[test]
fn an_image_declaring_60000_by_60000_pixels_is_refused_before_allocating() {
    // A PNG whose header says 60000 × 60000 (10.8 GB of RGB) over a few bytes of data: refused by
    // the decoder's limits with a message naming the file, not an allocation.
    let mut bytes = png(4, 4);
    bytes[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = {
        let mut h = flate2::Crc::new();
        h.update(&bytes[12..29]);
        h.sum()
    };
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/huge.png"), bytes).unwrap();
    let ds = data::open(&source(DatasetKind::Folder, dir.path()), Split::Train).unwrap();
    let e = ds.image(0).err().expect("refused").to_string();
    assert!(e.contains("huge.png") && e.contains("limit"), "{e}");
}

#[test]
fn a_pickle_that_calls_a_function_is_refused_and_nothing_runs() {
    // protocol 2: GLOBAL os.system, the argument tuple ("touch MARK",), REDUCE, STOP.
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("ran");
    let command = format!("touch {}", mark.display());
    let mut pickle = b"\x80\x02cos\nsystem\nq\x00X".to_vec();
    pickle.extend((command.len() as u32).to_le_bytes());
    pickle.extend(command.as_bytes());
    pickle.extend(b"q\x01\x85q\x02Rq\x03.");
    let file = dir.path().join("evil.pth");
    std::fs::write(&file, pickle).unwrap();
    let e = format!("{:#}", simclr::import::read_tensors(&file).err().expect("refused"));
    assert!(e.contains("evil.pth") && e.contains("os.system"), "{e}");
    assert!(!mark.exists(), "the pickle's command ran");
}

#[test]
fn declared_sizes_whose_product_overflows_are_errors() {
    // Found by reading the readers: the size checks multiplied declared dimensions unchecked, so
    // four dimensions of 2³² − 1 wrapped around (a panic with overflow checks, a wrong size without).
    let e = simclr::data::idx::parse_idx(&idx(8, &[u32::MAX; 4], &[0; 16])).err().unwrap();
    assert!(e.contains("more values than memory can hold"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let features = simclr::eval::Features { n: 1, dim: 2, data: vec![0.5; 2], labels: vec![] };
    simclr::eval::embed::write(&features, dir.path()).unwrap();
    let file = dir.path().join("features.npy");
    let mut bytes = std::fs::read(&file).unwrap();
    let end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..end]).unwrap();
    // The same header length: the longer shape takes the place of padding spaces.
    let shape = format!("({}, 4)", usize::MAX / 2);
    let grown = header.replace("(1, 2)", &shape);
    let huge = grown.replacen(&" ".repeat(grown.len() - header.len() + 1), " ", 1);
    assert_eq!(huge.len(), header.len());
    bytes.splice(10..end, huge.into_bytes());
    std::fs::write(&file, bytes).unwrap();
    assert!(simclr::eval::embed::read(dir.path()).is_err());
}

#[test]
fn a_gzip_idx_file_that_expands_without_bound_is_refused() {
    // 64 MiB of zeros compress to about 64 KiB: over 256 times, so refused, where reading it whole
    // is what a decompression bomb counts on.
    let bomb = gzip(&idx(8, &[1 << 16, 32, 32], &vec![0; 64 << 20]));
    let e = simclr::data::idx::parse_idx(&bomb).err().expect("refused");
    assert!(e.contains("decompression bomb"), "{e}");
    // Real data is far below the ratio: a gzip of varied bytes reads back.
    let images = idx(8, &[4, 8, 8], &(0..256).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>());
    assert_eq!(simclr::data::idx::parse_idx(&gzip(&images)).unwrap().dims, vec![4, 8, 8]);
}

/// A random folder tree under `root`: class folders with unicode and non-UTF-8 names, real images,
/// empty and garbage files named like images, links to ancestors, siblings, files, nowhere and
/// `/dev/zero`, and FIFOs named like images. Returns the number of regular files named like images
/// (the most a scan may list: a folder reached twice is scanned once).
fn random_tree(root: &Path, rng: &mut ChaCha8Rng) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let names: [&std::ffi::OsStr; 5] = [
        "cat".as_ref(),
        "chat noir ü".as_ref(),
        "猫".as_ref(),
        std::ffi::OsStr::from_bytes(b"bad\xff\xfename"),
        "dog".as_ref(),
    ];
    let mut folders = vec![root.to_path_buf()];
    let mut most = 0;
    for _ in 0..rng.random_range(1..8) {
        let parent = folders[rng.random_range(0..folders.len())].clone();
        let dir = parent.join(names[rng.random_range(0..names.len())]).join(format!("{}", rng.random_range(0..3)));
        if parent.components().count() < root.components().count() + 3 && std::fs::create_dir_all(&dir).is_ok() {
            folders.push(dir);
        }
    }
    for (k, dir) in folders.iter().enumerate() {
        for j in 0..rng.random_range(0..4) {
            let file = dir.join(format!("{k}-{j}.png"));
            match rng.random_range(0..8) {
                0 | 1 => {
                    // Named like an image: listed, then refused when decoded.
                    std::fs::write(&file, if rng.random() { &b""[..] } else { b"not an image" }).unwrap();
                    most += 1;
                }
                2 => {
                    Command::new("mkfifo").arg(&file).status().unwrap();
                }
                3 => std::os::unix::fs::symlink("/dev/zero", &file).unwrap(),
                4 => std::os::unix::fs::symlink(&folders[rng.random_range(0..folders.len())], dir.join(format!("link{j}"))).unwrap(),
                5 => std::os::unix::fs::symlink(dir.join("nowhere.png"), &file).unwrap(),
                _ => {
                    std::fs::write(&file, png(4, 3)).unwrap();
                    most += 1;
                }
            }
        }
    }
    most
}

#[test]
fn folder_trees_with_links_special_files_and_odd_names_are_scanned_safely() {
    // Every scan ends within 2 s, never panics, never reads a FIFO or a device, and never finds
    // more images than the tree holds (a loop followed would multiply them).
    for seed in 0..24 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let most = random_tree(dir.path(), &mut rng);
        for kind in [DatasetKind::Folder, DatasetKind::UnlabelledFolder] {
            let split = if kind == DatasetKind::Folder { Split::Train } else { Split::Pretrain };
            let t = Instant::now();
            let outcome = std::panic::catch_unwind(|| {
                let ds = data::open(&source(kind, dir.path()), split).ok()?;
                (0..ds.len()).for_each(|i| drop(ds.image(i)));
                Some(ds.len())
            });
            let found = outcome.unwrap_or_else(|_| panic!("tree {seed} ({kind:?}): the scan panicked"));
            assert!(t.elapsed() < Duration::from_secs(2), "tree {seed} ({kind:?}): {:?}", t.elapsed());
            assert!(found.unwrap_or(0) <= most, "tree {seed} ({kind:?}): {found:?} images of at most {most}");
        }
    }
}

#[test]
fn settings_at_the_edges_of_their_types_are_refused_or_recorded() {
    // Every number of a config file set to the edges of its type: the config is refused by
    // `validate` with the setting's flag named, or it is valid, finite and written back.
    use simclr::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let edges = ["nan", "inf", "-inf", "-1", "0", "1e308", "5e-324", "9223372036854775807", "-9223372036854775808", "4611686018427387904"];
    let mut checked = 0;
    for (section, table) in defaults.as_object().unwrap() {
        for key in table.as_object().unwrap().iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k) {
            for edge in edges {
                std::fs::write(&file, format!("[{section}]\n{key} = {edge}\n")).unwrap();
                let outcome = std::panic::catch_unwind(|| {
                    let Ok(cfg) = Config::from_file(&file) else { return Ok(()) };
                    match cfg.validate() {
                        Err(e) => Err(format!("{e:#}")),
                        Ok(()) => {
                            let json = serde_json::to_value(&cfg).unwrap();
                            assert!(!json[section][key].is_null(), "{section}.{key} = {edge} passed validation but is not finite");
                            let _ = cfg.to_toml();
                            Ok(())
                        }
                    }
                });
                let verdict = outcome.unwrap_or_else(|_| panic!("[{section}] {key} = {edge}: a panic"));
                if let Err(e) = verdict {
                    let flag = key.replace('_', "-");
                    // Validation stops at the first problem, which is this setting's (the rest are defaults).
                    assert!(e.contains(&flag) || e.contains("nothing to train"), "[{section}] {key} = {edge}: the error does not name --{flag}: {e}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "{checked} settings checked");
}

/// `bytes` (a safetensors file of f32 tensors) with the value at a random position of a random
/// tensor set to `bad`, re-serialised.
fn poison_safetensors(bytes: &[u8], bad: f32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().filter(|(_, v)| v.dtype() == safetensors::Dtype::F32).map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec())).collect();
    tensors.sort();
    let pick = rng.random_range(0..tensors.len());
    let (_, _, data) = &mut tensors[pick];
    let at = 4 * rng.random_range(0..data.len() / 4);
    data[at..at + 4].copy_from_slice(&bad.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())).collect();
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    safetensors::serialize(views, meta.metadata().clone()).unwrap()
}

#[test]
fn a_non_finite_value_in_any_tensor_file_is_refused() {
    // A NaN or an infinity at a random place of every kind of tensor file we read — checkpoint
    // weights and BN statistics, optimiser state, weights to import, features — is an error, never
    // a network or features to score.
    use simclr::checkpoint;
    use simclr::config::{Config, ModelArgs, ModelSettings, RunArgs};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let device = simclr::default_device();
    let cfg = Config { model: ModelSettings { width: 0.0625, proj_dim: 8, image_size: 16, ..Default::default() }, ..Config::default() };
    let ad = device.clone().autodiff();
    let model = cfg.model(16).init_seeded(0, &ad);
    let z = model.forward(burn::tensor::Tensor::ones([2, 3, 16, 16], &ad));
    let grads = burn::optim::GradientsParams::from_grads(z.last().unwrap().clone().sum().backward(), &model);
    let mut optim = simclr::optim::Optimizer::new(cfg.rule());
    let model = optim.step(0.1, model, grads);
    let ckpt = checkpoint::save(d, &cfg, &model, &optim, &checkpoint::TrainState { step: 1, epoch: 0, seed: 0 }).unwrap();
    let weights = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let state = std::fs::read(ckpt.join("optimizer.safetensors")).unwrap();
    let fresh = cfg.model(16).init(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // An imported file of torchvision names: the fixture, re-saved as safetensors.
    let fixture = simclr::import::read_tensors(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet18-w0.125.pth")).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = fixture
        .iter()
        .map(|(n, t)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape().to_vec(), t.as_bytes()).unwrap()))
        .collect();
    let import_seed = safetensors::serialize(views, None).unwrap();
    let import_file = d.join("import.safetensors");
    std::fs::write(&import_file, &import_seed).unwrap();
    let import = |file: &Path| simclr::import::import(file, None, &ModelArgs::default(), &RunArgs::default(), &device).map(|_| ());
    import(&import_file).expect("the unpoisoned file imports");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for round in 0..8 {
            let file = d.join("poisoned.safetensors");
            std::fs::write(&file, poison_safetensors(&weights, bad, &mut rng)).unwrap();
            let e = format!("{:#}", checkpoint::load_model(fresh.clone(), &file).err().unwrap_or_else(|| panic!("weights with {bad} (round {round}) loaded")));
            assert!(e.contains("NaN or an infinity"), "{e}");
            std::fs::write(&file, poison_safetensors(&state, bad, &mut rng)).unwrap();
            assert!(simclr::optim::Optimizer::load(cfg.rule(), &file, &fresh, &device).is_err(), "optimiser state with {bad} (round {round}) loaded");
            std::fs::write(&import_file, poison_safetensors(&import_seed, bad, &mut rng)).unwrap();
            // A poisoned fc (left out by the import) is no harm; every tensor the network takes is checked.
            if let Ok(()) = import(&import_file) {
                let bytes = std::fs::read(&import_file).unwrap();
                let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap().tensors();
                let poisoned: Vec<String> = tensors.iter().filter(|(_, v)| v.data().chunks_exact(4).any(|b| !f32::from_le_bytes(b.try_into().unwrap()).is_finite())).map(|(n, _)| n.clone()).collect();
                assert!(poisoned.iter().all(|n| n.contains("fc.")), "an import with {bad} in {poisoned:?} succeeded");
            }
            let n = rng.random_range(1..6);
            let mut values: Vec<f32> = (0..n * 3).map(|i| i as f32 * 0.1).collect();
            values[rng.random_range(0..n * 3)] = bad;
            let npy = d.join("npy");
            simclr::eval::embed::write(&simclr::eval::Features { n, dim: 3, data: values, labels: vec![] }, &npy).unwrap();
            assert!(simclr::eval::embed::read(&npy).is_err(), "features with {bad} (round {round}) read");
        }
    }
}
