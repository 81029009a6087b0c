//! The evaluation commands (`linear-eval`, `knn`, `finetune`, `embed`) and v2's distillation
//! (`distill`) as library functions: each loads a checkpoint (or builds a random-init network),
//! runs its protocol, writes `OUT/report.json` (plus a confusion matrix PNG for classifiers) and
//! returns that report.

use crate::config::{Config, DataArgs, ModelArgs, RunArgs};
use crate::data::{self, Dataset, Split};
use crate::eval::{self, paired, Layer, Loaded};
use crate::eval::finetune::{self, Finetune};
use crate::eval::knn::Knn;
use crate::eval::linear::{self, SgdProbe};
use crate::eval::report::{confusion_png, Report};
use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What every evaluation command takes: the network and the data.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[cfg_attr(feature = "cli", command(group(clap::ArgGroup::new("source").required(true).args(["checkpoint", "random_init"]))))]
pub struct EvalArgs {
    /// Checkpoint folder, or a pretraining run's --out folder (its latest checkpoint).
    #[cfg_attr(feature = "cli", arg(long))]
    pub checkpoint: Option<PathBuf>,
    /// Evaluate a randomly initialised network built from the model flags (the baseline).
    #[cfg_attr(feature = "cli", arg(long))]
    pub random_init: bool,
    /// The dataset, as for `pretrain`.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Data"))]
    pub data: DataArgs,
    /// The network built by --random-init (a checkpoint brings its own).
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Model (--random-init only; a checkpoint brings its own)"))]
    pub model: ModelArgs,
    /// Seed (random-init weights, held-out split, label subsets, data order) and output folder.
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Run"))]
    pub run: RunArgs,
}

impl EvalArgs {
    /// The settings these flags make, with `default_out` as the output folder unless `--out` is given.
    pub fn config(&self, default_out: &str) -> Config {
        let mut cfg = Config { data: self.data.clone().resolve(), model: self.model.clone().resolve(), run: self.run.clone().resolve(), ..Config::default() };
        if self.run.out.is_none() {
            cfg.run.out = PathBuf::from(default_out);
        }
        cfg
    }
}

/// Which frozen features the feature protocols (`linear-eval`, `knn`, `embed`) use, and where they
/// are kept.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct FeatureArgs {
    /// Representation: h (before the head), z (after it), or head:K.
    #[cfg_attr(feature = "cli", arg(long, default_value = "h"))]
    pub layer: Layer,
    /// Folder where extracted features are kept for the next command on the same network, layer
    /// and data (default: the checkpoint's `features/`; none for --random-init).
    #[cfg_attr(feature = "cli", arg(long))]
    pub feature_cache: Option<PathBuf>,
}

/// Linear-evaluation solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// L-BFGS to convergence, L2 chosen on a held-out 10% of train.
    Lbfgs,
    /// Mini-batch Nesterov SGD with a cosine schedule.
    Sgd,
}

struct Prepared {
    loaded: Loaded,
    flags: Config,
    train: Arc<dyn Dataset>,
    test: Arc<dyn Dataset>,
    out: PathBuf,
    layer_index: usize,
    feature_cache: Option<PathBuf>,
}

/// The network, the data (`--limit` applied to the training split) and the output folder; with
/// `features`, the layer and feature cache of a feature protocol (else h, no cache).
fn prepare(args: &EvalArgs, features: Option<&FeatureArgs>, default_out: &str, device: &Device) -> Result<Prepared> {
    let flags = args.config(default_out);
    flags.validate()?;
    let train = data::first(data::open(&flags.source(), Split::Train)?, flags.data.limit);
    let test = data::open(&flags.source(), Split::Test)?;
    let first = train.image(0)?;
    let loaded = eval::load(args.checkpoint.as_deref(), &flags, crate::augment::default_view_side(first.height, first.width), device)?;
    let layer_index = features.map_or(Ok(0), |f| f.layer.index(loaded.model.head.len()))?;
    let out = flags.run.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", out.display()))?;
    let feature_cache = features.and_then(|f| f.feature_cache.clone().or_else(|| loaded.checkpoint.as_ref().map(|c| c.join("features"))));
    Ok(Prepared { loaded, flags, train, test, out, layer_index, feature_cache })
}

