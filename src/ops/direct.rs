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
//!   `x[p + tap, ci] · dy[p, co]` over a chunk of output pixels that stays in cache (its output
//!   gradient packed into dense blocks first), each thread over its share of the pixels, summed at
//!   the end.
//!
//! The kernels are AVX-512, or AVX2 + FMA with blocks half as wide (`std::arch`, [`Isa`]), the
//! best the CPU runs chosen at run time; [`available`] is false on CPUs with neither and
//! [`crate::ops::conv`] keeps Burn's path there, and for the shapes these kernels do not take.

use super::geometry::Geometry;
pub use super::order::Order;
use rayon::prelude::*;
use std::borrow::Cow;

/// `f32` lanes of one AVX-512 vector register (two AVX2 ones), the unit of output channels.
const LANES: usize = 16;
/// Output channels of an AVX-512 register block: two vectors.
const BLOCK_CHANNELS: usize = 2 * LANES;
/// Output pixels of a forward register block (12 × 2 accumulators of the 32 registers).
const BLOCK_PIXELS: usize = 12;
/// Input channels of an AVX-512 weight-gradient register block.
const BLOCK_INPUTS: usize = 12;
/// Output pixels of one forward task (a multiple of [`BLOCK_PIXELS`]).
const TASK_PIXELS: usize = 8 * BLOCK_PIXELS;
/// Output pixels of one step of the weight gradient's reduction.
const CHUNK_PIXELS: usize = 128;

/// The instruction sets the micro-kernels are written for.
///
/// AVX-512 holds a register block of 12 pixels (or input channels) × 32 channels (24 of its 32
/// vector registers); AVX2 + FMA, with 16 registers of 8 lanes, a block of 6 × 16 (12
/// registers). The activation layouts and the tasks are the same for both; AVX2's weight panels
/// and weight-gradient blocks are half as wide ([`Isa::panel`], [`Isa::weight_inputs`]), and its
/// forward covers AVX-512's 12 pixels in two calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// Whether this CPU runs the kernels in `self`.
    pub fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The instruction sets this CPU runs, best first (empty off x86-64, or without AVX2 and FMA).
    pub fn supported() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2].into_iter().filter(|isa| isa.runs()).collect()
    }

    /// The best instruction set this CPU runs the kernels in.
    pub fn best() -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2].into_iter().find(|isa| isa.runs())
    }

    /// Output channels of a forward register block, and of a packed weight panel: 32 in AVX-512,
    /// 16 in AVX2 (so each input channel's weights of a panel are one 64-byte cache line).
    fn panel(self) -> usize {
        match self {
            Isa::Avx512 => BLOCK_CHANNELS,
            Isa::Avx2 => LANES,
        }
    }

    /// Input channels of a weight-gradient register block: 12 in AVX-512, 6 in AVX2.
    fn weight_inputs(self) -> usize {
        match self {
            Isa::Avx512 => BLOCK_INPUTS,
            Isa::Avx2 => BLOCK_INPUTS / 2,
        }
    }
}

/// Whether this CPU runs the direct kernels (x86-64 with AVX-512F, or AVX2 and FMA).
pub fn available() -> bool {
    Isa::best().is_some()
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

/// Activations `[batch, c, h, w]`: their values, stored in `order`.
#[derive(Clone, Copy, Debug)]
pub struct Activations<'a> {
    pub values: &'a [f32],
    pub order: Order,
}

/// The convolution of `x` (`[batch, cin, h, w]`) by Burn's weight (`[cout, cin, k, k]`):
/// `[batch, cout, ho, wo]` stored in `out`.
pub fn forward(x: Activations, weight: &[f32], g: &Geometry, out: Order) -> Vec<f32> {
    forward_on(best(), x, weight, g, out)
}

/// [`forward`] in the instruction set `isa` (one this CPU [runs](Isa::runs)).
pub fn forward_on(isa: Isa, x: Activations, weight: &[f32], g: &Geometry, out: Order) -> Vec<f32> {
    assert!(takes(g) && isa.runs(), "the direct kernels do not take {g:?} in {isa:?} on this CPU");
    let xp = Padded::of(isa, x, g.batch, g.cin, g.h, g.w, g.pad);
    forward_packed(isa, &xp, &pack_weight(weight, g.cout, g.cin, g.k, false, isa.panel()), g, out)
}

