//! `simclr ablate`: the paper's findings reproduced as grids of cells, each a pretraining run and
//! its linear evaluation (or a supervised baseline), run through the library in one process.
//!
//! The [`studies`]: `augment` (§3, Fig. 5 and Table 1), `head` (§4.2, Fig. 8), `temperature`
//! (§5.1, Table 5) and `scale` (§5.2, Fig. 9 and Fig. 7), each at a `small` preset (minutes on a
//! CPU) or the paper's `full` settings. Every cell lives in `OUT/cells/ID/` (its pretraining run,
//! checkpoints included, and `result.json`): a study run again skips the finished cells and resumes
//! a killed cell from its last checkpoint. After each cell `OUT/results.json`, `OUT/report.md` and
//! the study's PNG figures are written anew ([`report`]).

pub mod report;
pub mod studies;
mod study;

use crate::config::{Config, DataArgs};
use crate::device::{MemoryFormat, Precision};
use crate::data::{self, Dataset, Split};
use crate::eval::{self, finetune, Layer};
use crate::pretrain::{self, Diverged};
use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which of the paper's findings a study reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Study {
    /// §3: single transformations and ordered pairs on one branch (Fig. 5), colour strength (Table 1).
    Augment,
    /// §4.2: no / linear / nonlinear projection head, evaluated on h and z, across output sizes (Fig. 8).
    Head,
    /// §5.1: the NT-Xent temperature with and without ℓ2 normalisation (Table 5).
    Temperature,
    /// §5.2: batch size × epochs (Fig. 9), width and depth against a supervised baseline (Fig. 7).
    Scale,
}

impl Study {
    /// The name used on the command line and in folder names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Augment => "augment",
            Self::Head => "head",
            Self::Temperature => "temperature",
            Self::Scale => "scale",
        }
    }
}

/// How much compute a study's cells get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Narrow ResNet-18 (width 0.125) on 24 px views of at most 8,000 training images, a few
    /// epochs a cell: each study within an hour on a 2-core CPU with the libtorch build.
    Small,
    /// The paper's settings (ResNet-50, 224 px, batch 4096, 100 epochs; §2.3 and App. B.9).
    Full,
}

/// `simclr ablate`'s flags.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct AblateArgs {
    /// The study: augment (Fig. 5, Table 1), head (Fig. 8), temperature (Table 5), scale (Fig. 7, 9).
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub study: Study,
    /// Compute per cell: small (minutes on a CPU; see the report) or full (the paper's settings).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "small"))]
    pub preset: Preset,
    /// Output folder: report.md, results.json, the figures, and cells/ID/ for each cell [default:
    /// runs/ablate-STUDY].
    #[cfg_attr(feature = "cli", arg(long))]
    pub out: Option<PathBuf>,
    /// Seed of every cell (weights, data order, views, evaluation).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub seed: u64,
    /// Run only these cells (comma-separated ids; --list shows them).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub only: Vec<String>,
    /// Train each cell for this many steps instead of the preset's epochs (a smoke test).
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_steps: Option<usize>,
    /// List the cells, their settings and the study's budget, and exit without training.
    #[cfg_attr(feature = "cli", arg(long))]
    pub list: bool,
    /// The data every cell trains and is evaluated on (the preset limits the training images
    /// unless --limit is given).
    #[cfg_attr(feature = "cli", command(flatten, next_help_heading = "Data"))]
    pub data: DataArgs,
}

/// What a cell trains.
#[derive(Clone, Debug, PartialEq)]
pub enum CellKind {
    /// SimCLR pretraining, then linear evaluation of each of these layers.
    Contrastive(Vec<Layer>),
    /// The supervised baseline: the same network from random init, trained with labels on every
    /// training image (`simclr finetune --random-init --label-fraction 1`) for the same epochs.
    Supervised,
    /// No training: linear evaluation of h of the network with torchvision's random
    /// initialisation (`simclr linear-eval --random-init`), what pretraining has to beat.
    RandomInit,
}

/// One cell of a study: a place in one of its tables, and the run that fills it.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Unique name, also its folder under `OUT/cells/`.
    pub id: String,
    /// The table or figure it belongs to.
    pub table: &'static str,
    /// Its row in that table.
    pub row: String,
    /// Its column in that table.
    pub column: String,
    /// What it trains.
    pub kind: CellKind,
    /// Every setting of the run (`run.out` is set by the runner).
    pub config: Config,
    /// The paper's number for this cell (ImageNet top-1 %), where it has one.
    pub paper: Option<f64>,
}

