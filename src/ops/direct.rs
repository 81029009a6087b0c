//! A blocked direct convolution on channels-last (NHWC) activations: the encoder's convolutions on
//! the `flex` backend without im2col (issue 26).
//!
//! Convolutions are nearly all of a ResNet's arithmetic (§2.1, App. B.9). Burn's `flex` lowers
//! them to im2col + GEMM, which at the 4–32 px layers of a CIFAR-stem ResNet is bound by writing
//! and packing the k²-times-larger column matrix rather than by the multiply-adds
//! (`docs/performance.md`). Here, as in oneDNN's direct convolutions, the activations are laid out
//! channels-last with a zero border and a register-blocked micro-kernel reads them in place:
//!
//! - **forward**: a block of 12 output pixels × 32 output channels is 24 vector accumulators; for
//!   every kernel tap and input channel it loads two weight vectors and broadcasts one input value
//!   per pixel (`y[p, co] = Σ_tap Σ_ci x[p + tap, ci] · W[tap, ci, co]`);
//! - **input gradient** (stride 1): the forward of the output gradient, padded by `k − 1 − pad`,
//!   with the kernel flipped and its channels swapped (`dX = dY ⋆ rot180(W)ᵀ`);
//! - **weight gradient**: a block of 12 input channels × 32 output channels of one tap accumulates
//!   `x[p + tap, ci] · dy[p, co]` over a chunk of output pixels that stays in cache, each thread
//!   over its share of the pixels, summed at the end.
//!
//! The kernels are AVX-512 (`std::arch`), chosen at run time; [`available`] is false elsewhere and
//! [`crate::ops::conv`] keeps Burn's path there, and for the shapes these kernels do not take.

use super::geometry::Geometry;
use rayon::prelude::*;

/// `f32` lanes of one vector register.
const LANES: usize = 16;
/// Output channels of a register block: two vectors.
const BLOCK_CHANNELS: usize = 2 * LANES;
/// Output pixels of a forward register block (12 × 2 accumulators of the 32 registers).
const BLOCK_PIXELS: usize = 12;
/// Input channels of a weight-gradient register block.
const BLOCK_INPUTS: usize = 12;
/// Output pixels of one forward task (a multiple of [`BLOCK_PIXELS`]).
const TASK_PIXELS: usize = 8 * BLOCK_PIXELS;
/// Output pixels of one step of the weight gradient's reduction.
const CHUNK_PIXELS: usize = 128;

/// Whether this CPU runs the direct kernels (x86-64 with AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the forward and the weight gradient of `g` take the direct kernels: output channels in
/// whole vectors.
pub fn takes(g: &Geometry) -> bool {
    available() && g.cout % LANES == 0 && g.pad < g.k
}

/// Whether the input gradient of `g` takes the direct kernel: stride 1 (a plain convolution of the
/// output gradient) and input channels in whole vectors.
pub fn takes_input_grad(g: &Geometry) -> bool {
    takes(g) && g.stride == 1 && g.cin % LANES == 0
}

/// The convolution of `x` (`[batch, cin, h, w]`) by Burn's weight (`[cout, cin, k, k]`), in
/// Burn's layout `[batch, cout, ho, wo]`.
pub fn forward(x: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    assert!(takes(g), "the direct kernels do not take {g:?} on this CPU");
    let xp = Padded::of(x, g.batch, g.cin, g.h, g.w, g.pad);
    forward_packed(&xp, &pack_weight(weight, g.cout, g.cin, g.k, false), g)
}

/// Gradients of the convolution given its input `x` and the output gradient `dy`, all in Burn's
/// layout: the input gradient when `input` (requires [`takes_input_grad`]) and the weight gradient
/// `[cout, cin, k, k]`.
pub fn backward(x: &[f32], weight: &[f32], dy: &[f32], g: &Geometry, input: bool) -> (Option<Vec<f32>>, Vec<f32>) {
    assert!(takes(g) && (!input || takes_input_grad(g)), "the direct kernels do not take {g:?} (input gradient: {input}) on this CPU");
    // The input gradient is the stride-1 convolution of dy padded by k − 1 − pad with the kernel
    // flipped and its channels swapped; the weight gradient reads the same padded copy.
    let dy_pad = if input { g.k - 1 - g.pad } else { 0 };
    let dyp = Padded::of(dy, g.batch, g.cout, g.ho(), g.wo(), dy_pad);
    let dx = input.then(|| {
        let transposed = Geometry { batch: g.batch, cin: g.cout, h: g.ho(), w: g.wo(), cout: g.cin, k: g.k, stride: 1, pad: dy_pad };
        let flipped = pack_weight(&swap_channels(weight, g.cout, g.cin, g.k * g.k), g.cin, g.cout, g.k, true);
        forward_packed(&dyp, &flipped, &transposed)
    });
    let xp = Padded::of(x, g.batch, g.cin, g.h, g.w, g.pad);
    (dx, weight_grad(&xp, &dyp, g))
}