/// The frozen features of one split, read from the feature cache when this network, layer, data
/// and image size were extracted before (keyed by a hash of all of them) and the cached files match
/// their manifest; extracted (and cached, sealed) otherwise.
fn frozen_features(p: &Prepared, split: SplitArg, device: &Device) -> Result<eval::Features> {
    let ds = if split == SplitArg::Train { &p.train } else { &p.test };
    let extract = || eval::extract(&p.loaded.model, p.layer_index, ds.as_ref(), p.loaded.image_size, 256, &p.flags.bad_images(), device);
    let Some(cache) = &p.feature_cache else { return extract() };
    // The network: its weights' hash, or for random init what draws them (shape and seed; not the
    // other flags, such as --out, which differ between commands).
    let network = match &p.loaded.checkpoint_sha256 {
        Some(sha) => sha.clone(),
        None => format!("random init {:?} seed {}", eval::random_init_baseline(&p.loaded.config, p.loaded.image_size), p.loaded.config.run.seed),
    };
    let data = format!("{:?} limit {}", p.flags.source(), p.flags.data.limit);
    let key = crate::manifest::sha256_hex(format!("{network}\n{data}\n{split:?}\n{}\n{}", p.layer_index, p.loaded.image_size).as_bytes());
    let dir = cache.join(format!("{split:?}-{}", &key[..16]).to_lowercase());
    if dir.join(crate::manifest::MANIFEST).exists() {
        match crate::manifest::verify(&dir) {
            Ok(_) => {
                tracing::info!("features of the {split:?} split from the cache {}", dir.display());
                return crate::eval::embed::read(&dir);
            }
            Err(e) => tracing::warn!("feature cache {e}; extracting the features again"),
        }
    }
    tracing::info!("extracting the features of the {split:?} split (cached in {})", dir.display());
    let f = extract()?;
    let files: &[&str] = if f.is_labelled() { &["features.npy", "labels.npy"] } else { &["features.npy"] };
    // A cache that cannot be written (a read-only checkpoint) costs a second extraction next time, nothing more.
    if let Err(e) = crate::eval::embed::write(&f, &dir).and_then(|_| crate::manifest::seal(&dir, files)) {
        tracing::warn!("feature cache {}: not written ({e:#}); pass --feature-cache DIR to keep the features", dir.display());
    }
    Ok(f)
}

/// The command's report, written to `OUT/report.json` and returned.
fn report<M: Serialize>(p: &Prepared, protocol: &'static str, settings: serde_json::Value, metrics: M, start: Instant) -> Result<Report<M>> {
    let report = Report {
        protocol,
        checkpoint: p.loaded.checkpoint.as_ref().map(|c| c.display().to_string()),
        checkpoint_sha256: p.loaded.checkpoint_sha256.clone(),
        dataset: format!("{} {}", p.flags.data.dataset.name(), p.flags.data.data.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()),
        model_config: p.loaded.config.clone(),
        settings,
        metrics,
        wall_time_s: start.elapsed().as_secs_f64(),
        out: p.out.clone(),
    };
    report.write()?;
    if let Some(checkpoint) = &p.loaded.checkpoint {
        // Events that cannot be written (a read-only run folder) cost the TensorBoard view, nothing more.
        if let Err(e) = add_to_run_events(checkpoint, protocol, &report.metrics) {
            tracing::warn!("TensorBoard events of the run of {}: not written ({e:#})", checkpoint.display());
        }
    }
    Ok(report)
}

/// The report's top-1 and top-5 as TensorBoard scalars `PROTOCOL/LAYER/top1` and `…/top5` of the run
/// `checkpoint` belongs to (`RUN/checkpoints/step-N`), at its step, where the run writes events
/// (`RUN/tb`); nothing otherwise.
fn add_to_run_events(checkpoint: &Path, protocol: &str, metrics: &impl Serialize) -> Result<()> {
    let run = checkpoint.parent().filter(|dir| dir.file_name() == Some("checkpoints".as_ref())).and_then(Path::parent);
    let Some(tb) = run.map(|run| run.join("tb")).filter(|tb| tb.is_dir()) else { return Ok(()) };
    let metrics = serde_json::to_value(metrics)?;
    let layer = metrics["layer"].as_str().unwrap_or("h");
    let values: Vec<(String, f64)> = ["top1", "top5"].iter().filter_map(|k| Some((format!("{protocol}/{layer}/{k}"), metrics[*k].as_f64()?))).collect();
    if values.is_empty() {
        return Ok(());
    }
    let step = crate::checkpoint::read_state(checkpoint)?.step;
    let mut events = crate::tensorboard::EventWriter::create(&tb)?;
    events.scalars(step, &values.iter().map(|(tag, v)| (tag.as_str(), *v)).collect::<Vec<_>>())?;
    events.flush()
}

