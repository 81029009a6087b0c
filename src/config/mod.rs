//! The run configuration, in the groups the commands share: [`DataSettings`] (`[data]`),
//! [`ModelSettings`] (`[model]`), [`AugmentSettings`] (`[augment]`), [`OptimSettings`]
//! (`[optim]`), [`RunSettings`] (`[run]`) and [`MonitorSettings`] (`[monitor]`). A [`Config`]
//! holds them all; each command flattens only the groups it reads, so its `--help` lists exactly
//! its flags (pretraining: all of them; `knn`: data, model for `--random-init`, run).
//!
//! Sources, later wins: built-in defaults → `--recipe NAME` ([`recipe`]) → `--config FILE.toml` →
//! command-line flags. Every field is
//! also a flag (the kebab-case of its name). The file has one TOML section per group (`[optim]`
//! `lr = 1.0`); a partial file sets what it names. The resolved config is written next to each
//! checkpoint, so `simclr pretrain --config OUT/config.toml` repeats a run exactly.

use crate::augment::AugmentConfig;
use crate::data::DatasetKind;
use crate::device::{Compute, MemoryFormat, Precision};
use crate::head::{HeadConfig, HeadMode};
use crate::model::ModelConfig;
use crate::optim::{OptimizerKind, Rule};
use crate::resnet::{Arch, ResNetConfig, Stem};
use crate::schedule::LrScaling;
use recipe::Recipe;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[macro_use]
mod settings;
pub mod check;
pub mod recipe;

settings! {
    /// `[data]`: where the images are and how to read them.
    DataSettings, DataArgs {
        /// Dataset format.
        [value_enum] dataset: DatasetKind = DatasetKind::Builtin,
        /// Folder holding the dataset files (not needed for `builtin`).
        [] data: Option<PathBuf>,
        /// Use only the first N training images (0 = all).
        [] limit: usize = 0,
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
        /// Labelled folders without a test/ sub-folder: hold out this share of each class as the
        /// test split, drawn with --split-seed (0: no test split).
        [] test_fraction: f64 = 0.0,
        /// Seed of the --test-fraction draw.
        [] split_seed: u64 = 0,
        /// Which of the ⌈1/F⌉ disjoint slices of each class --test-fraction F holds out (0 to
        /// ⌈1/F⌉ − 1; the rest train): over every fold each image is tested once (k-fold).
        [] test_fold: usize = 0,
        /// Labelled folders: leave out the classes with fewer images (0 keeps all).
        [] min_class_images: usize = 0,
    }
}

settings! {
    /// `[model]`: the network, encoder f and projection head g, and the side of its input images.
    ModelSettings, ModelArgs {
        /// Encoder depth.
        [value_enum] arch: Arch = Arch::Resnet18,
        /// Width multiplier of the encoder (1, 2, 4 as the paper; 0.25, 0.5 for quick CPU runs).
        [] width: f32 = 1.0,
        /// Encoder stem (`auto`: CIFAR stem for images ≤ 32 px).
        [value_enum] stem: Stem = Stem::Auto,
        /// Zero-initialise the γ of each residual block's last BN (true: official code; false: every
        /// γ = 1, torchvision's default init, the random-init baseline itself).
        [] zero_init_residual: bool = true,
        /// Selective kernels (SimCLR v2): attention width as a share of each bottleneck's 3×3
        /// channels, at least 32 (0: none; v2's released `_sk1` models: 0.0625). Brings ResNet-D's
        /// deep stem and average-pooling shortcuts, as the official code.
        [] sk_ratio: f32 = 0.0,
        /// Squeeze-excitation: squeeze width as a share of each block's planes (0: none).
        [] se_ratio: f32 = 0.0,
        /// How the ImageNet stem's max-pooling pads (tensorflow: SAME, as networks imported from
        /// TensorFlow checkpoints).
        [value_enum] padding: crate::resnet::Padding = crate::resnet::Padding::Torchvision,
        /// Side of the input images (the training views) in pixels (0 = the dataset's own size:
        /// its first image's longer side, at most 224).
        [] image_size: usize = 0,
        /// Projection head kind.
        [value_enum] head: HeadMode = HeadMode::Nonlinear,
        /// Layers of a nonlinear head (v1: 2, v2: 3).
        [] head_layers: usize = 2,
        /// Dimension of z.
        [] proj_dim: usize = 128,
        /// Only the first this many head layers: a fine-tuned network's (set by `finetune`).
        [skip] head_keep: Option<usize> = None,
    }
}