/// Activations `[batch, c, h, w]` copied channels-last with a zero border: `[batch, h + 2·pad,
/// w + 2·pad, c]`.
struct Padded {
    data: Vec<f32>,
    /// Rows and columns of each image with the border, channels, border width.
    h: usize,
    w: usize,
    c: usize,
    pad: usize,
}

impl Padded {
    fn of(x: &[f32], batch: usize, c: usize, h: usize, w: usize, pad: usize) -> Self {
        let (hp, wp, hw) = (h + 2 * pad, w + 2 * pad, h * w);
        assert_eq!(x.len(), batch * c * hw);
        let mut data = vec![0f32; batch * hp * wp * c];
        data.par_chunks_mut((hp * wp * c).max(1)).zip(x.par_chunks((c * hw).max(1))).for_each(|(dst, src)| {
            for y in 0..h {
                // Row y of every channel plane (a `c × w` matrix with row stride `hw`) into the
                // inside of padded row y + pad.
                transpose(&src[y * w..], hw, c, w, &mut dst[((y + pad) * wp + pad) * c..][..w * c], c);
            }
        });
        Padded { data, h: hp, w: wp, c, pad }
    }

    /// Offset of each pixel (`[batch, h, w]` order, the border left out) in the buffer.
    fn interior(&self) -> Vec<usize> {
        let (h, w, batch) = (self.h - 2 * self.pad, self.w - 2 * self.pad, self.data.len() / (self.h * self.w * self.c).max(1));
        let (hp, wp, pad, c) = (self.h, self.w, self.pad, self.c);
        (0..batch).flat_map(|n| (0..h).flat_map(move |y| (0..w).map(move |x| ((n * hp + y + pad) * wp + x + pad) * c))).collect()
    }
}

/// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i < rows`, `j < cols`.
fn transpose(src: &[f32], src_stride: usize, rows: usize, cols: usize, dst: &mut [f32], dst_stride: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(available(), "the register transpose needs AVX-512F");
    assert!(src.len() > (rows - 1) * src_stride + cols - 1 && dst.len() > (cols - 1) * dst_stride + rows - 1);
    // SAFETY: the assert keeps every index inside `dst`, which this call borrows whole.
    unsafe { transpose_into(src, src_stride, rows, cols, dst.as_mut_ptr(), dst_stride) }
}

/// [`transpose`] into a raw destination, in 16 × 16 tiles.
///
/// # Safety
/// [`available`]; `dst + j·dst_stride + i` is valid for writes, and written by no one else
/// meanwhile, for every `i < rows`, `j < cols`.
unsafe fn transpose_into(src: &[f32], src_stride: usize, rows: usize, cols: usize, dst: *mut f32, dst_stride: usize) {
    const TILE: usize = LANES;
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            let (ti, tj) = (TILE.min(rows - i0), TILE.min(cols - j0));
            if ti < TILE || tj < TILE {
                for i in 0..ti {
                    for j in 0..tj {
                        *dst.add((j0 + j) * dst_stride + i0 + i) = src[(i0 + i) * src_stride + j0 + j];
                    }
                }
                continue;
            }
            assert!(src.len() >= (i0 + TILE - 1) * src_stride + j0 + TILE);
            kernels::transpose16(src.as_ptr().add(i0 * src_stride + j0), src_stride, dst.add(j0 * dst_stride + i0), dst_stride);
        }
    }
}

/// A pointer the forward's tasks write their disjoint outputs through.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: tasks write disjoint elements (see `forward_packed`).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Offset in the padded channels-last input of each output pixel's first tap, in output order.
fn pixel_offsets(g: &Geometry) -> Vec<usize> {
    let (hp, wp, (ho, wo)) = (g.h + 2 * g.pad, g.w + 2 * g.pad, (g.ho(), g.wo()));
    (0..g.batch)
        .flat_map(|n| (0..ho).flat_map(move |oy| (0..wo).map(move |ox| ((n * hp + oy * g.stride) * wp + ox * g.stride) * g.cin)))
        .collect()
}

/// Offset of each kernel tap (row-major `ky, kx`) from its output pixel's first tap.
fn tap_offsets(g: &Geometry) -> Vec<usize> {
    let wp = g.w + 2 * g.pad;
    (0..g.k).flat_map(|ky| (0..g.k).map(move |kx| (ky * wp + kx) * g.cin)).collect()
}

