//! The run configuration: one [`Config`] mirroring the official `run.py` flags that apply.
//!
//! Sources, later wins: built-in defaults → `--config FILE.toml` → command-line flags. Every field is
//! also a flag (the kebab-case of its name). The resolved config is written next to each checkpoint
//! as TOML, so `simclr pretrain --config OUT/config.toml` repeats a run exactly.

use crate::augment::AugmentConfig;
use crate::data::DatasetKind;
use crate::device::Precision;
use crate::head::{HeadConfig, HeadMode};
use crate::model::ModelConfig;
use crate::optim::{OptimizerKind, Rule};
use crate::resnet::{Arch, ResNetConfig, Stem};
use crate::schedule::LrScaling;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Declares [`Config`] (every setting with its default), [`ConfigArgs`] (the same settings, each
/// optional: the flags and the shape of a partial TOML file) and [`Config::apply`] from one list, so
/// a setting is written once. A field `name: T = default` is a `T` in `Config`; a field
/// `name: Option<T>` stays unset (`None`) unless given. The bracket holds the field's extra `#[arg]`
/// options (`value_enum` for enums), or `skip` for a setting that is no flag of its own.
macro_rules! settings {
    // Every field normalised: emit the two structs and the overlay.
    (@emit $( { [$(#[doc = $doc:literal])*] [$($arg:tt)*] $field:ident [$cfg_ty:ty] [$arg_ty:ty] [$default:expr] [$wrap:expr] } )*) => {
        /// Every setting of a pretraining run.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $cfg_ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// The same settings as flags, each optional; also the shape of a partial TOML file.
        #[derive(Clone, Debug, Default, Serialize, Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigArgs {
            $( $(#[doc = $doc])* #[arg($($arg)*)] pub $field: Option<$arg_ty>, )*
        }

        impl Config {
            /// Overwrites every field that `args` sets.
            pub fn apply(&mut self, args: ConfigArgs) {
                $( if let Some(v) = args.$field { self.$field = $wrap(v); } )*
            }
        }
    };
    // A field with a default that is no flag of its own (`[skip]`): set by the caller or the file.
    (@parse [$($done:tt)*] $(#[doc = $doc:literal])* [skip] $field:ident : $ty:ty = $default:expr, $($rest:tt)*) => {
        settings!(@parse [$($done)* { [$(#[doc = $doc])*] [skip] $field [$ty] [$ty] [$default] [std::convert::identity] }] $($rest)*);
    };
    // An optional field: unset by default.
    (@parse [$($done:tt)*] $(#[doc = $doc:literal])* [$($arg:tt)*] $field:ident : Option<$ty:ty>, $($rest:tt)*) => {
        settings!(@parse [$($done)* { [$(#[doc = $doc])*] [long, $($arg)*] $field [Option<$ty>] [$ty] [None] [Some] }] $($rest)*);
    };
    // A field with a default.
    (@parse [$($done:tt)*] $(#[doc = $doc:literal])* [$($arg:tt)*] $field:ident : $ty:ty = $default:expr, $($rest:tt)*) => {
        settings!(@parse [$($done)* { [$(#[doc = $doc])*] [long, $($arg)*] $field [$ty] [$ty] [$default] [std::convert::identity] }] $($rest)*);
    };
    (@parse [$($done:tt)*]) => {
        settings!(@emit $($done)*);
    };
    ($($fields:tt)*) => {
        settings!(@parse [] $($fields)*);
    };
}

settings! {
    /// Dataset format.
    [value_enum] dataset: DatasetKind = DatasetKind::Builtin,
    /// Folder holding the dataset files (not needed for `builtin`).
    [] data: Option<PathBuf>,
    /// Use only the first N training images (0 = all).
    [] limit: usize = 0,
    /// Encoder depth.
    [value_enum] arch: Arch = Arch::Resnet18,
    /// Width multiplier of the encoder (1, 2, 4 as the paper; 0.25, 0.5 for quick CPU runs).
    [] width: f32 = 1.0,
    /// Encoder stem (`auto`: CIFAR stem for images ≤ 32 px).
    [value_enum] stem: Stem = Stem::Auto,
    /// Zero-initialise the γ of each residual block's last BN (true: official code; false: every
    /// γ = 1, torchvision's default init, the random-init baseline itself).
    [] zero_init_residual: bool = true,
    /// Side of the training views in pixels (0 = the dataset's own size).
    [] image_size: usize = 0,
    /// Projection head kind.
    [value_enum] head: HeadMode = HeadMode::Nonlinear,
    /// Layers of a nonlinear head (v1: 2, v2: 3).
    [] head_layers: usize = 2,
    /// Dimension of z.
    [] proj_dim: usize = 128,
    /// NT-Xent temperature τ.
    [] temperature: f32 = 0.5,
    /// Images per batch (2 views each).
    [] batch_size: usize = 256,
    /// Training epochs (ignored when `max_steps` > 0).
    [] epochs: usize = 100,
    /// Stop after this many steps (0 = use `epochs`).
    [] max_steps: usize = 0,
    /// Optimiser.
    [value_enum] optimizer: OptimizerKind = OptimizerKind::Lars,
    /// Base learning rate before batch-size scaling.
    [] lr: f64 = 0.3,
    /// How the LR scales with the batch size.
    [value_enum] lr_scaling: LrScaling = LrScaling::Linear,
    /// Epochs of linear warm-up.
    [] warmup_epochs: f64 = 10.0,
    /// Weight decay (not applied to BN parameters and biases).
    [] weight_decay: f64 = 1e-6,
    /// Momentum (β₁ for AdamW).
    [] momentum: f64 = 0.9,
    /// Colour distortion strength s.
    [] color_strength: f32 = 1.0,
    /// Smallest random-crop area, a fraction of the image in (0, 1] (paper: 0.08; many CIFAR
    /// recipes 0.2).
    [] crop_min_area: f32 = crate::augment::PAPER_MIN_CROP_AREA,
    /// Gaussian blur on/off (unset: on for images > 32 px, as the paper).
    [] blur: Option<bool>,
    /// Seed of weights, data order and augmentations.
    [] seed: u64 = 0,
    /// Output folder (checkpoints, metrics, config).
    [] out: PathBuf = PathBuf::from("runs/simclr"),
    /// Write a checkpoint every N steps (0 = at the end of each epoch only).
    [] checkpoint_every: usize = 0,
    /// Checkpoints kept on disk (older ones are deleted).
    [] keep_checkpoints: usize = 2,
    /// Train a linear probe on stop-gradient(h) alongside, when the dataset has labels.
    [] online_probe: bool = true,
    /// Classes of the training set (filled in by `pretrain`; 0 = unlabelled or unknown).
    [hide = true] num_classes: usize = 0,
    /// Run a kNN monitor on the test split every N epochs (0 = off).
    [] knn_every: usize = 0,
    /// Image folders: keep only the files this list names (one per line: a path relative to
    /// --data, or a file name).
    [] file_list: Option<PathBuf>,
    /// Image folders: cache decoded images resized to this shorter side, so later epochs skip
    /// decoding (0 = no cache).
    [] cache_size: u32 = 0,
    /// Where the image cache lives (default: OUT/cache).
    [] cache_dir: Option<PathBuf>,
    /// CIFAR-100: use the 20 coarse labels instead of the 100 fine ones.
    [] coarse_labels: bool = false,
    /// Stop at the first unreadable image instead of skipping it with a warning.
    [] strict: bool = false,
    /// Arithmetic of the convolutions: the global `--precision`, recorded so that `--resume` and a
    /// `--config` rerun compute as the run did.
    [skip] precision: Precision = Precision::F32,
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
