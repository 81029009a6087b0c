//! The run configuration: one [`Config`] mirroring the official `run.py` flags that apply.
//!
//! Sources, later wins: built-in defaults → `--config FILE.toml` → command-line flags. Every field is
//! also a flag (the kebab-case of its name). The resolved config is written next to each checkpoint
//! as TOML, so `simclr pretrain --config OUT/config.toml` repeats a run exactly.

use crate::augment::AugmentConfig;
use crate::data::DatasetKind;
use crate::head::{HeadConfig, HeadMode, ModelConfig};
use crate::optim::{OptimizerKind, Rule};
use crate::resnet::{Arch, ResNetConfig, Stem};
use crate::schedule::LrScaling;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Dataset format.
    pub dataset: DatasetKind,
    /// Folder holding the dataset files (not needed for `builtin`).
    pub data: Option<PathBuf>,
    /// Use only the first N training images (0 = all).
    pub limit: usize,
    /// Encoder depth.
    pub arch: Arch,
    /// Width multiplier of the encoder.
    pub width: f32,
    /// Encoder stem (`auto`: CIFAR stem for images ≤ 32 px).
    pub stem: Stem,
    /// Zero-initialise the γ of each residual block's last BN (official code; `false` starts from
    /// torchvision's default init, the random-init baseline itself).
    pub zero_init_residual: bool,
    /// Side of the training views in pixels (0 = the dataset's own size).
    pub image_size: usize,
    /// Projection head kind.
    pub head: HeadMode,
    /// Layers of a nonlinear head (v1: 2, v2: 3).
    pub head_layers: usize,
    /// Dimension of z.
    pub proj_dim: usize,
    /// NT-Xent temperature τ.
    pub temperature: f32,
    /// Images per batch (2 views each).
    pub batch_size: usize,
    /// Training epochs (ignored when `max_steps` > 0).
    pub epochs: usize,
    /// Stop after this many steps (0 = use `epochs`).
    pub max_steps: usize,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Base learning rate before batch-size scaling.
    pub lr: f64,
    /// How the LR scales with the batch size.
    pub lr_scaling: LrScaling,
    /// Epochs of linear warm-up.
    pub warmup_epochs: f64,
    /// Weight decay (not applied to BN parameters and biases).
    pub weight_decay: f64,
    /// Momentum (β₁ for AdamW).
    pub momentum: f64,
    /// Colour distortion strength s.
    pub color_strength: f32,
    /// Smallest random-crop area as a fraction of the image (paper: 0.08; many CIFAR recipes 0.2).
    pub crop_min_area: f32,
    /// Gaussian blur (unset: on for images > 32 px, as the paper).
    pub blur: Option<bool>,
    /// Seed of weights, data order and augmentations.
    pub seed: u64,
    /// Output folder (checkpoints, metrics, config).
    pub out: PathBuf,
    /// Write a checkpoint every N steps (0 = at the end of each epoch only).
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (older ones are deleted).
    pub keep_checkpoints: usize,
    /// Train a linear probe on stop-gradient(h) alongside, when the dataset has labels.
    pub online_probe: bool,
    /// Classes of the training set (filled in by `pretrain`; 0 = unlabelled or unknown).
    pub num_classes: usize,
    /// Run a kNN monitor on the test split every N epochs (0 = off).
    pub knn_every: usize,
    /// Image folders: keep only the files this list names (paths relative to --data, or file names).
    pub file_list: Option<PathBuf>,
    /// Image folders: cache decoded images resized to this shorter side (0 = no cache).
    pub cache_size: u32,
    /// Where the image cache lives (default: OUT/cache).
    pub cache_dir: Option<PathBuf>,
    /// CIFAR-100: use the 20 coarse labels.
    pub coarse_labels: bool,
    /// Stop at the first unreadable image instead of skipping it.
    pub strict: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Builtin,
            data: None,
            limit: 0,
            arch: Arch::Resnet18,
            width: 1.0,
            stem: Stem::Auto,
            zero_init_residual: true,
            image_size: 0,
            head: HeadMode::Nonlinear,
            head_layers: 2,
            proj_dim: 128,
            temperature: 0.5,
            batch_size: 256,
            epochs: 100,
            max_steps: 0,
            optimizer: OptimizerKind::Lars,
            lr: 0.3,
            lr_scaling: LrScaling::Linear,
            warmup_epochs: 10.0,
            weight_decay: 1e-6,
            momentum: 0.9,
            color_strength: 1.0,
            crop_min_area: crate::augment::PAPER_MIN_CROP_AREA,
            blur: None,
            seed: 0,
            out: PathBuf::from("runs/simclr"),
            checkpoint_every: 0,
            keep_checkpoints: 2,
            online_probe: true,
            num_classes: 0,
            knn_every: 0,
            file_list: None,
            cache_size: 0,
            cache_dir: None,
            coarse_labels: false,
            strict: false,
        }
    }
}