/// The best instruction set of this CPU; callers checked [`available`] (through [`takes`]).
fn best() -> Isa {
    Isa::best().expect("the direct kernels need AVX-512F, or AVX2 and FMA, on x86-64")
}

/// Gradients of the convolution given its input `x` and the output gradient `dy`: the input
/// gradient stored in the order `input` names, if any (requires [`takes_input_grad`]), and the
/// weight gradient in Burn's layout `[cout, cin, k, k]`.
pub fn backward(x: Activations, weight: &[f32], dy: Activations, g: &Geometry, input: Option<Order>) -> (Option<Vec<f32>>, Vec<f32>) {
    backward_on(best(), x, weight, dy, g, input)
}

/// [`backward`] in the instruction set `isa` (one this CPU [runs](Isa::runs)).
pub fn backward_on(isa: Isa, x: Activations, weight: &[f32], dy: Activations, g: &Geometry, input: Option<Order>) -> (Option<Vec<f32>>, Vec<f32>) {
    assert!(
        takes(g) && (input.is_none() || takes_input_grad(g)) && isa.runs(),
        "the direct kernels do not take {g:?} (input gradient: {input:?}) in {isa:?} on this CPU"
    );
    // The input gradient is the stride-1 convolution of dy padded by k − 1 − pad with the kernel
    // flipped and its channels swapped; the weight gradient reads the same padded copy.
    let dy_pad = if input.is_some() { g.k - 1 - g.pad } else { 0 };
    let dyp = Padded::of(isa, dy, g.batch, g.cout, g.ho(), g.wo(), dy_pad);
    let dx = input.map(|order| {
        let transposed = Geometry { batch: g.batch, cin: g.cout, h: g.ho(), w: g.wo(), cout: g.cin, k: g.k, stride: 1, pad: dy_pad };
        let flipped = pack_weight(&swap_channels(weight, g.cout, g.cin, g.k * g.k), g.cin, g.cout, g.k, true, isa.panel());
        forward_packed(isa, &dyp, &flipped, &transposed, order)
    });
    let xp = Padded::of(isa, x, g.batch, g.cin, g.h, g.w, g.pad);
    (dx, weight_grad(isa, &xp, &dyp, g))
}

/// Activations `[batch, c, h, w]` channels-last with a zero border: `[batch, h + 2·pad,
/// w + 2·pad, c]`; a copy, or the activations themselves when they are channels-last already and
/// the border is empty.
struct Padded<'a> {
    data: Cow<'a, [f32]>,
    /// Rows and columns of each image with the border, channels, border width.
    h: usize,
    w: usize,
    c: usize,
    pad: usize,
}

impl<'a> Padded<'a> {
    fn of(isa: Isa, x: Activations<'a>, batch: usize, c: usize, h: usize, w: usize, pad: usize) -> Self {
        let (hp, wp, hw) = (h + 2 * pad, w + 2 * pad, h * w);
        assert_eq!(x.values.len(), batch * c * hw);
        if x.order == Order::Nhwc && pad == 0 {
            return Padded { data: Cow::Borrowed(x.values), h, w, c, pad };
        }
        let mut data = vec![0f32; batch * hp * wp * c];
        data.par_chunks_mut((hp * wp * c).max(1)).zip(x.values.par_chunks((c * hw).max(1))).for_each(|(dst, src)| {
            for y in 0..h {
                let inside = &mut dst[((y + pad) * wp + pad) * c..][..w * c];
                match x.order {
                    // Row y of every channel plane (a `c × w` matrix with row stride `hw`).
                    Order::Nchw => transpose(isa, &src[y * w..], hw, c, w, inside, c),
                    Order::Nhwc => inside.copy_from_slice(&src[y * w * c..][..w * c]),
                }
            }
        });
        Padded { data: Cow::Owned(data), h: hp, w: wp, c, pad }
    }