/// Burn's weight `[cout, cin, k, k]` as one `[tap, cin, 32]` panel per block of 32 output
/// channels (the last one 16 wide when `cout` is an odd number of vectors), each contiguous so a
/// register block streams its weights in order; flipped (`rot180`, for the input gradient) when
/// `flip`.
fn pack_weight(weight: &[f32], cout: usize, cin: usize, k: usize, flip: bool) -> Vec<f32> {
    let taps = k * k;
    let mut packed = vec![0f32; weight.len()];
    for co in 0..cout {
        let (panel, width) = (co / BLOCK_CHANNELS * BLOCK_CHANNELS, BLOCK_CHANNELS.min(cout - co / BLOCK_CHANNELS * BLOCK_CHANNELS));
        for ci in 0..cin {
            for t in 0..taps {
                let source = if flip { taps - 1 - t } else { t };
                packed[panel * taps * cin + (t * cin + ci) * width + co - panel] = weight[(co * cin + ci) * taps + source];
            }
        }
    }
    packed
}

/// `[cout, cin, taps]` as `[cin, cout, taps]`.
fn swap_channels(weight: &[f32], cout: usize, cin: usize, taps: usize) -> Vec<f32> {
    let mut out = vec![0f32; weight.len()];
    for co in 0..cout {
        for ci in 0..cin {
            out[(ci * cout + co) * taps..][..taps].copy_from_slice(&weight[(co * cin + ci) * taps..][..taps]);
        }
    }
    out
}

/// The convolution of the padded channels-last input `xp` by the packed weight `wt`
/// (`[tap, cin, cout]`), in Burn's layout `[batch, cout, ho, wo]`: each task computes a block of
/// output pixels channels-last in cache and transposes it into place.
fn forward_packed(xp: &Padded, wt: &[f32], g: &Geometry) -> Vec<f32> {
    assert!(takes(g) && (xp.h, xp.w, xp.c, xp.pad) == (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cin, g.pad));
    let (offsets, taps) = (pixel_offsets(g), tap_offsets(g));
    assert_eq!(xp.data.len(), g.batch * xp.h * xp.w * g.cin);
    assert_eq!(wt.len(), taps.len() * g.cin * g.cout);
    let (pixels, cout) = (g.ho() * g.wo(), g.cout);
    let mut out = vec![0f32; offsets.len() * cout];
    let target = Shared(out.as_mut_ptr());
    offsets.par_chunks(TASK_PIXELS).enumerate().for_each_init(
        || vec![0f32; TASK_PIXELS * cout],
        |block, (task, offsets)| {
            for co in (0..cout).step_by(BLOCK_CHANNELS) {
                let vectors = (cout - co).min(BLOCK_CHANNELS) / LANES;
                for (i, pixels) in offsets.chunks(BLOCK_PIXELS).enumerate() {
                    // SAFETY: every offset plus tap plus input channel lies inside `xp` (a padded
                    // input of `g`, asserted above), the weight block inside `wt`, the outputs
                    // inside `block`.
                    unsafe { kernels::forward(pixels, &taps, &xp.data, &wt[co * taps.len() * g.cin..], g.cin, cout, vectors, &mut block[i * BLOCK_PIXELS * cout + co..]) };
                }
            }
            // The block's pixels, image by image, into the `[cout, pixels]` planes.
            let mut i = 0;
            while i < offsets.len() {
                let q = task * TASK_PIXELS + i;
                let (n, p) = (q / pixels, q % pixels);
                let run = (pixels - p).min(offsets.len() - i);
                // SAFETY: pixels q..q + run of image n, every channel: inside `out`, and no other
                // task's pixels.
                unsafe { transpose_into(&block[i * cout..], cout, run, cout, target.get().add(n * cout * pixels + p), pixels) };
                i += run;
            }
        },
    );
    out
}