/// Classification metrics every classifier protocol reports, with its own `extra`s.
#[derive(Debug, Serialize)]
pub struct ClassMetrics<E> {
    /// Test top-1 accuracy (fraction).
    pub top1: f64,
    /// Test top-5 accuracy (fraction).
    pub top5: f64,
    /// Test images scored (unreadable ones are left out).
    pub test_images: usize,
    /// Training accuracy (fraction); absent for kNN, whose training points vote for themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_top1: Option<f64>,
    /// Feature layer evaluated.
    pub layer: String,
    /// Protocol-specific extras.
    #[serde(flatten)]
    pub extra: E,
}

/// `linear-eval`'s extras.
#[derive(Debug, Serialize)]
pub struct LinearExtra {
    /// Dimension of the features.
    pub feature_dim: usize,
    /// L2 penalty of the fitted classifier.
    pub l2: f64,
    /// The L-BFGS L2 search: (L2, held-out accuracy) of each candidate (empty for SGD).
    pub l2_validation: Vec<(f64, f64)>,
    /// The solver.
    pub solver: Solver,
}

/// `finetune`'s extras.
#[derive(Debug, Serialize)]
pub struct FinetuneExtra {
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// Labelled training images used.
    pub labelled_images: usize,
    /// The learning rate after scaling by the batch size.
    pub peak_lr: f64,
    /// The file listing the labelled subset (reusable with --subset).
    pub subset_file: PathBuf,
    /// The fine-tuned network's checkpoint (encoder, kept head layers, classifier).
    pub checkpoint: PathBuf,
}

/// `embed`'s metrics.
#[derive(Debug, Serialize)]
pub struct EmbedMetrics {
    /// Rows written.
    pub images: usize,
    /// Dimension of a row.
    pub dim: usize,
    /// The layer embedded.
    pub layer: String,
    /// Whether labels.npy was written.
    pub labelled: bool,
    /// Side of the images the network saw.
    pub image_size: usize,
}

fn classification<E>(p: &Prepared, scores: &[f32], labels: &[usize], train_top1: Option<f64>, layer: Layer, extra: E) -> Result<ClassMetrics<E>> {
    let classes = p.train.num_classes();
    let matrix = eval::confusion(scores, classes, labels)?;
    let m = ClassMetrics {
        top1: eval::topk_accuracy(scores, classes, labels, 1)?,
        top5: eval::topk_accuracy(scores, classes, labels, 5.min(classes))?,
        test_images: labels.len(),
        train_top1,
        layer: layer.to_string(),
        extra,
    };
    confusion_png(&matrix, &p.out.join("confusion.png"))?;
    crate::eval::embed::write_ints(&paired::predictions(scores, classes), &p.out.join(PREDICTIONS))?;
    crate::eval::embed::write_ints(labels, &p.out.join(TEST_LABELS))?;
    Ok(m)
}

/// The file of each classifier command's `OUT` with its top class for each scored test image.
pub const PREDICTIONS: &str = "test_predictions.npy";
/// The file beside it with those images' labels.
pub const TEST_LABELS: &str = "test_labels.npy";

/// `simclr compare`: the classifiers whose commands wrote the folders `a` and `b`, compared image
/// by image on their shared test images (McNemar's test, [`paired::mcnemar`]).
pub fn compare(a: &Path, b: &Path) -> Result<paired::Paired> {
    let read = |dir: &Path| -> Result<(Vec<usize>, Vec<usize>)> {
        let file = |name: &str| {
            let f = dir.join(name);
            crate::eval::embed::read_ints(&f).with_context(|| format!("{}: no {name} to compare; give the --out of linear-eval, knn, finetune or distill", dir.display()))
        };
        Ok((file(PREDICTIONS)?, file(TEST_LABELS)?))
    };
    let ((pa, la), (pb, lb)) = (read(a)?, read(b)?);
    if la != lb || pa.len() != la.len() || pb.len() != lb.len() {
        bail!("{} and {} did not score the same test images (their {TEST_LABELS} differ): compare runs on the same test split", a.display(), b.display());
    }
    paired::mcnemar(&paired::hits(&pa, &la), &paired::hits(&pb, &lb))
}