    /// Offset of each pixel (`[batch, h, w]` order, the border left out) in the buffer.
    fn interior(&self) -> Vec<usize> {
        let (h, w, batch) = (self.h - 2 * self.pad, self.w - 2 * self.pad, self.data.len() / (self.h * self.w * self.c).max(1));
        let (hp, wp, pad, c) = (self.h, self.w, self.pad, self.c);
        (0..batch).flat_map(|n| (0..h).flat_map(move |y| (0..w).map(move |x| ((n * hp + y + pad) * wp + x + pad) * c))).collect()
    }
}

/// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i < rows`, `j < cols`.
fn transpose(isa: Isa, src: &[f32], src_stride: usize, rows: usize, cols: usize, dst: &mut [f32], dst_stride: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(isa.runs(), "the register transpose needs {isa:?} on this CPU");
    assert!(src.len() > (rows - 1) * src_stride + cols - 1 && dst.len() > (cols - 1) * dst_stride + rows - 1);
    // SAFETY: the assert keeps every index inside `dst`, which this call borrows whole.
    unsafe { transpose_into(isa, src, src_stride, rows, cols, dst.as_mut_ptr(), dst_stride) }
}

/// [`transpose`] into a raw destination, in 16 × 16 tiles.
///
/// # Safety
/// This CPU runs `isa`; `dst + j·dst_stride + i` is valid for writes, and written by no one else
/// meanwhile, for every `i < rows`, `j < cols`.
unsafe fn transpose_into(isa: Isa, src: &[f32], src_stride: usize, rows: usize, cols: usize, dst: *mut f32, dst_stride: usize) {
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
            kernels::transpose16(isa, src.as_ptr().add(i0 * src_stride + j0), src_stride, dst.add(j0 * dst_stride + i0), dst_stride);
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

/// Burn's weight `[cout, cin, k, k]` as one `[tap, cin, width]` panel per block of `width` output
/// channels (the last one 16 wide when `cout` is an odd number of vectors and `width` is 32), each
/// contiguous so a register block streams its weights in order; flipped (`rot180`, for the input
/// gradient) when `flip`.
fn pack_weight(weight: &[f32], cout: usize, cin: usize, k: usize, flip: bool, width: usize) -> Vec<f32> {
    let taps = k * k;
    let mut packed = vec![0f32; weight.len()];
    for co in 0..cout {
        let panel = co / width * width;
        let width = width.min(cout - panel);
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
/// (`[tap, cin, cout]`), `[batch, cout, ho, wo]` stored in `order`: each task computes a block of
/// output pixels channels-last, in place for NHWC, else in cache and transposed into place.
fn forward_packed(isa: Isa, xp: &Padded, wt: &[f32], g: &Geometry, order: Order) -> Vec<f32> {
    assert!(takes(g) && (xp.h, xp.w, xp.c, xp.pad) == (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cin, g.pad));
    let (offsets, taps) = (pixel_offsets(g), tap_offsets(g));
    assert_eq!(xp.data.len(), g.batch * xp.h * xp.w * g.cin);
    assert_eq!(wt.len(), taps.len() * g.cin * g.cout);
    let (pixels, cout) = (g.ho() * g.wo(), g.cout);
    let mut out = vec![0f32; offsets.len() * cout];
    // The task's pixels channels-last into `block` (`[pixel, cout]`).
    let compute = |block: &mut [f32], offsets: &[usize]| {
        for co in (0..cout).step_by(isa.panel()) {
            let vectors = (cout - co).min(isa.panel()) / LANES;
            for (i, pixels) in offsets.chunks(BLOCK_PIXELS).enumerate() {
                // SAFETY: every offset plus tap plus input channel lies inside `xp` (a padded
                // input of `g`, asserted above), the weight block inside `wt`, the outputs
                // inside `block` (a row of cout per pixel).
                unsafe { kernels::forward(isa, pixels, &taps, &xp.data, &wt[co * taps.len() * g.cin..], g.cin, cout, vectors, &mut block[i * BLOCK_PIXELS * cout + co..]) };
            }
        }
    };
    if order == Order::Nhwc {
        out.par_chunks_mut(TASK_PIXELS * cout).zip(offsets.par_chunks(TASK_PIXELS)).for_each(|(block, offsets)| compute(block, offsets));
        return out;
    }
    let target = Shared(out.as_mut_ptr());
    offsets.par_chunks(TASK_PIXELS).enumerate().for_each_init(
        || vec![0f32; TASK_PIXELS * cout],
        |block, (task, offsets)| {
            compute(block, offsets);
            // The block's pixels, image by image, into the `[cout, pixels]` planes.
            let mut i = 0;
            while i < offsets.len() {
                let q = task * TASK_PIXELS + i;
                let (n, p) = (q / pixels, q % pixels);
                let run = (pixels - p).min(offsets.len() - i);
                // SAFETY: pixels q..q + run of image n, every channel: inside `out`, and no other
                // task's pixels.
                unsafe { transpose_into(isa, &block[i * cout..], cout, run, cout, target.get().add(n * cout * pixels + p), pixels) };
                i += run;
            }
        },
    );
    out
}

/// Rows `offsets[p]` of a channels-last buffer (an output gradient), `channels` values each,
/// repacked for the weight-gradient kernels: block by block of `block` channels (the last one
/// narrower), each block `[pixel, its channels]` contiguous at `out[c0·n..]` (`n` = the number of
/// offsets), so the kernel streams one dense block from L1 instead of a row per pixel `channels`
/// apart (which measured as its stalls).
fn pack_rows(src: &[f32], offsets: &[usize], channels: usize, block: usize, out: &mut [f32]) {
    let n = offsets.len();
    assert_eq!(out.len(), n * channels);
    for c0 in (0..channels).step_by(block) {
        let width = block.min(channels - c0);
        for (row, &offset) in out[c0 * n..][..n * width].chunks_exact_mut(width).zip(offsets) {
            row.copy_from_slice(&src[offset + c0..][..width]);
        }
    }
}

/// Weight gradient in Burn's layout `[cout, cin, k, k]` from the padded channels-last input `xp`
/// and the channels-last output gradient `dyp` (any border).
fn weight_grad(isa: Isa, xp: &Padded, dyp: &Padded, g: &Geometry) -> Vec<f32> {
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
            let mut dyq = vec![0f32; CHUNK_PIXELS * g.cout];
            for (offsets, grads) in offsets.chunks(CHUNK_PIXELS).zip(grads.chunks(CHUNK_PIXELS)) {
                let n = offsets.len();
                let dyq = &mut dyq[..n * g.cout];
                pack_rows(&dyp.data, grads, g.cout, isa.panel(), dyq);
                for (t, &tap) in taps.iter().enumerate() {
                    for ci in (0..g.cin).step_by(isa.weight_inputs()) {
                        let inputs = isa.weight_inputs().min(g.cin - ci);
                        for co in (0..g.cout).step_by(isa.panel()) {
                            let vectors = (g.cout - co).min(isa.panel()) / LANES;
                            // SAFETY: offsets + tap + ci + inputs stay inside `xp`; the packed
                            // block holds n rows of 16·vectors; the block of dw, `inputs` rows of
                            // cout from (t, ci, co), is inside it.
                            unsafe { kernels::weight(isa, offsets, &xp.data, tap + ci, inputs, &dyq[co * n..][..n * vectors * LANES], vectors, g.cout, &mut dw[(t * g.cin + ci) * g.cout + co..]) };
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

/// The micro-kernels, AVX-512 and AVX2 + FMA; callers check that the CPU [runs](Isa::runs) the
/// instruction set they name.
mod kernels {
    use super::Isa;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Pixels (forward) or input channels (weight gradient) of an AVX2 register block.
    const AVX2_BLOCK: usize = 6;

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

    /// Calls `$kernel::<P>` for the run-time pixel (or channel) count `$p` ≤ [`AVX2_BLOCK`].
    macro_rules! dispatch_avx2 {
        ($kernel:ident, $p:expr, ($($arg:expr),*)) => {
            match $p {
                6 => $kernel::<6>($($arg),*), 5 => $kernel::<5>($($arg),*), 4 => $kernel::<4>($($arg),*),
                3 => $kernel::<3>($($arg),*), 2 => $kernel::<2>($($arg),*), 1 => $kernel::<1>($($arg),*),
                p => unreachable!("no AVX2 kernel for {p}"),
            }
        };
    }

    /// `out[p·cout + 0..16·vectors] = Σ_tap Σ_ci x[offsets[p] + tap + ci] · w[(tap·cin + ci)·16·vectors + 0..]`
    /// for the block's pixels (at most 12; `vectors` ∈ {1, 2}).
    ///
    /// # Safety
    /// The CPU runs `isa`; every index named above is inside its slice.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward(isa: Isa, offsets: &[usize], taps: &[usize], x: &[f32], w: &[f32], cin: usize, cout: usize, vectors: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let (xp, wp, op) = (x.as_ptr(), w.as_ptr(), out.as_mut_ptr());
            match isa {
                Isa::Avx512 => dispatch!(forward_block, offsets.len(), vectors, (offsets.as_ptr(), taps, xp, wp, cin, cout, op)),
                // Each 16-channel vector of the panel (row stride 16·vectors), six pixels at a time.
                Isa::Avx2 => {
                    for v in 0..vectors {
                        for (i, pixels) in offsets.chunks(AVX2_BLOCK).enumerate() {
                            let (o, wv, ov) = (pixels.as_ptr(), wp.add(v * 16), op.add(i * AVX2_BLOCK * cout + v * 16));
                            dispatch_avx2!(forward_block_avx2, pixels.len(), (o, taps, xp, wv, 16 * vectors, cin, cout, ov));
                        }
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({isa:?} {offsets:?} {taps:?} {} {} {cin} {cout} {vectors} {})", x.len(), w.len(), out.len());
    }

    /// AVX2 forward of `P` pixels × 16 channels: `out[p·cout + 0..16] = Σ_tap Σ_ci x[offsets[p] +
    /// tap + ci] · w[(tap·cin + ci)·stride + 0..16]`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn forward_block_avx2<const P: usize>(offsets: *const usize, taps: &[usize], x: *const f32, mut w: *const f32, stride: usize, cin: usize, cout: usize, out: *mut f32) {
        let mut acc = [[_mm256_setzero_ps(); 2]; P];
        for &tap in taps {
            let mut rows = [x; P];
            for (p, row) in rows.iter_mut().enumerate() {
                *row = x.add(*offsets.add(p) + tap);
            }
            for ci in 0..cin {
                let weights = [_mm256_loadu_ps(w.add(ci * stride)), _mm256_loadu_ps(w.add(ci * stride + 8))];
                for p in 0..P {
                    let value = _mm256_broadcast_ss(&*rows[p].add(ci));
                    acc[p][0] = _mm256_fmadd_ps(value, weights[0], acc[p][0]);
                    acc[p][1] = _mm256_fmadd_ps(value, weights[1], acc[p][1]);
                }
            }
            w = w.add(cin * stride);
        }
        for (p, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(p * cout), acc[0]);
            _mm256_storeu_ps(out.add(p * cout + 8), acc[1]);
        }
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
    /// The CPU runs `isa`; the 16 rows of 16 values at `src` and at `dst` are inside their
    /// allocations.
    pub(super) unsafe fn transpose16(isa: Isa, src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx512 => transpose16_avx512(src, src_stride, dst, dst_stride),
            Isa::Avx2 => {
                for (i, j) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
                    transpose8_avx2(src.add(i * src_stride + j), src_stride, dst.add(j * dst_stride + i), dst_stride);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({isa:?} {src:?} {src_stride} {dst:?} {dst_stride})");
    }

    /// `dst[j·dst_stride + i] = src[i·src_stride + j]` for `i, j < 8`, in AVX registers: 32-bit
    /// interleaves, 64-bit shuffles, then 128-bit lane swaps.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose8_avx2(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (i, r) in r.iter_mut().enumerate() {
            *r = _mm256_loadu_ps(src.add(i * src_stride));
        }
        // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved (columns 0, 1, 4, 5 and 2, 3, 6, 7).
        let mut t = [_mm256_setzero_ps(); 8];
        for i in (0..8).step_by(2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        // u[4g + c]: columns c and c + 4 of rows 4g..4g + 4, one per 128-bit lane.
        let mut u = [_mm256_setzero_ps(); 8];
        for g in [0, 4] {
            u[g] = _mm256_shuffle_ps::<0x44>(t[g], t[g + 2]);
            u[g + 1] = _mm256_shuffle_ps::<0xee>(t[g], t[g + 2]);
            u[g + 2] = _mm256_shuffle_ps::<0x44>(t[g + 1], t[g + 3]);
            u[g + 3] = _mm256_shuffle_ps::<0xee>(t[g + 1], t[g + 3]);
        }
        for c in 0..4 {
            _mm256_storeu_ps(dst.add(c * dst_stride), _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]));
            _mm256_storeu_ps(dst.add((c + 4) * dst_stride), _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]));
        }
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

    /// `dw[r·cout + 0..16·vectors] += Σ_p x[offsets[p] + shift + r] · dyq[p·16·vectors + 0..]` for
    /// the block's `inputs` channels `r` (at most 12 in AVX-512, 6 in AVX2), `dyq` the block's
    /// packed output gradient (`vectors` ∈ {1, 2} in AVX-512, 1 in AVX2).
    ///
    /// # Safety
    /// The CPU runs `isa`; every `x` index named above is inside `x`; `dw` holds `inputs` rows of
    /// `cout` from its start.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight(isa: Isa, offsets: &[usize], x: &[f32], shift: usize, inputs: usize, dyq: &[f32], vectors: usize, cout: usize, dw: &mut [f32]) {
        assert!(dyq.len() == offsets.len() * vectors * 16 && dw.len() >= (inputs - 1) * cout + vectors * 16);
        #[cfg(target_arch = "x86_64")]
        {
            let (xp, dp, wp) = (x.as_ptr().add(shift), dyq.as_ptr(), dw.as_mut_ptr());
            match isa {
                Isa::Avx512 => dispatch!(weight_block, inputs, vectors, (offsets, xp, dp, cout, wp)),
                Isa::Avx2 => {
                    assert_eq!(vectors, 1, "AVX2 weight blocks are 16 channels wide");
                    dispatch_avx2!(weight_block_avx2, inputs, (offsets, xp, dp, cout, wp));
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("direct kernels are x86-64 only ({isa:?} {offsets:?} {} {shift} {inputs} {} {vectors} {cout} {})", x.len(), dyq.len(), dw.len());
    }

    /// AVX2 weight gradient of `R` input channels × 16 output channels: `dw[r·cout + 0..16] +=
    /// Σ_p x[offsets[p] + r] · dyq[p·16 + 0..16]`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weight_block_avx2<const R: usize>(offsets: &[usize], x: *const f32, dyq: *const f32, cout: usize, dw: *mut f32) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm256_loadu_ps(dw.add(r * cout)), _mm256_loadu_ps(dw.add(r * cout + 8))];
        }
        for (p, &offset) in offsets.iter().enumerate() {
            let (dy, row) = (dyq.add(p * 16), x.add(offset));
            let grad = [_mm256_loadu_ps(dy), _mm256_loadu_ps(dy.add(8))];
            for r in 0..R {
                let value = _mm256_broadcast_ss(&*row.add(r));
                acc[r][0] = _mm256_fmadd_ps(value, grad[0], acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(value, grad[1], acc[r][1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(dw.add(r * cout), acc[0]);
            _mm256_storeu_ps(dw.add(r * cout + 8), acc[1]);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn weight_block<const R: usize, const V: usize>(offsets: &[usize], x: *const f32, dyq: *const f32, cout: usize, dw: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(dw.add(r * cout + v * 16));
            }
        }
        for (p, &offset) in offsets.iter().enumerate() {
            let (dy, row) = (dyq.add(p * V * 16), x.add(offset));
            let mut grads = [_mm512_setzero_ps(); V];
            for (v, grad) in grads.iter_mut().enumerate() {
                *grad = _mm512_loadu_ps(dy.add(v * 16));
            }
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
