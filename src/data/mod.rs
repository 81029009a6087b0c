//! Datasets: one abstraction ([`Dataset`]) that every reader implements, so pretraining and
//! evaluation see the same thing whatever the file format.
//!
//! Readers: IDX (MNIST / Fashion-MNIST), CIFAR-10/100 and STL-10 binary, folders of image files
//! (labelled or not), and the built-in Fashion-MNIST subset embedded in the binary (500 train + 100
//! test images per class, MIT licence, see `data/builtin/LICENSE`).

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod stl10;

use crate::image::Image;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Errors from reading datasets; each names the file and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder that should exist does not.
    #[error("{path}: not found; {hint}")]
    Missing {
        /// What was looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A file exists but cannot be read.
    #[error("{path}: cannot read ({source})")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file was read but its contents are not what the format says.
    #[error("{path}: {why}; re-download or re-install the file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An image larger than the decoder's memory limit (512 MiB): read, not decoded.
    #[error("{path}: {why}; shrink the image (e.g. `convert FILE -resize 4096x4096 FILE`) or leave it out with --file-list")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The decoder's words.
        why: String,
    },
    /// Anything else about the request (index out of range, inconsistent shapes).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An I/O error on `path` (a missing file becomes [`DataError::Missing`]).
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing { path: path.to_path_buf(), hint: "check the --data path".into() }
        } else {
            DataError::Io { path: path.to_path_buf(), source }
        }
    }
}

/// A collection of images, optionally labelled.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether the dataset holds no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image `index` as RGB in `[0, 1]`.
    fn image(&self, index: usize) -> Result<Image, DataError>;
    /// Label of image `index`, if the dataset is labelled.
    fn label(&self, index: usize) -> Option<usize>;
    /// Number of classes (0 for an unlabelled dataset).
    fn num_classes(&self) -> usize;
    /// The file image `index` was read from, for datasets of image files.
    fn file(&self, _index: usize) -> Option<PathBuf> {
        None
    }
}

/// Images held in memory as 8-bit HWC pixels of one common size.
pub struct InMemoryDataset {
    pixels: Vec<u8>,
    len: usize,
    height: usize,
    width: usize,
    channels: usize,
    labels: Option<Vec<usize>>,
    num_classes: usize,
}

impl InMemoryDataset {
    /// Wraps `len` images of `height × width × channels` bytes each (channels 1, 3 or 4).
    pub fn new(
        pixels: Vec<u8>,
        len: usize,
        height: usize,
        width: usize,
        channels: usize,
        labels: Option<Vec<usize>>,
        num_classes: usize,
    ) -> Result<Self, String> {
        if !matches!(channels, 1 | 3 | 4) {
            return Err(format!("images must have 1, 3 or 4 channels, found {channels}"));
        }
        if pixels.len() != len * height * width * channels {
            return Err(format!("{} bytes do not hold {len} images of {height}x{width}x{channels}", pixels.len()));
        }
        if let Some(l) = &labels {
            if l.len() != len {
                return Err(format!("{len} images but {} labels", l.len()));
            }
            if let Some(bad) = l.iter().find(|&&c| c >= num_classes) {
                return Err(format!("label {bad} is out of range for {num_classes} classes"));
            }
        }
        Ok(Self { pixels, len, height, width, channels, labels, num_classes })
    }

    /// Height and width of every image.
    pub fn image_shape(&self) -> (usize, usize) {
        (self.height, self.width)
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.len
    }

    fn image(&self, index: usize) -> Result<Image, DataError> {
        if index >= self.len {
            return Err(DataError::Invalid(format!("image index {index} out of range (dataset has {})", self.len)));
        }
        let size = self.height * self.width * self.channels;
        let px = &self.pixels[index * size..(index + 1) * size];
        Ok(Image::from_u8_hwc(px, self.height, self.width, self.channels))
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[index])
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }
}

/// The images `indices` of another dataset, in that order (label subsets, file lists).
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

/// The first `limit` images of `ds` (`--limit`; 0, or a limit past its end, keeps them all).
pub fn first(ds: Arc<dyn Dataset>, limit: usize) -> Arc<dyn Dataset> {
    if limit == 0 || limit >= ds.len() {
        return ds;
    }
    Arc::new(Subset::new(ds, (0..limit).collect()))
}