fn require_labels(p: &Prepared, protocol: &str) -> Result<()> {
    if p.train.num_classes() == 0 {
        bail!("{protocol} needs labels, and --dataset {} has none", p.flags.data.dataset.name());
    }
    Ok(())
}

/// Checks the data is labelled, then the frozen features of the train and test splits.
fn labelled_features(p: &Prepared, protocol: &str, device: &Device) -> Result<(eval::Features, eval::Features)> {
    require_labels(p, protocol)?;
    Ok((frozen_features(p, SplitArg::Train, device)?, frozen_features(p, SplitArg::Test, device)?))
}

/// `simclr linear-eval`.
pub fn linear_eval(args: &EvalArgs, features: &FeatureArgs, solver: Solver, sgd: SgdProbe, device: &Device) -> Result<Report<ClassMetrics<LinearExtra>>> {
    let start = Instant::now();
    sgd.validate()?;
    let p = prepare(args, Some(features), "runs/linear-eval", device)?;
    let (f_train, f_test) = labelled_features(&p, "linear evaluation", device)?;
    let fit = match solver {
        Solver::Lbfgs => linear::Fit::Lbfgs,
        Solver::Sgd => linear::Fit::Sgd(sgd),
    };
    let probe = linear::probe(&f_train, &f_test, p.train.num_classes(), fit, p.flags.run.seed, device)?;
    let extra = LinearExtra { feature_dim: f_train.dim, l2: probe.classifier.l2, l2_validation: probe.l2_validation, solver };
    let m = classification(&p, &probe.test_scores, &f_test.labels, Some(probe.train_top1), features.layer, extra)?;
    report(&p, "linear-eval", serde_json::json!({ "solver": solver, "sgd": sgd }), m, start)
}

/// `simclr knn`.
pub fn knn(args: &EvalArgs, features: &FeatureArgs, knn: Knn, device: &Device) -> Result<Report<ClassMetrics<Knn>>> {
    let start = Instant::now();
    knn.validate()?;
    let p = prepare(args, Some(features), "runs/knn", device)?;
    let (f_train, f_test) = labelled_features(&p, "kNN", device)?;
    let classes = p.train.num_classes();
    let inner = device.clone().inner();
    let scores = knn.scores(&f_train, &f_test, classes, &inner);
    let m = classification(&p, &scores, &f_test.labels, None, features.layer, knn)?;
    report(&p, "knn", serde_json::to_value(knn)?, m, start)
}

/// Label-subset choice for `simclr finetune`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct SubsetArgs {
    /// Fraction of each class's labels to use (0.01 = 1%, 0.1 = 10%, 1 = all).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.1))]
    pub label_fraction: f64,
    /// Reuse a subset index file (one training-image index per line) instead of drawing one.
    #[cfg_attr(feature = "cli", arg(long))]
    pub subset: Option<PathBuf>,
    /// Classify the output of head layer K (v2: 1); 0 classifies h.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub from_head_layer: usize,
}

/// How `finetune` and `distill` train their classifier (paper App. B.5's fine-tuning): its own
/// flags, with their own defaults.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ClassifierOptimArgs {
    /// Epochs over the training images (the labelled subset for `finetune`, every image for `distill`).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 30))]
    pub epochs: usize,
    /// Images per step.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 64))]
    pub batch_size: usize,
    /// Base learning rate, scaled by --lr-scaling (linear: 0.05 × B / 256 as the paper), then
    /// cosine-decayed to 0.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.05))]
    pub lr: f64,
    /// How the LR scales with the batch size.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "linear"))]
    pub lr_scaling: crate::schedule::LrScaling,
    /// Update rule (sgd: Nesterov momentum, as the paper's fine-tuning).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "sgd"))]
    pub optimizer: crate::optim::OptimizerKind,
    /// Momentum.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.9))]
    pub momentum: f64,
    /// Weight decay (none, as the paper's fine-tuning).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0))]
    pub weight_decay: f64,
    /// Smallest random-crop area of the training views, a fraction of the image (the paper's
    /// 0.08; small images such as Fashion-MNIST's 28 px lose much to 8% crops).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = crate::augment::PAPER_MIN_CROP_AREA))]
    pub crop_min_area: f32,
}

