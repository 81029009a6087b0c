//! The shape of one of the encoder's convolutions ([`Geometry`]), shared by the im2col kernels of
//! [`super::conv`] and the direct kernels of [`super::direct`].

use burn::tensor::ops::ConvOptions;

/// Shape of a square-kernel convolution without groups, dilation or bias (all the ResNet uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl Geometry {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    pub(crate) fn pixels(&self) -> usize {
        self.ho() * self.wo()
    }

    pub(crate) fn patch(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Images per chunk: enough output pixels for a GEMM reduction of ~4k, at most ~64 MiB of columns.
    pub(crate) fn chunk(&self) -> usize {
        let by_pixels = 4096usize.div_ceil(self.pixels());
        let by_memory = (16 << 20) / (self.patch() * self.pixels()).max(1);
        by_pixels.min(by_memory).clamp(1, self.batch.max(1))
    }

    /// The Burn options of this convolution.
    pub fn options(&self) -> ConvOptions<2> {
        options(self.stride, self.pad)
    }

    /// Input row/column of output `o` through kernel tap `t`, if inside the image of side `side`.
    pub(crate) fn source(&self, o: usize, t: usize, side: usize) -> Option<usize> {
        (o * self.stride + t).checked_sub(self.pad).filter(|&i| i < side)
    }

    /// The outputs `lo..hi` whose tap `t` falls inside an image side of `side` (the others read
    /// padding).
    pub(crate) fn inside(&self, t: usize, side: usize, outputs: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(t).div_ceil(self.stride).min(outputs);
        let hi = (side + self.pad).saturating_sub(t).div_ceil(self.stride).clamp(lo, outputs);
        (lo, hi)
    }
}

/// Burn's options for a convolution with this stride and zero padding, no dilation or groups.
pub(crate) fn options(stride: usize, pad: usize) -> ConvOptions<2> {
    ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1)
}