/// Weight gradient in Burn's layout `[cout, cin, k, k]` from the padded channels-last input `xp`
/// and the channels-last output gradient `dyp` (any border).
fn weight_grad(xp: &Padded, dyp: &Padded, g: &Geometry) -> Vec<f32> {
    assert!(takes(g) && (xp.h, xp.w, xp.c, xp.pad) == (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cin, g.pad));
    let (offsets, taps, grads) = (pixel_offsets(g), tap_offsets(g), dyp.interior());
    assert_eq!((dyp.c, grads.len()), (g.cout, offsets.len()));
    let size = taps.len() * g.cin * g.cout;
    let share = offsets.len().div_ceil(rayon::current_num_threads()).max(CHUNK_PIXELS);
    let partials: Vec<Vec<f32>> = offsets
        .par_chunks(share)
        .zip(grads.par_chunks(share))
        .map(|(offsets, grads)| {
            let mut dw = vec![0f32; size];
            for (offsets, grads) in offsets.chunks(CHUNK_PIXELS).zip(grads.chunks(CHUNK_PIXELS)) {
                for (t, &tap) in taps.iter().enumerate() {
                    for ci in (0..g.cin).step_by(BLOCK_INPUTS) {
                        let inputs = BLOCK_INPUTS.min(g.cin - ci);
                        for co in (0..g.cout).step_by(BLOCK_CHANNELS) {
                            let vectors = (g.cout - co).min(BLOCK_CHANNELS) / LANES;
                            // SAFETY: offsets + tap + ci + inputs stay inside `xp`; each pixel's
                            // gradient + co + 16·vectors inside `dyp`; the block inside `dw`.
                            unsafe { kernels::weight(offsets, &xp.data, tap + ci, inputs, grads, &dyp.data[co..], g.cout, vectors, &mut dw[(t * g.cin + ci) * g.cout + co..]) };
                        }
                    }
                }
            }
            dw
        })
        .collect();
    let mut sum = partials[0].clone();
    for partial in &partials[1..] {
        sum.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
    }
    // [tap, cin, cout] → [cout, cin, tap].
    let mut dw = vec![0f32; size];
    for t in 0..taps.len() {
        for ci in 0..g.cin {
            for co in 0..g.cout {
                dw[(co * g.cin + ci) * taps.len() + t] = sum[(t * g.cin + ci) * g.cout + co];
            }
        }
    }
    dw
}

/// The AVX-512 micro-kernels; callers check [`available`] first.
mod kernels {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Calls `$kernel::<P, V>` for the run-time pixel (or channel) count `$p` ≤ 12 and vector
    /// count `$v` ∈ {1, 2}.
    macro_rules! dispatch {
        ($kernel:ident, $p:expr, $v:expr, ($($arg:expr),*)) => {
            match ($p, $v) {
                (12, 2) => $kernel::<12, 2>($($arg),*), (11, 2) => $kernel::<11, 2>($($arg),*),
                (10, 2) => $kernel::<10, 2>($($arg),*), (9, 2) => $kernel::<9, 2>($($arg),*),
                (8, 2) => $kernel::<8, 2>($($arg),*), (7, 2) => $kernel::<7, 2>($($arg),*),
                (6, 2) => $kernel::<6, 2>($($arg),*), (5, 2) => $kernel::<5, 2>($($arg),*),
                (4, 2) => $kernel::<4, 2>($($arg),*), (3, 2) => $kernel::<3, 2>($($arg),*),
                (2, 2) => $kernel::<2, 2>($($arg),*), (1, 2) => $kernel::<1, 2>($($arg),*),
                (12, 1) => $kernel::<12, 1>($($arg),*), (11, 1) => $kernel::<11, 1>($($arg),*),
                (10, 1) => $kernel::<10, 1>($($arg),*), (9, 1) => $kernel::<9, 1>($($arg),*),
                (8, 1) => $kernel::<8, 1>($($arg),*), (7, 1) => $kernel::<7, 1>($($arg),*),
                (6, 1) => $kernel::<6, 1>($($arg),*), (5, 1) => $kernel::<5, 1>($($arg),*),
                (4, 1) => $kernel::<4, 1>($($arg),*), (3, 1) => $kernel::<3, 1>($($arg),*),
                (2, 1) => $kernel::<2, 1>($($arg),*), (1, 1) => $kernel::<1, 1>($($arg),*),
                (p, v) => unreachable!("no kernel for {p} × {v}"),
            }
        };
    }