impl Subset {
    /// A view of `inner` restricted to `indices` (each must be below `inner.len()`).
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Self {
        assert!(indices.iter().all(|&i| i < inner.len()), "subset index out of range");
        Self { inner, indices }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn image(&self, index: usize) -> Result<Image, DataError> {
        self.inner.image(self.indices[index])
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.inner.label(self.indices[index])
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn file(&self, index: usize) -> Option<PathBuf> {
        self.inner.file(*self.indices.get(index)?)
    }
}

/// Several datasets one after the other (STL-10's unlabelled + train images for pretraining).
pub struct Concat {
    parts: Vec<Arc<dyn Dataset>>,
}

impl Concat {
    /// Joins `parts` in order.
    pub fn new(parts: Vec<Arc<dyn Dataset>>) -> Self {
        Self { parts }
    }

    fn locate(&self, mut index: usize) -> Option<(&dyn Dataset, usize)> {
        for p in &self.parts {
            if index < p.len() {
                return Some((p.as_ref(), index));
            }
            index -= p.len();
        }
        None
    }
}

impl Dataset for Concat {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    fn image(&self, index: usize) -> Result<Image, DataError> {
        let (d, i) = self
            .locate(index)
            .ok_or_else(|| DataError::Invalid(format!("image index {index} out of range (dataset has {})", self.len())))?;
        d.image(i)
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.locate(index).and_then(|(d, i)| d.label(i))
    }
    fn num_classes(&self) -> usize {
        self.parts.iter().map(|p| p.num_classes()).max().unwrap_or(0)
    }
    fn file(&self, index: usize) -> Option<PathBuf> {
        self.locate(index).and_then(|(d, i)| d.file(i))
    }
}

/// A class-balanced sample of the images whose labels are `labels`: `take(class, images of the
/// class)` of each class, drawn with `seed`, as sorted indices.
pub fn class_balanced(
    labels: &[usize],
    classes: usize,
    seed: u64,
    take: impl Fn(usize, usize) -> anyhow::Result<usize>,
) -> anyhow::Result<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut sample = Vec::new();
    for (c, mut members) in by_class.into_iter().enumerate() {
        let n = take(c, members.len())?.min(members.len());
        members.shuffle(&mut rng);
        sample.extend_from_slice(&members[..n]);
    }
    sample.sort_unstable();
    Ok(sample)
}

/// What to do with an image that cannot be read (corrupt, truncated, empty, unreadable).
#[derive(Clone)]
pub enum BadImages {
    /// Stop with an error naming the file (`--strict`).
    Fail,
    /// Skip it, with a warning, and count it in the log.
    Skip(Arc<SkipLog>),
}

/// The images skipped so far.
#[derive(Default)]
pub struct SkipLog {
    skipped: Mutex<Vec<String>>,
}

impl SkipLog {
    fn record(&self, e: &DataError) {
        let mut s = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        let msg = e.to_string();
        if !s.contains(&msg) {
            tracing::warn!("skipping an unreadable image: {msg}");
            s.push(msg);
        }
    }

    /// The distinct problems recorded since the last call, emptying the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.skipped.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl BadImages {
    /// `Fail` when `strict`, else `Skip` with a fresh log.
    pub fn new(strict: bool) -> Self {
        if strict { BadImages::Fail } else { BadImages::Skip(Arc::default()) }
    }

    /// Image `index`, or under `Skip` the next readable image after it: returns the index actually
    /// read, so its label goes with it (never a silently wrong label).
    pub fn read(&self, ds: &dyn Dataset, index: usize) -> Result<(usize, Image), DataError> {
        let mut i = index;
        loop {
            match (ds.image(i), self) {
                (Ok(img), _) => return Ok((i, img)),
                (Err(e), BadImages::Fail) => return Err(e),
                (Err(e), BadImages::Skip(log)) => {
                    log.record(&e);
                    i = (i + 1) % ds.len();
                    if i == index {
                        return Err(DataError::Invalid("no image of the dataset can be read".into()));
                    }
                }
            }
        }
    }