impl ClassifierOptimArgs {
    /// The settings, with `seed` for the data order and the classifier's weights.
    pub fn fit(&self, seed: u64) -> finetune::Fit {
        finetune::Fit {
            epochs: self.epochs,
            batch: self.batch_size,
            lr: self.lr,
            lr_scaling: self.lr_scaling,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            crop_min_area: self.crop_min_area,
            color_strength: 0.0,
            seed,
        }
    }
}

/// `simclr finetune`.
pub fn finetune(args: &EvalArgs, subset_args: &SubsetArgs, optim: &ClassifierOptimArgs, device: &Device) -> Result<Report<ClassMetrics<FinetuneExtra>>> {
    let start = Instant::now();
    let p = prepare(args, None, "runs/finetune", device)?;
    let _lock = claim_run_folder(&p.out, "finetune")?;
    require_labels(&p, "fine-tuning")?;
    let classes = p.train.num_classes();
    let labels: Vec<usize> = (0..p.train.len()).map(|i| p.train.label(i).expect("labelled")).collect();
    let subset = match &subset_args.subset {
        Some(file) => finetune::read_subset(file, p.train.len())?,
        None => finetune::label_subset(&labels, classes, subset_args.label_fraction, p.flags.run.seed)?,
    };
    let subset_file = p.out.join(format!("subset-{}-seed{}.txt", subset_args.label_fraction, p.flags.run.seed));
    finetune::write_subset(&subset_file, &subset)?;
    let cfg = Finetune { from_head_layer: subset_args.from_head_layer, fit: optim.fit(p.flags.run.seed) };
    let done = finetune::finetune(p.loaded.model.clone(), p.loaded.image_size, p.train.clone(), &subset, p.test.as_ref(), &cfg, &p.flags.bad_images(), device)?;
    let checkpoint = save_finetuned(&p, &done, &cfg, classes)?;
    let layer = Layer::Head(cfg.from_head_layer);
    let extra = FinetuneExtra { final_loss: done.final_loss, labelled_images: subset.len(), peak_lr: done.peak_lr, subset_file, checkpoint };
    let m = classification(&p, &done.test_scores, &done.test_labels, Some(done.train_accuracy), layer, extra)?;
    report(&p, "finetune", serde_json::to_value(&cfg)?, m, start)
}

/// Locks `out` for `command`, which writes checkpoints there, and refuses it where it already
/// holds a run (its checkpoints, or a pretraining's metrics): saving would prune that run's
/// checkpoints and move its `latest`. The lock is held while the returned file lives.
fn claim_run_folder(out: &Path, command: &str) -> Result<std::fs::File> {
    let lock = crate::checkpoint::lock_run(out)?;
    if let Some(run) = crate::checkpoint::existing_run(out)? {
        bail!("--out {}: the folder already holds a run ({run}), whose checkpoints `{command}` would replace; choose a fresh --out", out.display());
    }
    Ok(lock)
}

/// Writes the fine-tuned network as a checkpoint of `OUT` ([`save_classifier`]), the head kept up
/// to the classifier's layer.
fn save_finetuned(p: &Prepared, done: &finetune::Finetuned, ft: &Finetune, classes: usize) -> Result<PathBuf> {
    let mut cfg = p.loaded.config.clone();
    cfg.model.head_keep = Some(ft.from_head_layer);
    let optim = crate::optim::Optimizer::new(ft.fit.rule());
    save_classifier(p, cfg, &done.model, &optim, &ft.fit, (done.steps, ft.fit.epochs), classes)
}