settings! {
    /// `[augment]`: the augmentation of the training views (paper §3, App. A).
    AugmentSettings, AugmentArgs {
        /// Colour distortion strength s (0: no colour distortion at all, grayscale included).
        [] color_strength: f32 = 1.0,
        /// Smallest random-crop area, a fraction of the image in (0, 1] (paper: 0.08; many CIFAR
        /// recipes 0.2).
        [] crop_min_area: f32 = crate::augment::PAPER_MIN_CROP_AREA,
        /// Gaussian blur on/off (unset: on for images > 32 px, as the paper).
        [] blur: Option<bool>,
        /// The augmentation ablation's one-branch protocol (paper §3.1, Fig. 5): both views share
        /// one random crop, and only the second gets these transformations, in order
        /// (comma-separated among crop, cutout, color, sobel, noise, blur, rotate; unset: the
        /// standard pipeline on both views).
        [] one_branch: Option<crate::augment::ablation::Transforms>,
        /// How crops are resized, in training and in evaluation of the network (bicubic: TF1's
        /// resize_bicubic as the official code, recorded by networks imported from TensorFlow).
        [value_enum] resize: crate::augment::Resize = crate::augment::Resize::Bilinear,
    }
}

settings! {
    /// `[optim]`: the objective and its optimisation.
    OptimSettings, OptimArgs {
        /// NT-Xent temperature τ.
        [] temperature: f32 = 0.5,
        /// Compare ℓ2-normalised z (cosine similarity, NT-Xent); false: raw dot products (paper
        /// Table 5).
        [] l2_normalize: bool = true,
        /// Images per batch (2 views each), over all ranks: K ranks (`mpirun -np K`) take
        /// batch-size / K each.
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
        /// With several ranks: BN statistics over the whole batch, every rank's part (sync BN, the
        /// official global_bn); false: each rank normalises its own part.
        [] sync_bn: bool = true,
        /// Images per chunk of this rank's part of the batch (0 = the whole part at once): the
        /// whole batch's gradient by gradient caching, with the memory of a chunk and one more
        /// forward; BN normalises each chunk alone (see --chunk-views).
        [] micro_batch: usize = 0,
        /// With --micro-batch: which views share a chunk (split: an image's two views in different
        /// chunks, so BN cannot leak the positive pair; paired: both, as ranks without sync BN).
        [value_enum] chunk_views: crate::views::ChunkViews = crate::views::ChunkViews::Split,
    }
}

settings! {
    /// `[run]`: the seed and the output folder.
    RunSettings, RunArgs {
        /// Seed of weights, data order and augmentations.
        [] seed: u64 = 0,
        /// Output folder.
        [] out: PathBuf = PathBuf::from("runs/simclr"),
        /// Arithmetic of the encoder: the global `--precision`, recorded so that `--resume` and a
        /// `--config` rerun compute as the run did.
        [skip] precision: Precision = Precision::F32,
        /// Memory order of the encoder's activations: the global `--memory-format`, recorded as
        /// `precision` is.
        [skip] memory_format: MemoryFormat = MemoryFormat::Auto,
        /// The `--recipe` the settings started from (empty: none), recorded so that `--resume`
        /// and a `--config` rerun say where they came from.
        [skip] recipe: String = String::new(),
    }
}

impl RunSettings {
    /// How a network computes under these settings on `device` ([`Compute::on`]), without sync BN.
    pub fn compute(&self, device: &burn::tensor::Device) -> Result<Compute> {
        Compute::on(device, self.precision, self.memory_format)
    }
}