    /// Image `index`, or `None` (logged) when it is unreadable and bad images are skipped.
    pub fn read_exact(&self, ds: &dyn Dataset, index: usize) -> Result<Option<Image>, DataError> {
        match (ds.image(index), self) {
            (Ok(img), _) => Ok(Some(img)),
            (Err(e), BadImages::Fail) => Err(e),
            (Err(e), BadImages::Skip(log)) => {
                log.record(&e);
                Ok(None)
            }
        }
    }

    /// The log, when skipping.
    pub fn log(&self) -> Option<&SkipLog> {
        match self {
            BadImages::Skip(log) => Some(log),
            BadImages::Fail => None,
        }
    }
}

/// The dataset formats `--dataset` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The Fashion-MNIST subset built into the binary (no files needed).
    Builtin,
    /// Fashion-MNIST IDX files (`--data /usr/share/datasets/fashion-mnist`).
    FashionMnist,
    /// MNIST IDX files (same layout as Fashion-MNIST).
    Mnist,
    /// CIFAR-10 binary version (`data_batch_*.bin`, `test_batch.bin`).
    Cifar10,
    /// CIFAR-100 binary version (`train.bin`, `test.bin`), fine labels (`--coarse-labels` for 20).
    Cifar100,
    /// STL-10 binary version; pretraining uses unlabelled + train images.
    Stl10,
    /// A folder with one sub-folder of images per class (`--data` holds `train/` and `test/`, or
    /// is itself the training folder).
    Folder,
    /// Any tree of images, no labels.
    UnlabelledFolder,
}

/// Train or test part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The images pretraining sees (train, plus unlabelled images where the dataset has them).
    Pretrain,
    /// The labelled training images (fitting classifiers).
    Train,
    /// The held-out test images (reporting accuracy).
    Test,
}

const BUILTIN_TRAIN_IMAGES: &[u8] = include_bytes!("../../data/builtin/train-images-idx3-ubyte.gz");
const BUILTIN_TRAIN_LABELS: &[u8] = include_bytes!("../../data/builtin/train-labels-idx1-ubyte.gz");
const BUILTIN_TEST_IMAGES: &[u8] = include_bytes!("../../data/builtin/t10k-images-idx3-ubyte.gz");
const BUILTIN_TEST_LABELS: &[u8] = include_bytes!("../../data/builtin/t10k-labels-idx1-ubyte.gz");

/// The built-in Fashion-MNIST subset: 5,000 train / 1,000 test images, 28×28, class-balanced.
pub fn builtin(split: Split) -> InMemoryDataset {
    let (images, labels) = match split {
        Split::Train | Split::Pretrain => (BUILTIN_TRAIN_IMAGES, BUILTIN_TRAIN_LABELS),
        Split::Test => (BUILTIN_TEST_IMAGES, BUILTIN_TEST_LABELS),
    };
    let parse = |b| idx::parse_idx(b).expect("the embedded dataset is valid");
    idx::from_arrays(parse(images), parse(labels)).expect("the embedded dataset is valid")
}

/// Where a dataset is and how to read it.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// Format.
    pub kind: Option<DatasetKind>,
    /// Folder holding the files.
    pub data: Option<PathBuf>,
    /// Keep only the files this list names (image folders).
    pub file_list: Option<PathBuf>,
    /// Cache resized images here (image folders).
    pub cache: Option<folder::Cache>,
    /// CIFAR-100: the 20 coarse labels instead of the 100 fine ones.
    pub coarse_labels: bool,
    /// Labelled folders: leave out the classes with fewer images than this (0 keeps all).
    pub min_class_images: usize,
    /// Labelled folders without `test/`: hold out part of each class as the test split.
    pub hold_out: Option<HoldOut>,
}

/// A test split drawn from a labelled folder that has none: of each class, in an order shuffled
/// with `seed`, the first `fraction` of its images (rounded; at least one, and one left to train
/// on) are the test split, the rest the training split (pretraining's too).
#[derive(Clone, Copy, Debug)]
pub struct HoldOut {
    /// Share of each class held out, in (0, 1).
    pub fraction: f64,
    /// Seed of the draw.
    pub seed: u64,
}