/// Writes a network whose probe is its classifier (fine-tuned, distilled) as a checkpoint of `OUT`
/// (the sealed format of pretraining's): `cfg` (the network's settings) with the classifier as
/// the probe at its layer, the data it was trained on and `fit`'s seed, at `(step, epoch)` of its
/// training; `OUT/report.json` says how it was made.
fn save_classifier(p: &Prepared, mut cfg: Config, model: &crate::model::SimClr, optim: &crate::optim::Optimizer, fit: &finetune::Fit, (step, epoch): (usize, usize), classes: usize) -> Result<PathBuf> {
    cfg.model.image_size = p.loaded.image_size;
    (cfg.monitor.online_probe, cfg.monitor.num_classes, cfg.monitor.probe_layer) = (true, classes, model.probe_layer);
    (cfg.data, cfg.run.out, cfg.run.seed) = (p.flags.data.clone(), p.out.clone(), fit.seed);
    let state = crate::checkpoint::TrainState { step, epoch, seed: fit.seed };
    crate::checkpoint::save(&p.out, &cfg, model, optim, &state)
}

/// What `simclr distill` reads besides the data: the teacher, the loss, the labelled images and the
/// student network.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DistillArgs {
    /// The teacher: a network with a classifier (the --out of `simclr finetune`, or its checkpoint
    /// folder).
    #[cfg_attr(feature = "cli", arg(long))]
    pub teacher: PathBuf,
    /// τ of the teacher's and the student's softmax (the official notebook's 1; the loss is
    /// scaled by τ², as there).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1.0))]
    pub temperature: f32,
    /// Weight w of the labelled images' cross-entropy beside the teacher's (v2 eq. 3 with
    /// α = 1 − w); 0: the teacher alone. Needs --subset.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0))]
    pub label_weight: f32,
    /// The labelled images for --label-weight: the subset file `simclr finetune` wrote.
    #[cfg_attr(feature = "cli", arg(long))]
    pub subset: Option<PathBuf>,
    /// Student encoder depth (default: the teacher's; self-distillation).
    #[cfg_attr(feature = "cli", arg(long, value_enum, help_heading = "Student"))]
    pub arch: Option<crate::resnet::Arch>,
    /// Student width multiplier (default: the teacher's; e.g. half of it for big-to-small).
    #[cfg_attr(feature = "cli", arg(long, help_heading = "Student"))]
    pub width: Option<f32>,
    /// Student selective kernels (default: the teacher's).
    #[cfg_attr(feature = "cli", arg(long, help_heading = "Student"))]
    pub sk_ratio: Option<f32>,
    /// Student squeeze-excitation (default: the teacher's).
    #[cfg_attr(feature = "cli", arg(long, help_heading = "Student"))]
    pub se_ratio: Option<f32>,
    /// Continue the distillation in --out from its latest checkpoint (written each epoch), with
    /// the same teacher and settings.
    #[cfg_attr(feature = "cli", arg(long))]
    pub resume: bool,
}

/// `distill`'s extras.
#[derive(Debug, Serialize)]
pub struct DistillExtra {
    /// The teacher's test top-1 on the same rows (fraction).
    pub teacher_top1: f64,
    /// Share of test images on which student and teacher pick the same class.
    pub teacher_agreement: f64,
    /// The student (a) against its teacher (b), image by image on the test split.
    pub vs_teacher: paired::Paired,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// Images distilled on (every image pretraining sees).
    pub images: usize,
    /// Of them, images that brought their label (--subset with --label-weight).
    pub labelled_images: usize,
    /// The learning rate after scaling by the batch size.
    pub peak_lr: f64,
    /// The student's checkpoint.
    pub checkpoint: PathBuf,
    /// Where the time went.
    pub timing: crate::distill::Timing,
}