    /// `out[p·cout + 0..16·vectors] = Σ_tap Σ_ci x[offsets[p] + tap + ci] · w[(tap·cin + ci)·16·vectors + 0..]`
    /// for the block's pixels.
    ///
    /// # Safety
    /// AVX-512F is available; every index named above is inside its slice.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward(offsets: &[usize], taps: &[usize], x: &[f32], w: &[f32], cin: usize, cout: usize, vectors: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let args = (offsets.as_ptr(), taps, x.as_ptr(), w.as_ptr(), cin, cout, out.as_mut_ptr());
            let (o, t, xp, wp, ci, co, op) = args;
            dispatch!(forward_block, offsets.len(), vectors, (o, t, xp, wp, ci, co, op));
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({offsets:?} {taps:?} {} {} {cin} {cout} {vectors} {})", x.len(), w.len(), out.len());
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn forward_block<const P: usize, const V: usize>(offsets: *const usize, taps: &[usize], x: *const f32, mut w: *const f32, cin: usize, cout: usize, out: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        for &tap in taps {
            let mut rows = [x; P];
            for (p, row) in rows.iter_mut().enumerate() {
                *row = x.add(*offsets.add(p) + tap);
            }
            for ci in 0..cin {
                let mut weights = [_mm512_setzero_ps(); V];
                for (v, weight) in weights.iter_mut().enumerate() {
                    *weight = _mm512_loadu_ps(w.add(ci * V * 16 + v * 16));
                }
                for p in 0..P {
                    let value = _mm512_set1_ps(*rows[p].add(ci));
                    for v in 0..V {
                        acc[p][v] = _mm512_fmadd_ps(value, weights[v], acc[p][v]);
                    }
                }
            }
            w = w.add(cin * V * 16);
        }
        for (p, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(p * cout + v * 16), *acc);
            }
        }
    }

    /// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i, j < 16`, in registers: 32-bit,
    /// 64-bit and twice 128-bit interleaves.
    ///
    /// # Safety
    /// AVX-512F is available; the 16 rows of 16 values at `src` and at `dst` are inside their
    /// allocations.
    pub(super) unsafe fn transpose16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        #[cfg(target_arch = "x86_64")]
        transpose16_avx512(src, src_stride, dst, dst_stride);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({src:?} {src_stride} {dst:?} {dst_stride})");
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose16_avx512(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().enumerate() {
            *r = _mm512_loadu_ps(src.add(i * src_stride));
        }
        // Pairs of rows interleaved by 32-bit values, then pairs of those by 64-bit values.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in (0..16).step_by(2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for i in (0..16).step_by(4) {
            let pd = |a: __m512, b: __m512, hi: bool| {
                let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
                _mm512_castpd_ps(if hi { _mm512_unpackhi_pd(a, b) } else { _mm512_unpacklo_pd(a, b) })
            };
            u[i] = pd(t[i], t[i + 2], false);
            u[i + 1] = pd(t[i], t[i + 2], true);
            u[i + 2] = pd(t[i + 1], t[i + 3], false);
            u[i + 3] = pd(t[i + 1], t[i + 3], true);
        }
        // 128-bit lanes: even lanes of two 4-row groups (0x88), odd lanes (0xdd), twice.
        let mut v = [_mm512_setzero_ps(); 16];
        for g in [0, 8] {
            for i in 0..4 {
                v[g + i] = _mm512_shuffle_f32x4::<0x88>(u[g + i], u[g + 4 + i]);
                v[g + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(u[g + i], u[g + 4 + i]);
            }
        }
        for i in 0..8 {
            _mm512_storeu_ps(dst.add(i * dst_stride), _mm512_shuffle_f32x4::<0x88>(v[i], v[8 + i]));
            _mm512_storeu_ps(dst.add((8 + i) * dst_stride), _mm512_shuffle_f32x4::<0xdd>(v[i], v[8 + i]));
        }
    }

    /// `dw[r·cout + 0..16·vectors] += Σ_p x[offsets[p] + shift + r] · dy[grads[p] + 0..]` for the
    /// block's `inputs` channels `r`.
    ///
    /// # Safety
    /// AVX-512F is available; every index named above is inside its slice.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight(offsets: &[usize], x: &[f32], shift: usize, inputs: usize, grads: &[usize], dy: &[f32], cout: usize, vectors: usize, dw: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let args = (offsets, x.as_ptr().add(shift), grads.as_ptr(), dy.as_ptr(), cout, dw.as_mut_ptr());
            let (o, xp, gr, dp, co, wp) = args;
            dispatch!(weight_block, inputs, vectors, (o, xp, gr, dp, co, wp));
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({offsets:?} {grads:?} {} {shift} {inputs} {} {cout} {vectors} {})", x.len(), dy.len(), dw.len());
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn weight_block<const R: usize, const V: usize>(offsets: &[usize], x: *const f32, grads: *const usize, dy: *const f32, cout: usize, dw: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(dw.add(r * cout + v * 16));
            }
        }
        for (i, &offset) in offsets.iter().enumerate() {
            let dy = dy.add(*grads.add(i));
            let mut grads = [_mm512_setzero_ps(); V];
            for (v, grad) in grads.iter_mut().enumerate() {
                *grad = _mm512_loadu_ps(dy.add(v * 16));
            }
            let row = x.add(offset);
            for r in 0..R {
                let value = _mm512_set1_ps(*row.add(r));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(value, grads[v], acc[r][v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(dw.add(r * cout + v * 16), *acc);
            }
        }
    }
}
