//! STL-10, binary version (Coates et al. 2011): 96×96 colour images, `train_X.bin` / `train_y.bin`
//! (5,000), `test_X.bin` / `test_y.bin` (8,000), `unlabeled_X.bin` (100,000). Each image is stored
//! channel by channel, each channel **column-major**; labels are bytes 1–10.
//!
//! Pretraining uses unlabelled + train images, the usual protocol; evaluation uses train / test.

use super::{Concat, DataError, Dataset, InMemoryDataset, Split};
use std::path::Path;
use std::sync::Arc;

const SIDE: usize = 96;
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    crate::files::read(path, crate::files::ARRAY).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing {
            path: path.to_path_buf(),
            hint: "download the STL-10 binary version and point --data at the folder holding its .bin files".into(),
        },
        _ => DataError::io(path, e),
    })
}

/// Converts STL-10's channel-by-channel column-major layout to HWC.
fn to_hwc(raw: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    if raw.is_empty() || raw.len() % IMAGE_BYTES != 0 {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            why: format!("{} bytes is not a whole number of 96×96×3 images (truncated file?)", raw.len()),
        });
    }
    let mut out = vec![0u8; raw.len()];
    for (img, dst) in raw.chunks_exact(IMAGE_BYTES).zip(out.chunks_exact_mut(IMAGE_BYTES)) {
        for c in 0..3 {
            for x in 0..SIDE {
                for y in 0..SIDE {
                    dst[(y * SIDE + x) * 3 + c] = img[c * SIDE * SIDE + x * SIDE + y];
                }
            }
        }
    }
    Ok(out)
}

fn labelled(dir: &Path, stem: &str) -> Result<InMemoryDataset, DataError> {
    let x_path = dir.join(format!("{stem}_X.bin"));
    let y_path = dir.join(format!("{stem}_y.bin"));
    let pixels = to_hwc(&read(&x_path)?, &x_path)?;
    let n = pixels.len() / IMAGE_BYTES;
    let y = read(&y_path)?;
    if y.len() != n {
        return Err(DataError::Corrupt { path: y_path, why: format!("{} labels for {n} images", y.len()) });
    }
    if let Some(bad) = y.iter().find(|&&l| !(1..=10).contains(&l)) {
        return Err(DataError::Corrupt { path: y_path, why: format!("label {bad} is not in 1..=10") });
    }
    let labels = y.iter().map(|&l| l as usize - 1).collect();
    InMemoryDataset::new(pixels, n, SIDE, SIDE, 3, Some(labels), 10).map_err(DataError::Invalid)
}

/// The labelled train or test split.
pub fn load(dir: &Path, split: Split) -> Result<Arc<dyn Dataset>, DataError> {
    match split {
        Split::Train => Ok(Arc::new(labelled(dir, "train")?)),
        Split::Test => Ok(Arc::new(labelled(dir, "test")?)),
        Split::Pretrain => {
            let path = dir.join("unlabeled_X.bin");
            let pixels = to_hwc(&read(&path)?, &path)?;
            let n = pixels.len() / IMAGE_BYTES;
            let unlabeled = InMemoryDataset::new(pixels, n, SIDE, SIDE, 3, None, 0).map_err(DataError::Invalid)?;
            Ok(Arc::new(Concat::new(vec![Arc::new(unlabeled), Arc::new(labelled(dir, "train")?)])))
        }
    }
}
