//! Datasets: one abstraction ([`Dataset`]) that every reader implements, so pretraining and
//! evaluation see the same thing whatever the file format.
//!
//! Readers here: IDX (MNIST / Fashion-MNIST) and the built-in Fashion-MNIST subset embedded in the
//! binary (500 train + 100 test images per class, MIT licence, see `data/builtin/LICENSE`).

pub mod idx;

use crate::image::Image;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

    /// Keeps the first `n` images.
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len);
        self.pixels.truncate(n * self.height * self.width * self.channels);
        if let Some(l) = &mut self.labels {
            l.truncate(n);
        }
        self.len = n;
        self
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
    inner: std::sync::Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// A view of `inner` restricted to `indices` (each must be below `inner.len()`).
    pub fn new(inner: std::sync::Arc<dyn Dataset>, indices: Vec<usize>) -> Self {
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
}

/// Train or test part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training images (pretraining, fitting classifiers).
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
        Split::Train => (BUILTIN_TRAIN_IMAGES, BUILTIN_TRAIN_LABELS),
        Split::Test => (BUILTIN_TEST_IMAGES, BUILTIN_TEST_LABELS),
    };
    let parse = |b| idx::parse_idx(b).expect("the embedded dataset is valid");
    idx::from_arrays(parse(images), parse(labels)).expect("the embedded dataset is valid")
}

/// Opens `split` of a dataset of `kind` stored under `data` (ignored for the built-in one).
pub fn open(kind: DatasetKind, data: Option<&Path>, split: Split) -> Result<InMemoryDataset, DataError> {
    match kind {
        DatasetKind::Builtin => Ok(builtin(split)),
        DatasetKind::FashionMnist | DatasetKind::Mnist => {
            let dir = data.ok_or_else(|| {
                DataError::Invalid(format!(
                    "--dataset {} needs --data DIR (for Fashion-MNIST: /usr/share/datasets/fashion-mnist \
                     after `apt-get install -y dataset-fashion-mnist`)",
                    kind.name()
                ))
            })?;
            let name = match split {
                Split::Train => "train",
                Split::Test => "t10k",
            };
            idx::load_split(dir, name)
        }
    }
}

impl DatasetKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Builtin => "builtin",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
        }
    }
}
