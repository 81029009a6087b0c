//! Images held in memory ([`InMemoryDataset`]): the IDX, CIFAR and STL-10 readers' result and the
//! built-in images.

use super::{DataError, Dataset};
use crate::image::Image;

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
