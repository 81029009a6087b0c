//! IDX reader (the MNIST / Fashion-MNIST file format), gzip-compressed or raw.
//!
//! Format: big-endian magic `0x0000 <type> <ndims>`, then `ndims` big-endian u32 sizes, then the
//! values. Images are `u8` with 3 dims (N, H, W), labels `u8` with 1 dim (N).

use super::{DataError, InMemoryDataset};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The class names of Fashion-MNIST, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
];

/// A decoded IDX array of `u8`.
#[derive(Debug)]
pub struct IdxArray {
    /// Sizes of each dimension.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<u8>,
}

/// Reads a (possibly gzip-compressed) IDX file of unsigned bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = crate::files::read(path, crate::files::ARRAY).map_err(|e| DataError::io(path, e))?;
    parse_idx(&raw).map_err(|why| DataError::Corrupt { path: path.to_path_buf(), why })
}

/// How many times its compressed size a gzip IDX file may expand to. Image data compresses a few
/// times (Fashion-MNIST: 1.8); a file that expands far more is a decompression bomb, refused before
/// it fills the memory.
pub const MAX_GZIP_RATIO: u64 = 256;

/// Parses IDX bytes (gzip detected by its magic `1f 8b`).
pub fn parse_idx(raw: &[u8]) -> Result<IdxArray, String> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let limit = MAX_GZIP_RATIO * raw.len() as u64 + (1 << 20);
        let mut out = Vec::new();
        GzDecoder::new(raw).take(limit + 1).read_to_end(&mut out).map_err(|e| format!("gzip stream is broken ({e})"))?;
        if out.len() as u64 > limit {
            return Err(format!("gzip stream expands to over {limit} bytes, {MAX_GZIP_RATIO} times its size: a decompression bomb, not IDX data"));
        }
        out
    } else {
        raw.to_vec()
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic number)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!("IDX element type 0x{:02x} is not unsigned byte (0x08)", bytes[2]));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err("IDX header is truncated".into());
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let got = bytes.len() - header;
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| format!("IDX header {dims:?} declares more values than memory can hold"))?;
    if got != expected {
        return Err(format!("IDX body has {got} bytes but its header {dims:?} says {expected} (truncated file?)"));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Locates `{split}-images-idx3-ubyte[.gz]` and `{split}-labels-idx1-ubyte[.gz]` in `dir`.
fn split_files(dir: &Path, split: &str) -> Result<(PathBuf, PathBuf), DataError> {
    let find = |stem: String| -> Result<PathBuf, DataError> {
        [format!("{stem}.gz"), stem.clone()]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
            .ok_or_else(|| DataError::Missing {
                path: dir.join(format!("{stem}.gz")),
                hint: "install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` \
                       (files in /usr/share/datasets/fashion-mnist) or point --data at a folder with the IDX files"
                    .into(),
            })
    };
    Ok((find(format!("{split}-images-idx3-ubyte"))?, find(format!("{split}-labels-idx1-ubyte"))?))
}

/// Loads one split (`train` or `t10k`) of an MNIST-layout folder.
pub fn load_split(dir: &Path, split: &str) -> Result<InMemoryDataset, DataError> {
    let (images_path, labels_path) = split_files(dir, split)?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    from_arrays(images, labels).map_err(|why| DataError::Corrupt { path: images_path, why })
}

/// Pairs an image array `(N, H, W)` with a label array `(N)`.
pub fn from_arrays(images: IdxArray, labels: IdxArray) -> Result<InMemoryDataset, String> {
    let [n, h, w] = images.dims[..] else {
        return Err(format!("images must have 3 dimensions (N, H, W), found {:?}", images.dims));
    };
    if labels.dims != [n] {
        return Err(format!("{n} images but labels have shape {:?}", labels.dims));
    }
    let num_classes = labels.data.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    InMemoryDataset::new(images.data, n, h, w, 1, Some(labels.data.iter().map(|&l| l as usize).collect()), num_classes)
}