/// What a finished cell measured (`OUT/cells/ID/result.json`, and a row of `OUT/results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellResult {
    /// The cell's id.
    pub id: String,
    /// Its table.
    pub table: String,
    /// Its row.
    pub row: String,
    /// Its column.
    pub column: String,
    /// Test top-1 accuracy (%) of each evaluated layer (`h`, `z`, `head:K`), or of the supervised
    /// network (`supervised`). Empty when the run diverged.
    pub top1: BTreeMap<String, f64>,
    /// Mean contrastive accuracy (official `contrast_acc`) over the last epoch.
    pub contrast_acc: Option<f64>,
    /// Mean contrastive entropy over the last epoch.
    pub contrast_entropy: Option<f64>,
    /// Mean NT-Xent loss over the last epoch.
    pub loss: Option<f64>,
    /// Why the run stopped, when its loss stopped being finite.
    pub diverged: Option<String>,
    /// Training steps.
    pub steps: usize,
    /// Seconds of the whole cell in the invocation that finished it.
    pub seconds: f64,
    /// The paper's number, where it has one.
    pub paper: Option<f64>,
    /// Trainable parameters of the cell's encoder (the size study's x axis); 0 in results written
    /// before it was recorded, counted again when such a result is read.
    #[serde(default)]
    pub encoder_params: usize,
    /// The cell's settings (a rerun with other settings in the same folder is refused).
    pub config: Config,
}

impl CellResult {
    /// The first evaluated layer's top-1 (h for the contrastive cells), if any.
    pub fn main_top1(&self) -> Option<f64> {
        ["h", "supervised"].iter().find_map(|k| self.top1.get(*k)).or_else(|| self.top1.values().next()).copied()
    }
}

/// The data every cell of a study is evaluated on.
struct EvalData {
    train: Arc<dyn Dataset>,
    test: Arc<dyn Dataset>,
}

/// What `simclr ablate` did.
#[derive(Clone, Debug)]
pub enum Ablated {
    /// `--list`: the cells, their settings and the budget, as a text (report.md's budget section).
    Listed(String),
    /// The cells were run (or found finished).
    Ran {
        /// The study.
        study: Study,
        /// Cells trained by this invocation.
        ran: usize,
        /// Cells found finished before.
        kept: usize,
        /// Seconds this invocation took.
        seconds: f64,
        /// `OUT/report.md`.
        report: PathBuf,
    },
}

/// Runs the study `args` asks for (or, with `--list`, describes it), every cell's network computing
/// at `precision` in `memory_format`.
pub fn run(args: &AblateArgs, precision: Precision, memory_format: MemoryFormat, device: &Device, progress: bool) -> Result<Ablated> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/ablate-{}", args.study.name())));
    let mut base = studies::base(args.preset, &args.data, &out, args.seed);
    (base.run.precision, base.run.memory_format) = (precision, memory_format);
    base.run.compute(device)?;
    let cells = select(studies::cells(args.study, args.preset, &base), &args.only, args.max_steps)?;
    if args.list {
        return Ok(Ablated::Listed(report::listing(args.study, args.preset, &cells, &base)));
    }
    std::fs::create_dir_all(&out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", out.display()))?;
    let data = EvalData {
        train: data::first(data::open(&base.source(), Split::Train)?, base.data.limit),
        test: data::open(&base.source(), Split::Test)?,
    };
    if data.train.num_classes() == 0 {
        bail!("simclr ablate evaluates with labels, and --dataset {} has none; use a labelled dataset", base.data.dataset.name());
    }
    let start = Instant::now();
    let (mut results, mut kept) = (Vec::with_capacity(cells.len()), 0);
    for (i, cell) in cells.iter().enumerate() {
        let (result, earlier) = run_cell(cell, &out.join("cells").join(&cell.id), &data, device, progress)?;
        let when = if earlier { "finished before".to_string() } else { format!("{:.0} s", result.seconds) };
        tracing::info!("[{}/{}] {}: {} ({when})", i + 1, cells.len(), cell.id, summary(&result));
        kept += earlier as usize;
        results.push(result);
        report::write(&out, args.study, args.preset, &cells, &results, &base, data.test.len())?;
    }
    Ok(Ablated::Ran { study: args.study, ran: results.len() - kept, kept, seconds: start.elapsed().as_secs_f64(), report: out.join("report.md") })
}

