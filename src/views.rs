//! The two views of every image of a batch (paper §2.1, Algorithm 1: x̃_{2k−1}, x̃_{2k}), in the one
//! layout that the loader ([`crate::data::loader`]), the network, the ranks ([`crate::distributed`])
//! and the objective ([`crate::loss`]) share: `[2n, ·]`, the n first views, then the n second views
//! in the same image order — rows `i` and `n + i` are image `i`'s two views.
//!
//! A data-parallel run of K ranks splits a global batch of N images into K parts of n = N/K
//! ([`crate::data::loader::Shard`]); [`Views::gather`] puts every rank's rows where one process would
//! have them for the global batch: all first views in rank order, then all second views.

use burn::tensor::Tensor;

/// One rank's rows of a two-view batch (`[2n, d]`, layout above).
#[derive(Clone, Debug)]
pub struct Views {
    rows: Tensor<2>,
}

impl Views {
    /// The rows `[2n, d]` of n images' first views, then their second views; panics on an odd
    /// number of rows (not a two-view batch).
    pub fn new(rows: Tensor<2>) -> Self {
        let [count, _] = rows.dims();
        assert!(count % 2 == 0, "a two-view batch has an even number of rows, got {count}");
        Views { rows }
    }

    /// Number of images (half the rows).
    pub fn images(&self) -> usize {
        self.rows.dims()[0] / 2
    }

    /// The views of every rank's images, as one process would hold the global batch. The global
    /// rows are differentiable both ways: this rank's rows carry their gradient, and the gradient
    /// that the other ranks' objectives give them is summed back to this rank in the backward pass
    /// ([`crate::ops::all_reduce::gather_rows`]). Without several `ranks`, the rows themselves.
    pub fn gather(self, ranks: &'static dyn crate::distributed::Collective) -> Gathered {
        let world = ranks;
        let n = self.images();
        if world.ranks() == 1 {
            return Gathered::whole(self);
        }
        let [rows, d] = self.rows.dims();
        let first = crate::ops::all_reduce::gather_rows(self.rows.clone().slice([0..n, 0..d]), ranks);
        let second = crate::ops::all_reduce::gather_rows(self.rows.clone().slice([n..rows, 0..d]), ranks);
        Gathered { all: Tensor::cat(vec![first, second], 0), local: self.rows, offset: world.rank() * n }
    }
}

/// A global two-view batch as one rank sees it: every rank's rows ([`Gathered::all`], `[2N, d]`
/// for N images in all) and which of them are this rank's ([`Gathered::local`], `[2n, d]`, images
/// `offset .. offset + n` of the global batch).
#[derive(Clone, Debug)]
pub struct Gathered {
    /// Every rank's rows, first views then second views of the N images.
    pub all: Tensor<2>,
    /// This rank's rows (the anchors of its part of the objective).
    pub local: Tensor<2>,
    /// Position of this rank's first image among the N.
    pub offset: usize,
}

impl Gathered {
    /// One process's batch: the local rows are all the rows.
    pub fn whole(views: Views) -> Self {
        Gathered { all: views.rows.clone(), local: views.rows, offset: 0 }
    }

    /// Number of images of the global batch (N).
    pub fn images(&self) -> usize {
        self.all.dims()[0] / 2
    }

    /// Number of this rank's images (n).
    pub fn local_images(&self) -> usize {
        self.local.dims()[0] / 2
    }

    /// The global row of local row `row`: its view's block, then its image's position.
    pub fn global_row(&self, row: usize) -> usize {
        let n = self.local_images();
        (row / n) * self.images() + self.offset + row % n
    }

    /// The global row of the other view of the image at global row `row`.
    pub fn partner(&self, row: usize) -> usize {
        (row + self.images()) % (2 * self.images())
    }
}

/// Which views of a rank's two-view batch share a chunk of the gradient cache
/// ([`crate::train::cache`], `--micro-batch`), whose training-mode BN normalises each chunk with its
/// own statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ChunkViews {
    /// The two views of an image in different chunks: each chunk 2M consecutive rows of the
    /// batch's layout (M first views, or M second views). No chunk's statistics see both views of
    /// an image, so they cannot give away the positive pair (the leak the paper's global BN
    /// prevents, §2.2).
    #[default]
    Split,
    /// Both views of M images in a chunk: chunk c is images c·M … c·M + M − 1, as rank c of K = n/M
    /// ranks without sync BN holds them.
    Paired,
}

impl ChunkViews {
    /// The rows (positions in the `[2n, ·]` layout above) of each chunk of `n` images' views in
    /// chunks of `m` images (2m views); `None` unless `m` divides `n`.
    pub fn rows(self, n: usize, m: usize) -> Option<Vec<Vec<usize>>> {
        if m == 0 || n % m != 0 {
            return None;
        }
        let chunks = (0..n / m).map(|c| match self {
            ChunkViews::Split => (2 * c * m..2 * (c + 1) * m).collect(),
            ChunkViews::Paired => (c * m..(c + 1) * m).chain(n + c * m..n + (c + 1) * m).collect(),
        });
        Some(chunks.collect())
    }
}