settings! {
    /// `[monitor]`: what a pretraining run keeps and watches as it goes: checkpoints, the online
    /// probe, the kNN monitor.
    MonitorSettings, MonitorArgs {
        /// Write a checkpoint every N steps (0 = at the end of each epoch only).
        [] checkpoint_every: usize = 0,
        /// Checkpoints kept on disk (older ones are deleted).
        [] keep_checkpoints: usize = 2,
        /// Train a linear probe on stop-gradient(h) alongside, when the dataset has labels.
        [] online_probe: bool = true,
        /// The layer the online probe reads: 0 = h (the official linear evaluation while
        /// pretraining), k = head layer k (SimCLR v2's fine-tuned classifiers: 1).
        [] probe_layer: usize = 0,
        /// Classes of the training set (filled in by `pretrain`; 0 = unlabelled or unknown).
        [hide = true] num_classes: usize = 0,
        /// Run a kNN monitor on the test split every N epochs (0 = off).
        [] knn_every: usize = 0,
        /// Write TensorBoard event files in OUT/tb: every metrics.jsonl value by step, the first
        /// batch's views and the curves as images (`tensorboard --logdir OUT/tb`).
        [] tensorboard: bool = true,
    }
}

/// Every setting of a pretraining run, one field a group (a TOML section each).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[data]`.
    pub data: DataSettings,
    /// `[model]`.
    pub model: ModelSettings,
    /// `[augment]`.
    pub augment: AugmentSettings,
    /// `[optim]`.
    pub optim: OptimSettings,
    /// `[run]`.
    pub run: RunSettings,
    /// `[monitor]`.
    pub monitor: MonitorSettings,
}

/// Every group's flags (what `pretrain` takes), each optional; also the shape of a partial TOML
/// file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    /// `[data]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Data"))]
    #[serde(default)]
    pub data: DataArgs,
    /// `[model]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Model"))]
    #[serde(default)]
    pub model: ModelArgs,
    /// `[augment]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Augmentation"))]
    #[serde(default)]
    pub augment: AugmentArgs,
    /// `[optim]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Optimisation"))]
    #[serde(default)]
    pub optim: OptimArgs,
    /// `[run]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Run"))]
    #[serde(default)]
    pub run: RunArgs,
    /// `[monitor]`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Checkpoints and monitors"))]
    #[serde(default)]
    pub monitor: MonitorArgs,
}

/// The groups' sections, for the error of a file written before the settings were grouped.
const SECTIONS: &str = "[data], [model], [augment], [optim], [run], [monitor]";

impl Config {
    /// Overwrites every field that `args` sets.
    pub fn apply(&mut self, args: ConfigArgs) {
        self.data.apply(args.data);
        self.model.apply(args.model);
        self.augment.apply(args.augment);
        self.optim.apply(args.optim);
        self.run.apply(args.run);
        self.monitor.apply(args.monitor);
    }

    /// Defaults, overlaid by `file` (if any), overlaid by the flags in `args`.
    pub fn resolve(file: Option<&Path>, args: &ConfigArgs) -> Result<Self> {
        Self::resolve_recipe(None, file, args)
    }

    /// The defaults overwritten by `recipe`'s settings (named in `[run] recipe`), then by those of
    /// `file`, then by the flags `args`.
    pub fn resolve_recipe(recipe: Option<&Recipe>, file: Option<&Path>, args: &ConfigArgs) -> Result<Self> {
        let mut cfg = Self::default();
        if let Some(recipe) = recipe {
            cfg.apply(recipe.args());
            cfg.run.recipe = recipe.name.to_string();
        }
        if let Some(path) = file {
            cfg.apply(Self::file_args(path)?);
        }
        cfg.apply(args.clone());
        Ok(cfg)
    }