/// The cells `only` names (all when empty), each trained `max_steps` steps when given.
fn select(cells: Vec<Cell>, only: &[String], max_steps: Option<usize>) -> Result<Vec<Cell>> {
    if let Some(unknown) = only.iter().find(|id| !cells.iter().any(|c| &c.id == *id)) {
        bail!("--only {unknown}: no such cell; the study's cells are {}", cells.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(cells
        .into_iter()
        .filter(|c| only.is_empty() || only.contains(&c.id))
        .map(|mut c| {
            if let Some(steps) = max_steps {
                c.config.optim.max_steps = steps;
            }
            c
        })
        .collect())
}

fn summary(r: &CellResult) -> String {
    match &r.diverged {
        Some(why) => format!("diverged: {why}"),
        None => r.top1.iter().map(|(layer, v)| format!("{layer} {v:.2}%")).collect::<Vec<_>>().join(", "),
    }
}

/// Trainable parameters of the encoder of `cfg` (counted on a network initialised on the CPU).
fn encoder_params(cfg: &Config) -> usize {
    crate::num_trainable_params(&cfg.model(cfg.model.image_size).encoder.init(&crate::default_device()))
}

/// Runs one cell in `dir`, or reads its result when an earlier invocation finished it (then
/// `true`).
fn run_cell(cell: &Cell, dir: &Path, data: &EvalData, device: &Device, progress: bool) -> Result<(CellResult, bool)> {
    let mut cfg = cell.config.clone();
    cfg.run.out = dir.to_path_buf();
    let file = dir.join("result.json");
    if let Ok(text) = crate::files::read_to_string(&file) {
        let mut done: CellResult = serde_json::from_str(&text).with_context(|| format!("{}: not a cell result; delete it to run the cell again", file.display()))?;
        if !same_settings(&done.config, &cfg) {
            bail!("{}: this cell was run with other settings (another --preset, --seed or data?); use another --out, or delete the folder to run it again", dir.display());
        }
        if done.encoder_params == 0 {
            done.encoder_params = encoder_params(&cfg);
        }
        return Ok((done, true));
    }
    let start = Instant::now();
    let mut result = CellResult {
        id: cell.id.clone(),
        table: cell.table.to_string(),
        row: cell.row.clone(),
        column: cell.column.clone(),
        top1: BTreeMap::new(),
        contrast_acc: None,
        contrast_entropy: None,
        loss: None,
        diverged: None,
        steps: 0,
        seconds: 0.0,
        paper: cell.paper,
        encoder_params: encoder_params(&cfg),
        config: cfg.clone(),
    };
    match &cell.kind {
        CellKind::Contrastive(layers) => contrastive(&cfg, layers, data, device, progress, &mut result)?,
        CellKind::Supervised => supervised(&cfg, data, device, &mut result)?,
        CellKind::RandomInit => {
            let model = eval::random_init_baseline(&cfg, cfg.model.image_size).init_seeded(cfg.run.seed, device).with_compute(cfg.run.compute(device)?);
            result.top1 = linear_top1(&model, &[Layer::H], &cfg, data, device)?;
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let tmp = dir.join(".result.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&result)?).and_then(|_| std::fs::rename(&tmp, &file)).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok((result, false))
}

/// Whether two cell configs train the same network: equal but for where the run and the image
/// cache are kept (so a study folder can be moved and still resumed).
fn same_settings(a: &Config, b: &Config) -> bool {
    let located = |c: &Config| {
        let mut c = c.clone();
        (c.run.out, c.data.cache_dir) = (PathBuf::new(), None);
        c
    };
    located(a) == located(b)
}

/// Pretrains (resuming from the cell's last checkpoint, if any), then evaluates each layer with
/// the linear protocol (L-BFGS, L2 chosen on held-out training images). A run whose loss stops
/// being finite is recorded as diverged.
fn contrastive(cfg: &Config, layers: &[Layer], data: &EvalData, device: &Device, progress: bool, result: &mut CellResult) -> Result<()> {
    let done = match pretrain::pretrain(cfg, true, device, progress) {
        Ok(done) => done,
        Err(e) => match e.downcast_ref::<Diverged>() {
            Some(d) => {
                (result.diverged, result.steps) = (Some(d.to_string()), d.step);
                return Ok(());
            }
            None => return Err(e),
        },
    };
    if done.interrupted {
        bail!("interrupted: the cell's checkpoint is in {}; run the same command again to resume", cfg.run.out.display());
    }
    let last = last_epoch(&cfg.run.out)?;
    result.steps = last.steps;
    (result.loss, result.contrast_acc, result.contrast_entropy) = (Some(last.loss), Some(last.contrast_acc), Some(last.contrast_entropy));
    let model = done.eval_model();
    result.top1 = linear_top1(&model, layers, cfg, data, device)?;
    Ok(())
}

/// Test top-1 (%) of the linear protocol on each of `layers` of `model` (`simclr linear-eval`'s
/// default: L-BFGS, L2 chosen on held-out training images), the features of every layer extracted
/// in one pass over each split.
fn linear_top1(model: &crate::model::SimClr, layers: &[Layer], cfg: &Config, data: &EvalData, device: &Device) -> Result<BTreeMap<String, f64>> {
    let (bad, classes) = (cfg.bad_images(), data.train.num_classes());
    let indices = layers.iter().map(|layer| layer.index(model.head.len())).collect::<Result<Vec<_>>>()?;
    let extract = |ds: &dyn crate::data::Dataset| eval::extract_layers(model, &indices, ds, cfg.model.image_size, 256, &bad, device);
    let ((train, _), (test, _)) = (extract(data.train.as_ref())?, extract(data.test.as_ref())?);
    let mut top1 = BTreeMap::new();
    for ((layer, train), test) in layers.iter().zip(&train).zip(&test) {
        let probe = eval::linear::probe(train, test, classes, eval::linear::Fit::Lbfgs, cfg.run.seed, device)?;
        top1.insert(layer.to_string(), 100.0 * probe.test_top1);
    }
    Ok(top1)
}

/// The supervised baseline: the cell's network with torchvision's initialisation, trained with
/// labels on every training image for the cell's epochs (crop + flip; `simclr finetune`'s
/// protocol), its test top-1.
fn supervised(cfg: &Config, data: &EvalData, device: &Device, result: &mut CellResult) -> Result<()> {
    let size = cfg.model.image_size;
    let model = eval::random_init_baseline(cfg, size).init_seeded(cfg.run.seed, device).with_compute(cfg.run.compute(device)?);
    let every: Vec<usize> = (0..data.train.len()).collect();
    let steps_per_epoch = every.len() / cfg.optim.batch_size;
    let epochs = if cfg.optim.max_steps > 0 { cfg.optim.max_steps.div_ceil(steps_per_epoch) } else { cfg.optim.epochs };
    let fit = finetune::Fit {
        epochs,
        batch: cfg.optim.batch_size,
        lr: studies::SUPERVISED_LR,
        lr_scaling: crate::schedule::LrScaling::Linear,
        optimizer: crate::optim::OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: studies::SUPERVISED_WEIGHT_DECAY,
        crop_min_area: crate::augment::PAPER_MIN_CROP_AREA,
        seed: cfg.run.seed,
    };
    let settings = finetune::Finetune { from_head_layer: 0, fit };
    let done = finetune::finetune(model, size, data.train.clone(), &every, data.test.as_ref(), &settings, &cfg.bad_images(), device)?;
    let classes = data.train.num_classes();
    result.top1.insert("supervised".into(), 100.0 * eval::topk_accuracy(&done.test_scores, classes, &done.test_labels, 1)?);
    (result.steps, result.loss) = (epochs * steps_per_epoch, Some(done.final_loss));
    Ok(())
}

/// Means over the last epoch of a run's `metrics.jsonl` (steps run in earlier invocations
/// included), and the number of steps.
struct LastEpoch {
    steps: usize,
    loss: f64,
    contrast_acc: f64,
    contrast_entropy: f64,
}

fn last_epoch(run: &Path) -> Result<LastEpoch> {
    let file = run.join("metrics.jsonl");
    let text = crate::files::read_to_string(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).filter(|r: &serde_json::Value| r["loss"].is_number()).collect();
    let last = rows.iter().filter_map(|r| r["epoch"].as_u64()).max().with_context(|| format!("{}: no training step recorded", file.display()))?;
    let epoch: Vec<&serde_json::Value> = rows.iter().filter(|r| r["epoch"].as_u64() == Some(last)).collect();
    let mean = |key: &str| epoch.iter().filter_map(|r| r[key].as_f64()).sum::<f64>() / epoch.len() as f64;
    let steps = rows.iter().filter_map(|r| r["step"].as_u64()).max().unwrap_or(0) as usize;
    Ok(LastEpoch { steps, loss: mean("loss"), contrast_acc: mean("contrast_acc"), contrast_entropy: mean("contrast_entropy") })
}
