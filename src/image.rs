//! A small RGB float image type shared by the datasets and the augmentations.
//!
//! Pixels are `f32` in `[0, 1]`, stored channel-major (CHW) so a batch of images is already in the
//! `[N, 3, H, W]` layout the ResNet takes.

/// An RGB image, CHW, values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `3 * height * width` values: the red plane, then green, then blue.
    pub data: Vec<f32>,
}

impl Image {
    /// A black image.
    pub fn zeros(height: usize, width: usize) -> Self {
        Self { height, width, data: vec![0.0; 3 * height * width] }
    }

    /// Builds an RGB image from 8-bit pixels in HWC order with `channels` = 1 (grey, replicated to
    /// three channels so the colour pipeline applies unchanged), 3 (RGB) or 4 (RGBA, alpha dropped).
    pub fn from_u8_hwc(pixels: &[u8], height: usize, width: usize, channels: usize) -> Self {
        assert!(matches!(channels, 1 | 3 | 4), "channels must be 1, 3 or 4, got {channels}");
        assert_eq!(pixels.len(), height * width * channels, "pixel buffer does not match its shape");
        let plane = height * width;
        let mut data = vec![0.0; 3 * plane];
        let (r, rest) = data.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        const SCALE: f32 = 1.0 / 255.0;
        // One pass per layout, no per-pixel branches, so the loops vectorise.
        if channels == 1 {
            for (((px, r), g), b) in pixels.iter().zip(r.iter_mut()).zip(g.iter_mut()).zip(b.iter_mut()) {
                let v = f32::from(*px) * SCALE;
                (*r, *g, *b) = (v, v, v);
            }
        } else {
            for (((px, r), g), b) in pixels.chunks_exact(channels).zip(r.iter_mut()).zip(g.iter_mut()).zip(b.iter_mut()) {
                (*r, *g, *b) = (f32::from(px[0]) * SCALE, f32::from(px[1]) * SCALE, f32::from(px[2]) * SCALE);
            }
        }
        Self { height, width, data }
    }

    /// Number of pixels in one channel.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Value of channel `c` at row `y`, column `x`.
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// The image as 8-bit RGB, HWC, for writing PNG files.
    pub fn to_u8_hwc(&self) -> Vec<u8> {
        let plane = self.plane();
        let mut out = vec![0u8; 3 * plane];
        for p in 0..plane {
            for c in 0..3 {
                out[p * 3 + c] = (self.data[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        out
    }
}