    /// Reads a full or partial config from TOML (missing fields keep their defaults).
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut cfg = Self::default();
        cfg.apply(Self::file_args(path)?);
        Ok(cfg)
    }

    /// The settings a full or partial TOML config file sets.
    fn file_args(path: &Path) -> Result<ConfigArgs> {
        let text = crate::files::read_to_string(path).with_context(|| format!("--config {}: cannot read the file", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "--config {}: not a valid simclr config: settings go in the sections {SECTIONS}, under the names of their flags (`simclr pretrain --help` lists them by section; any run's OUT/config.toml is an example)",
                path.display()
            )
        })
    }

    /// The config as TOML, one section a group.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks every value that can be checked without the data; errors name the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        let (m, a, o) = (&self.model, &self.augment, &self.optim);
        self.check_integers()?;
        check::at_most("--image-size", m.image_size, check::MAX_IMAGE_SIZE, "pixels a side")?;
        check::at_most("--head-layers", m.head_layers, 16, "layers (v1: 2, v2: 3)")?;
        check::at_most("--proj-dim", m.proj_dim, 1 << 16, "dimensions (the paper: 128)")?;
        if m.width > 16.0 {
            bail!("--width {}: at most 16 (the paper goes to 4; ResNet-50 4x has 375M weights)", m.width);
        }
        check::finite_at_least("--warmup-epochs", o.warmup_epochs, 0.0)?;
        check::finite_at_least("--weight-decay", o.weight_decay, 0.0)?;
        check::finite_at_least("--color-strength", a.color_strength as f64, 0.0)?;
        if o.batch_size < 2 {
            bail!("--batch-size {}: NT-Xent needs at least 2 images per batch (negatives come from the batch); use 2 or more", o.batch_size);
        }
        if !(o.temperature > 0.0 && o.temperature.is_finite()) {
            bail!("--temperature {}: must be a positive number (the paper uses 0.1-0.5)", o.temperature);
        }
        if !(m.width > 0.0 && m.width.is_finite()) {
            bail!("--width {}: must be positive (1, 2, 4 as the paper, or e.g. 0.25 for quick runs)", m.width);
        }
        self.model.network(crate::resnet::Stem::Imagenet.stride() * 8, 0, 0).encoder.check().map_err(anyhow::Error::msg)?;
        let layers = match m.head {
            HeadMode::None => 0,
            HeadMode::Linear => 1,
            HeadMode::Nonlinear => m.head_layers,
        };
        if self.monitor.probe_layer > layers {
            bail!("--probe-layer {}: the head has {layers} layers (0 is h)", self.monitor.probe_layer);
        }
        if m.head == HeadMode::Nonlinear && m.head_layers == 0 {
            bail!("--head-layers 0: a nonlinear head needs at least 1 layer (use --head none for no head)");
        }
        if m.proj_dim == 0 {
            bail!("--proj-dim 0: the projection needs at least 1 dimension");
        }
        if o.epochs == 0 && o.max_steps == 0 {
            bail!("--epochs 0 with --max-steps 0: nothing to train; set one of them");
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            bail!("--lr {}: must be a positive number", o.lr);
        }
        check::momentum("--momentum", o.momentum)?;
        if !(a.crop_min_area > 0.0 && a.crop_min_area <= 1.0) {
            bail!("--crop-min-area {}: must be in (0, 1] (a fraction of the image area; the paper uses 0.08)", a.crop_min_area);
        }
        if self.monitor.keep_checkpoints == 0 {
            bail!("--keep-checkpoints 0: at least the latest checkpoint must be kept");
        }
        self.data.validate()
    }

    /// Every integer setting fits the TOML file it is recorded in (at most 2⁶³ − 1).
    fn check_integers(&self) -> Result<()> {
        let serde_json::Value::Object(sections) = serde_json::to_value(self)? else { return Ok(()) };
        for (key, value) in sections.values().filter_map(|s| s.as_object()).flatten() {
            if value.as_u64().is_some_and(|n| n > i64::MAX as u64) {
                bail!("--{} {value}: at most {} (the largest integer a config file holds)", key.replace('_', "-"), i64::MAX);
            }
        }
        Ok(())
    }

    /// The network shape for input images of side `image_size`, with the online probe when the
    /// monitor settings ask for one.
    pub fn model(&self, image_size: usize) -> ModelConfig {
        let probe_classes = if self.monitor.online_probe { self.monitor.num_classes } else { 0 };
        self.model.network(image_size, probe_classes, self.monitor.probe_layer)
    }

    /// The augmentation pipeline for views of side `image_size`.
    pub fn augment(&self, image_size: usize) -> AugmentConfig {
        self.augment.pipeline(image_size)
    }

    /// Where the data is and how to read it (the image cache under `OUT/cache` unless
    /// `--cache-dir` says otherwise).
    pub fn source(&self) -> crate::data::Source {
        self.data.source(&self.run.out)
    }

    /// What to do with unreadable images.
    pub fn bad_images(&self) -> crate::data::BadImages {
        crate::data::BadImages::new(self.data.strict)
    }

    /// The optimiser's update rule.
    pub fn rule(&self) -> Rule {
        Rule::new(self.optim.optimizer, self.optim.momentum, self.optim.weight_decay)
    }
}