/// `simclr distill`: a student trained on the teacher's class probabilities on every training
/// image, checkpointed each epoch in `OUT/checkpoints`, scored on the test split beside its teacher.
pub fn distill(args: &DistillArgs, data: &DataArgs, run: &RunArgs, optim: &ClassifierOptimArgs, device: &Device) -> Result<Report<ClassMetrics<DistillExtra>>> {
    let start = Instant::now();
    let eval_args = EvalArgs { checkpoint: Some(args.teacher.clone()), random_init: false, data: data.clone(), model: ModelArgs::default(), run: run.clone() };
    let mut p = prepare(&eval_args, None, "runs/distill", device)?;
    let _lock = if args.resume { crate::checkpoint::lock_run(&p.out)? } else { claim_run_folder(&p.out, "distill")? };
    let cfg = crate::distill::Distill { temperature: args.temperature, label_weight: args.label_weight, fit: optim.fit(p.flags.run.seed) };
    cfg.validate()?;
    let classes = crate::distill::teacher_classes(&p.loaded.model).with_context(|| format!("--teacher {}", args.teacher.display()))?;
    // Every image pretraining saw (STL-10: its unlabelled images, then the labelled ones).
    let images = data::first(data::open(&p.flags.source(), Split::Pretrain)?, p.flags.data.limit);
    let labelled = match (&args.subset, args.label_weight > 0.0) {
        (Some(file), true) => in_pretraining_split(&finetune::read_subset(file, p.train.len())?, p.train.as_ref(), images.as_ref())?,
        (None, false) => Vec::new(),
        (Some(file), false) => bail!("--subset {}: read only with --label-weight above 0; add --label-weight (e.g. 0.5) or leave --subset out", file.display()),
        (None, true) => bail!("--label-weight {}: needs the labelled images; add --subset with the subset file `simclr finetune` wrote", args.label_weight),
    };
    let mut student_cfg = p.loaded.config.clone();
    let m = &mut student_cfg.model;
    m.arch = args.arch.unwrap_or(m.arch);
    m.width = args.width.unwrap_or(m.width);
    m.sk_ratio = args.sk_ratio.unwrap_or(m.sk_ratio);
    m.se_ratio = args.se_ratio.unwrap_or(m.se_ratio);
    m.head_keep = Some(0);
    (student_cfg.monitor.online_probe, student_cfg.monitor.num_classes, student_cfg.monitor.probe_layer) = (true, classes, 0);
    (student_cfg.data, student_cfg.run.out, student_cfg.run.seed) = (p.flags.data.clone(), p.out.clone(), cfg.fit.seed);
    student_cfg.validate().context("the student network")?;
    // The report's network is the student; its `checkpoint` the teacher it was taught by.
    p.loaded.config = student_cfg.clone();
    let settings = serde_json::json!({ "teacher": p.loaded.checkpoint_sha256, "student": student_cfg.model, "distill": cfg, "data": p.flags.data, "labelled": labelled });
    let from = distillation_start(&p, &student_cfg, &settings, &cfg, classes, args.resume, device)?;
    let bad = p.flags.bad_images();
    let mut checkpoint = PathBuf::new();
    let mut save = |end: finetune::EpochEnd<'_>| -> Result<()> {
        checkpoint = save_classifier(&p, student_cfg.clone(), &end.clf.clone().into_model(), end.optim, &cfg.fit, (end.steps, end.epoch), classes)?;
        Ok(())
    };
    let done = crate::distill::distill(&p.loaded.model, from, p.loaded.image_size, images.clone(), &labelled, p.test.as_ref(), &cfg, &bad, &mut save, device)?;
    let hits = |scores: &[f32]| paired::hits(&paired::predictions(scores, classes), &done.test_labels);
    let extra = DistillExtra {
        vs_teacher: paired::mcnemar(&hits(&done.test_scores), &hits(&done.teacher_scores))?,
        teacher_top1: eval::topk_accuracy(&done.teacher_scores, classes, &done.test_labels, 1)?,
        teacher_agreement: paired::agreement(&done.test_scores, &done.teacher_scores, classes),
        final_loss: done.final_loss,
        images: images.len(),
        labelled_images: labelled.len(),
        peak_lr: done.peak_lr,
        checkpoint,
        timing: done.timing,
    };
    let m = classification(&p, &done.test_scores, &done.test_labels, None, Layer::Head(0), extra)?;
    report(&p, "distill", serde_json::to_value(&cfg)?, m, start)
}

/// The file of a distillation's `OUT` with what a `--resume` must repeat: the teacher, the
/// student, the settings and the data.
const DISTILL_SETTINGS: &str = "distill.json";