impl HoldOut {
    /// The images of `ds` (labelled) in `split`, in one order shuffled with the seed, so that
    /// `--limit` takes a sample of every class rather than the first classes.
    fn select(&self, ds: Arc<dyn Dataset>, split: Split) -> Arc<dyn Dataset> {
        let mut by_class = vec![Vec::new(); ds.num_classes()];
        (0..ds.len()).for_each(|i| by_class[ds.label(i).expect("a labelled folder")].push(i));
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (mut test, mut train) = (Vec::new(), Vec::new());
        for class in &mut by_class {
            class.shuffle(&mut rng);
            let n = class.len();
            let held = ((self.fraction * n as f64).round() as usize).max(1).min(n.saturating_sub(1));
            test.extend_from_slice(&class[..held]);
            train.extend_from_slice(&class[held..]);
        }
        let mut picked = if split == Split::Test { test } else { train };
        picked.shuffle(&mut rng);
        Arc::new(Subset::new(ds, picked))
    }
}

/// For a labelled folder, `DIR/train` or `DIR/test` when they exist, else `DIR` itself for training.
fn split_folder(dir: &Path, split: Split) -> Result<PathBuf, DataError> {
    let name = if split == Split::Test { "test" } else { "train" };
    let sub = dir.join(name);
    if sub.is_dir() {
        Ok(sub)
    } else if split == Split::Test {
        Err(DataError::Missing { path: sub, hint: "a labelled folder dataset needs a test/ sub-folder for evaluation".into() })
    } else {
        Ok(dir.to_path_buf())
    }
}

/// Opens `split` of the dataset `src` describes.
pub fn open(src: &Source, split: Split) -> Result<Arc<dyn Dataset>, DataError> {
    let kind = src.kind.unwrap_or(DatasetKind::Builtin);
    if kind == DatasetKind::Builtin {
        return Ok(Arc::new(builtin(split)));
    }
    let dir = src.data.as_deref().ok_or_else(|| {
        DataError::Invalid(format!(
            "--dataset {} needs --data DIR (for Fashion-MNIST: /usr/share/datasets/fashion-mnist after `apt-get install -y dataset-fashion-mnist`)",
            kind.name()
        ))
    })?;
    let idx_name = if split == Split::Test { "t10k" } else { "train" };
    Ok(match kind {
        DatasetKind::Builtin => unreachable!(),
        DatasetKind::FashionMnist | DatasetKind::Mnist => Arc::new(idx::load_split(dir, idx_name)?),
        DatasetKind::Cifar10 => Arc::new(cifar::load(dir, cifar::Cifar::Ten, split)?),
        DatasetKind::Cifar100 => Arc::new(cifar::load(dir, cifar::Cifar::Hundred { coarse: src.coarse_labels }, split)?),
        DatasetKind::Stl10 => stl10::load(dir, split)?,
        DatasetKind::Folder => {
            let open_folder = |root: &Path| folder::ImageFolder::open(root, true, src.file_list.as_deref(), src.cache.clone());
            // One class list for the dataset, the training folder's (less its small classes):
            // the test folder's classes are matched to it by name.
            let train_classes = || -> Result<folder::ImageFolder, DataError> {
                let mut train = open_folder(&split_folder(dir, Split::Train)?)?;
                train.drop_small_classes(src.min_class_images)?;
                Ok(train)
            };
            match src.hold_out {
                None if split == Split::Test => {
                    let train = train_classes()?;
                    let mut test = open_folder(&split_folder(dir, split)?)?;
                    test.relabel_as(&train)?;
                    Arc::new(test)
                }
                None => Arc::new(train_classes()?),
                Some(_) if dir.join("test").is_dir() => {
                    return Err(DataError::Invalid(format!(
                        "--test-fraction: {} has a test/ split of its own; drop --test-fraction to use it",
                        dir.display()
                    )))
                }
                Some(hold_out) => hold_out.select(Arc::new(train_classes()?), split),
            }
        }
        DatasetKind::UnlabelledFolder => {
            if split == Split::Pretrain {
                Arc::new(folder::ImageFolder::open(dir, false, src.file_list.as_deref(), src.cache.clone())?)
            } else {
                return Err(DataError::Invalid(format!(
                    "--dataset unlabelled-folder has no labels: evaluate with --dataset folder (one sub-folder per class) or another labelled set, not {}",
                    dir.display()
                )));
            }
        }
    })
}

impl DatasetKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Builtin => "builtin",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Stl10 => "stl10",
            DatasetKind::Folder => "folder",
            DatasetKind::UnlabelledFolder => "unlabelled-folder",
        }
    }
}
