//! CIFAR-10 and CIFAR-100, binary versions (Krizhevsky 2009).
//!
//! CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` (train) and `test_batch.bin`, records of
//! 1 label byte + 3072 pixel bytes (the 1024 red values of the 32×32 image row by row, then green,
//! then blue). CIFAR-100: `train.bin` and `test.bin`, records of a coarse (20-class) label byte, a
//! fine (100-class) label byte, then the same 3072 pixel bytes.

use super::{DataError, InMemoryDataset, Split};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar {
    /// 10 classes.
    Ten,
    /// 100 fine classes, or 20 coarse superclasses.
    Hundred {
        /// Use the 20 coarse labels instead of the 100 fine ones.
        coarse: bool,
    },
}

/// Loads a split of CIFAR from the folder holding its `.bin` files.
pub fn load(dir: &Path, which: Cifar, split: Split) -> Result<InMemoryDataset, DataError> {
    let files: Vec<String> = match (which, split) {
        (Cifar::Ten, Split::Test) => vec!["test_batch.bin".into()],
        (Cifar::Ten, _) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        (Cifar::Hundred { .. }, Split::Test) => vec!["test.bin".into()],
        (Cifar::Hundred { .. }, _) => vec!["train.bin".into()],
    };
    let (label_bytes, label_at, classes) = match which {
        Cifar::Ten => (1, 0, 10),
        Cifar::Hundred { coarse: true } => (2, 0, 20),
        Cifar::Hundred { coarse: false } => (2, 1, 100),
    };
    let record = label_bytes + PIXELS;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for name in files {
        let path = dir.join(&name);
        let raw = crate::files::read(&path, crate::files::ARRAY).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::Missing {
                path: path.clone(),
                hint: "download the CIFAR binary version and point --data at the folder holding its .bin files".into(),
            },
            _ => DataError::io(&path, e),
        })?;
        if raw.is_empty() || raw.len() % record != 0 {
            return Err(DataError::Corrupt {
                path,
                why: format!("{} bytes is not a whole number of {record}-byte records (truncated file?)", raw.len()),
            });
        }
        for rec in raw.chunks_exact(record) {
            let label = rec[label_at] as usize;
            if label >= classes {
                return Err(DataError::Corrupt { path: path.clone(), why: format!("label {label} is not below {classes}") });
            }
            labels.push(label);
            let px = &rec[label_bytes..];
            // Planar RGB → HWC.
            for p in 0..1024 {
                pixels.extend_from_slice(&[px[p], px[1024 + p], px[2048 + p]]);
            }
        }
    }
    let n = labels.len();
    InMemoryDataset::new(pixels, n, 32, 32, 3, Some(labels), classes).map_err(DataError::Invalid)
}