/// Where the distillation into `p.out` starts: with `resume`, from its latest intact checkpoint
/// (the student, the optimiser's state and the step), once its settings are the ones it was
/// started with (`settings`); otherwise, or with nothing to resume, a new student of
/// `student_cfg`, its settings written for a later `--resume`.
fn distillation_start(p: &Prepared, student_cfg: &Config, settings: &serde_json::Value, cfg: &crate::distill::Distill, classes: usize, resume: bool, device: &Device) -> Result<finetune::Start> {
    let compute = p.flags.run.compute(device)?;
    let file = p.out.join(DISTILL_SETTINGS);
    if let Some(latest) = resume.then(|| crate::checkpoint::latest_intact(&p.out)).transpose()?.flatten() {
        let saved: serde_json::Value = crate::files::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .with_context(|| format!("--resume: {} holds no distillation to continue (no readable {DISTILL_SETTINGS}); start one into a fresh --out", p.out.display()))?;
        if &saved != settings {
            bail!("--resume: the distillation in {} was started with other settings ({}: {saved}); resume it with the same teacher, student, data and flags", p.out.display(), file.display());
        }
        let model = crate::checkpoint::load_model(student_cfg.model(p.loaded.image_size).init(device), &latest.dir.join("model.safetensors"))?.with_compute(compute);
        let clf = finetune::Classifier::from_model(model)?;
        let optim = crate::optim::Optimizer::load(cfg.fit.rule(), &latest.dir.join("optimizer.safetensors"), &clf, &device.clone().autodiff())?;
        let step = crate::checkpoint::read_state(&latest.dir)?.step;
        tracing::info!("resuming the distillation from {} at step {step}", latest.dir.display());
        return Ok(finetune::Start { clf, optim, step });
    }
    std::fs::write(&file, serde_json::to_string_pretty(settings)?).with_context(|| format!("cannot write {}", file.display()))?;
    let network = eval::random_init_baseline(student_cfg, p.loaded.image_size).init_seeded(cfg.fit.seed, device).with_compute(compute);
    Ok(finetune::Start::fresh(crate::distill::new_student(network, classes, cfg.fit.seed, device)?, &cfg.fit))
}

/// The training-split images `subset` as indices of `images`, the pretraining split, which ends
/// with the training split (the same images for every dataset but STL-10, whose unlabelled images
/// come first); checked image by image on the labels.
fn in_pretraining_split(subset: &[usize], train: &dyn Dataset, images: &dyn Dataset) -> Result<Vec<usize>> {
    let offset = images.len().checked_sub(train.len()).filter(|&o| subset.iter().all(|&i| images.label(o + i) == train.label(i)));
    let Some(offset) = offset else {
        bail!("--subset: its training images are not the last {} of the {} images distilled on (use the dataset and --limit the subset was drawn with)", train.len(), images.len());
    };
    Ok(subset.iter().map(|&i| offset + i).collect())
}

/// Which split `simclr embed` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SplitArg {
    /// Training images.
    Train,
    /// Test images.
    Test,
}

/// `simclr embed`.
pub fn embed(args: &EvalArgs, features: &FeatureArgs, split: SplitArg, map: Option<&Path>, device: &Device) -> Result<Report<EmbedMetrics>> {
    let start = Instant::now();
    let p = prepare(args, Some(features), "runs/embed", device)?;
    // Extracted afresh (not from the feature cache), for the image index of each row.
    let ds = if split == SplitArg::Train { &p.train } else { &p.test };
    let (f, index) = eval::extract_indexed(&p.loaded.model, p.layer_index, ds.as_ref(), p.loaded.image_size, 256, &p.flags.bad_images(), device)?;
    crate::eval::embed::write(&f, &p.out)?;
    crate::eval::embed::write_index(&index, &p.out)?;
    if let Some(png) = map {
        let names = p.flags.data.dataset.class_names().unwrap_or_else(|| (0..ds.num_classes()).map(|c| ds.class_name(c).unwrap_or_else(|| format!("class {c}"))).collect());
        let title = format!("{} ({split:?} split, {} images, layer {})", p.loaded.checkpoint.as_ref().map_or("random init".into(), |c| c.display().to_string()), f.n, features.layer);
        crate::eval::map::draw(&crate::eval::map::pca2(&f)?, &f, &names, &title, png)?;
    }
    let metrics = EmbedMetrics { images: f.n, dim: f.dim, layer: features.layer.to_string(), labelled: f.is_labelled(), image_size: p.loaded.image_size };
    // The split and data settings let `simclr search` find the images of the rows again.
    report(&p, "embed", serde_json::json!({ "split": split, "data": p.flags.data }), metrics, start)
}
