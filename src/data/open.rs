//! Opening a dataset: the formats (`--dataset`), their train / test / pretraining splits, the
//! held-out part of a folder, and the built-in Fashion-MNIST subset.

use super::{cifar, folder, idx, stl10, DataError, Dataset, InMemoryDataset, Subset};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The dataset formats `--dataset` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

/// A test split drawn from a labelled folder that has none: each class, in an order shuffled
/// with `seed`, is cut into [`HoldOut::folds`] consecutive slices of `fraction` of its images
/// (rounded; the last slice the rest), and slice `fold` is the test split, the others the
/// training split (pretraining's too). Over every fold each image is tested once (k-fold); fold 0
/// is the first `fraction` (at least one image, and one left to train on).
#[derive(Clone, Copy, Debug)]
pub struct HoldOut {
    /// Share of each class held out, in (0, 1).
    pub fraction: f64,
    /// Seed of the draw.
    pub seed: u64,
    /// Which slice is held out, below [`HoldOut::folds`].
    pub fold: usize,
}

impl HoldOut {
    /// How many disjoint test slices `fraction` cuts each class into: ⌈1 / fraction⌉.
    pub fn folds(fraction: f64) -> usize {
        (1.0 / fraction - 1e-9).ceil().max(1.0) as usize
    }

    /// The positions `[start, end)` of the held-out slice in a shuffled class of `n` images:
    /// between the cuts at `fold` and `fold + 1`, cut `k` at `k · fraction · n` (rounded, kept
    /// within `[1, n − 1]` so that fold 0 tests one image and leaves one; the last cut `n`).
    /// The cuts never decrease, so the folds are disjoint and cover the class.
    fn slice(&self, n: usize) -> (usize, usize) {
        if n < 2 {
            return (0, 0);
        }
        let folds = Self::folds(self.fraction);
        let cut = |k: usize| match k {
            0 => 0,
            k if k >= folds => n,
            k => ((k as f64 * self.fraction * n as f64).round() as usize).clamp(1, n - 1),
        };
        (cut(self.fold), cut(self.fold + 1))
    }

    /// The images of `ds` (labelled) in `split`, in one order shuffled with the seed, so that
    /// `--limit` takes a sample of every class rather than the first classes.
    fn select(&self, ds: Arc<dyn Dataset>, split: Split) -> Arc<dyn Dataset> {
        let mut by_class = vec![Vec::new(); ds.num_classes()];
        (0..ds.len()).for_each(|i| by_class[ds.label(i).expect("a labelled folder")].push(i));
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (mut test, mut train) = (Vec::new(), Vec::new());
        for class in &mut by_class {
            class.shuffle(&mut rng);
            let (start, end) = self.slice(class.len());
            test.extend_from_slice(&class[start..end]);
            train.extend_from_slice(&class[..start]);
            train.extend_from_slice(&class[end..]);
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
    /// The class names of a dataset of this kind with fixed classes, in label order; `None` where
    /// the classes are its folders' (or it has none, or they are numbered: CIFAR-100).
    pub fn class_names(self) -> Option<Vec<String>> {
        let names: &[&str] = match self {
            DatasetKind::Builtin | DatasetKind::FashionMnist => &super::idx::FASHION_MNIST_CLASSES,
            DatasetKind::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::Cifar10 => &["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            DatasetKind::Stl10 => &["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"],
            DatasetKind::Cifar100 | DatasetKind::Folder | DatasetKind::UnlabelledFolder => return None,
        };
        Some(names.iter().map(|n| n.to_string()).collect())
    }

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