/// The same settings as flags, each optional; also the shape of a partial TOML file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    /// Dataset format.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder holding the dataset files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N training images (0 = all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Encoder depth.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Width multiplier (1, 2, 4 as the paper; 0.25, 0.5 for quick CPU runs).
    #[arg(long)]
    pub width: Option<f32>,
    /// Encoder stem.
    #[arg(long, value_enum)]
    pub stem: Option<Stem>,
    /// Zero-initialise each residual block's last BN γ (true: official code; false: every γ = 1).
    #[arg(long)]
    pub zero_init_residual: Option<bool>,
    /// Side of the training views (0 = the dataset's own).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Projection head kind.
    #[arg(long, value_enum)]
    pub head: Option<HeadMode>,
    /// Layers of a nonlinear head.
    #[arg(long)]
    pub head_layers: Option<usize>,
    /// Dimension of z.
    #[arg(long)]
    pub proj_dim: Option<usize>,
    /// NT-Xent temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps (0 = use epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Optimiser.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// LR scaling with batch size.
    #[arg(long, value_enum)]
    pub lr_scaling: Option<LrScaling>,
    /// Warm-up epochs.
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Colour distortion strength.
    #[arg(long)]
    pub color_strength: Option<f32>,
    /// Smallest random-crop area, a fraction of the image in (0, 1] (paper: 0.08).
    #[arg(long)]
    pub crop_min_area: Option<f32>,
    /// Gaussian blur on/off.
    #[arg(long)]
    pub blur: Option<bool>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Checkpoint every N steps (0 = each epoch).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept.
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Online linear probe on stop-gradient(h) when labels exist.
    #[arg(long)]
    pub online_probe: Option<bool>,
    /// Classes of the training set (set by pretrain; rarely given by hand).
    #[arg(long, hide = true)]
    pub num_classes: Option<usize>,
    /// kNN monitor on the test split every N epochs (0 = off).
    #[arg(long)]
    pub knn_every: Option<usize>,
    /// Image folders: keep only the files listed (one per line: path relative to --data, or file name).
    #[arg(long)]
    pub file_list: Option<PathBuf>,
    /// Image folders: cache images resized to this shorter side so later epochs skip decoding (0 = off).
    #[arg(long)]
    pub cache_size: Option<u32>,
    /// Folder of the image cache (default OUT/cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// CIFAR-100: the 20 coarse labels instead of the 100 fine ones.
    #[arg(long)]
    pub coarse_labels: Option<bool>,
    /// Fail on the first unreadable image instead of skipping it with a warning.
    #[arg(long)]
    pub strict: Option<bool>,
}

macro_rules! overlay {
    ($cfg:ident, $args:ident, $($field:ident),*) => {
        $(if let Some(v) = $args.$field { $cfg.$field = v; })*
    };
}

impl Config {
    /// Defaults, overlaid by `file` (if any), overlaid by the flags in `args`.
    pub fn resolve(file: Option<&Path>, args: &ConfigArgs) -> Result<Self> {
        let mut cfg = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(args.clone());
        Ok(cfg)
    }

