//! Datasets: one abstraction ([`Dataset`]) that every reader implements, so pretraining and
//! evaluation see the same thing whatever the file format.
//!
//! Readers: IDX (MNIST / Fashion-MNIST), CIFAR-10/100 and STL-10 binary, folders of image files
//! (labelled or not), and the built-in Fashion-MNIST subset embedded in the binary (500 train + 100
//! test images per class, MIT licence, see `data/builtin/LICENSE`).

//!
//! The parts: the [`Dataset`] trait and its errors here; images in [`memory`], datasets made of
//! others in [`subset`], the unreadable-image policy in [`bad`], opening a dataset by format and
//! split in [`open`](mod@open), the view loader in [`loader`], and a module per file format.

pub mod bad;
pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod memory;
pub mod open;
pub mod stl10;
pub mod subset;

pub use bad::{BadImages, SkipLog};
pub use memory::InMemoryDataset;
pub use open::{builtin, open, DatasetKind, HoldOut, Source, Split};
pub use subset::{class_balanced, first, Concat, Subset};

use crate::image::Image;
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
    /// The name of class `label`, where the dataset carries names (an image folder's are its
    /// class folders').
    fn class_name(&self, _label: usize) -> Option<String> {
        None
    }
}