impl DataSettings {
    /// Checks that a dataset other than `builtin` has its folder.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.test_fraction) {
            bail!("--test-fraction {}: must be at least 0 and below 1 (e.g. 0.2 holds out a fifth of each class)", self.test_fraction);
        }
        if self.test_fraction > 0.0 && self.dataset != DatasetKind::Folder {
            bail!("--test-fraction is for --dataset folder (a labelled folder without a test/ split); {} has its own test split", self.dataset.name());
        }
        if self.test_fold > 0 && self.test_fraction == 0.0 {
            bail!("--test-fold {}: there are folds only with --test-fraction (e.g. --test-fraction 0.2 gives folds 0 to 4)", self.test_fold);
        }
        if self.test_fraction > 0.0 {
            let folds = crate::data::HoldOut::folds(self.test_fraction);
            if self.test_fold >= folds {
                bail!("--test-fold {}: --test-fraction {} cuts each class into {folds} folds, 0 to {}", self.test_fold, self.test_fraction, folds - 1);
            }
        }
        if self.dataset != DatasetKind::Builtin && self.data.is_none() {
            bail!(
                "--dataset {} needs --data DIR (Fashion-MNIST: `apt-get install -y dataset-fashion-mnist`, then --data /usr/share/datasets/fashion-mnist)",
                self.dataset.name()
            );
        }
        Ok(())
    }

    /// Refuses to evaluate a network pretrained on a drawn split (`--test-fraction`) of this
    /// folder on another draw of it (`eval`): that test split would hold images it was pretrained on.
    pub fn check_held_out_split(&self, eval: &DataSettings) -> Result<()> {
        let split = |d: &DataSettings| (d.test_fraction, d.split_seed, d.test_fold, d.min_class_images);
        let same_folder = self.dataset == eval.dataset && self.data.is_some() && self.data == eval.data;
        if self.test_fraction > 0.0 && same_folder && split(self) != split(eval) {
            let flags = |d: &DataSettings| format!("--test-fraction {} --split-seed {} --test-fold {} --min-class-images {}", d.test_fraction, d.split_seed, d.test_fold, d.min_class_images);
            bail!(
                "pretrained on {} with `{}` holding out its test split, and evaluated with `{}`: that test split holds images the network was pretrained on; give the pretraining's four flags",
                self.data.as_deref().unwrap_or(Path::new("")).display(),
                flags(self),
                flags(eval)
            );
        }
        Ok(())
    }

    /// Where the data is and how to read it; the image cache (if any) defaults to `out/cache`.
    pub fn source(&self, out: &Path) -> crate::data::Source {
        crate::data::Source {
            kind: Some(self.dataset),
            data: self.data.clone(),
            file_list: self.file_list.clone(),
            cache: (self.cache_size > 0).then(|| crate::data::folder::Cache {
                dir: self.cache_dir.clone().unwrap_or_else(|| out.join("cache")),
                size: self.cache_size,
            }),
            coarse_labels: self.coarse_labels,
            min_class_images: self.min_class_images,
            hold_out: (self.test_fraction > 0.0).then_some(crate::data::HoldOut { fraction: self.test_fraction, seed: self.split_seed, fold: self.test_fold }),
        }
    }
}

impl ModelSettings {
    /// The network for input images of side `image_size`, with an online probe over
    /// `probe_classes` classes (0: none) reading layer `probe_layer` (0: h).
    pub fn network(&self, image_size: usize, probe_classes: usize, probe_layer: usize) -> ModelConfig {
        ModelConfig {
            encoder: ResNetConfig {
                arch: self.arch,
                width: self.width,
                stem: self.stem.resolve(image_size),
                zero_init_residual: self.zero_init_residual,
                sk_ratio: self.sk_ratio,
                se_ratio: self.se_ratio,
                padding: self.padding,
            },
            head: HeadConfig { mode: self.head, layers: self.head_layers, proj_dim: self.proj_dim, keep: self.head_keep },
            probe_classes,
            probe_layer,
        }
    }
}

impl AugmentSettings {
    /// The augmentation pipeline for views of side `image_size`.
    pub fn pipeline(&self, image_size: usize) -> AugmentConfig {
        let mut aug = AugmentConfig::simclr(image_size, self.color_strength);
        aug.min_area = self.crop_min_area;
        if let Some(blur) = self.blur {
            aug.blur = blur;
        }
        aug.one_branch = self.one_branch.as_ref().map(|t| t.0.clone()).unwrap_or_default();
        aug.resize = self.resize;
        aug
    }
}