    /// Reads a full or partial config from TOML (missing fields keep their defaults).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("--config {}: cannot read the file", path.display()))?;
        let args: ConfigArgs = toml::from_str(&text)
            .with_context(|| format!("--config {}: not a valid simclr config (see `simclr pretrain --help` for the keys)", path.display()))?;
        let mut cfg = Self::default();
        cfg.apply(args);
        Ok(cfg)
    }

    /// Overwrites every field that `args` sets.
    pub fn apply(&mut self, args: ConfigArgs) {
        if args.data.is_some() {
            self.data = args.data;
        }
        if args.blur.is_some() {
            self.blur = args.blur;
        }
        if args.file_list.is_some() {
            self.file_list = args.file_list;
        }
        if args.cache_dir.is_some() {
            self.cache_dir = args.cache_dir;
        }
        overlay!(
            self, args, dataset, limit, arch, width, stem, zero_init_residual, image_size, head, head_layers, proj_dim, temperature,
            batch_size, epochs, max_steps, optimizer, lr, lr_scaling, warmup_epochs, weight_decay, momentum,
            color_strength, crop_min_area, seed, out, checkpoint_every, keep_checkpoints, online_probe, num_classes, knn_every, cache_size, coarse_labels, strict
        );
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks every value that can be checked without the data; errors name the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size < 2 {
            bail!("--batch-size {}: NT-Xent needs at least 2 images per batch (negatives come from the batch); use 2 or more", self.batch_size);
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            bail!("--temperature {}: must be a positive number (the paper uses 0.1-0.5)", self.temperature);
        }
        if !(self.width > 0.0 && self.width.is_finite()) {
            bail!("--width {}: must be positive (1, 2, 4 as the paper, or e.g. 0.25 for quick runs)", self.width);
        }
        if self.head == HeadMode::Nonlinear && self.head_layers == 0 {
            bail!("--head-layers 0: a nonlinear head needs at least 1 layer (use --head none for no head)");
        }
        if self.proj_dim == 0 {
            bail!("--proj-dim 0: the projection needs at least 1 dimension");
        }
        if self.epochs == 0 && self.max_steps == 0 {
            bail!("--epochs 0 with --max-steps 0: nothing to train; set one of them");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr {}: must be a positive number", self.lr);
        }
        if !(self.warmup_epochs >= 0.0) {
            bail!("--warmup-epochs {}: must be 0 or more", self.warmup_epochs);
        }
        if !(self.weight_decay >= 0.0) {
            bail!("--weight-decay {}: must be 0 or more", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum {}: must be in [0, 1)", self.momentum);
        }
        if !(self.color_strength >= 0.0) {
            bail!("--color-strength {}: must be 0 or more", self.color_strength);
        }
        if !(self.crop_min_area > 0.0 && self.crop_min_area <= 1.0) {
            bail!("--crop-min-area {}: must be in (0, 1] (a fraction of the image area; the paper uses 0.08)", self.crop_min_area);
        }
        if self.keep_checkpoints == 0 {
            bail!("--keep-checkpoints 0: at least the latest checkpoint must be kept");
        }
        if self.dataset != DatasetKind::Builtin && self.data.is_none() {
            bail!(
                "--dataset {} needs --data DIR (Fashion-MNIST: `apt-get install -y dataset-fashion-mnist`, then --data /usr/share/datasets/fashion-mnist)",
                self.dataset.name()
            );
        }
        Ok(())
    }

    /// The network shape for training views of side `image_size`.
    pub fn model(&self, image_size: usize) -> ModelConfig {
        ModelConfig {
            encoder: ResNetConfig { arch: self.arch, width: self.width, stem: self.stem.resolve(image_size), zero_init_residual: self.zero_init_residual },
            head: HeadConfig { mode: self.head, layers: self.head_layers, proj_dim: self.proj_dim },
            probe_classes: if self.online_probe { self.num_classes } else { 0 },
        }
    }

    /// The augmentation pipeline for views of side `image_size`.
    pub fn augment(&self, image_size: usize) -> AugmentConfig {
        let mut aug = AugmentConfig::simclr(image_size, self.color_strength);
        aug.min_area = self.crop_min_area;
        if let Some(blur) = self.blur {
            aug.blur = blur;
        }
        aug
    }

    /// Where the data is and how to read it.
    pub fn source(&self) -> crate::data::Source {
        crate::data::Source {
            kind: Some(self.dataset),
            data: self.data.clone(),
            file_list: self.file_list.clone(),
            cache: (self.cache_size > 0).then(|| crate::data::folder::Cache {
                dir: self.cache_dir.clone().unwrap_or_else(|| self.out.join("cache")),
                size: self.cache_size,
            }),
            coarse_labels: self.coarse_labels,
        }
    }

    /// What to do with unreadable images.
    pub fn bad_images(&self) -> crate::data::BadImages {
        crate::data::BadImages::new(self.strict)
    }

    /// The optimiser's update rule.
    pub fn rule(&self) -> Rule {
        Rule::new(self.optimizer, self.momentum, self.weight_decay)
    }
}
