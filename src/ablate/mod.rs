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
    /// The key contrasts of each finding at a budget where the full pipeline's contrastive task
    /// is learnt (see [`studies::base`]), every cell at 3 seeds: hours on a CPU, resumable per
    /// cell and seed.
    Medium,
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
    /// Seed of every cell (weights, data order, views, evaluation); with --seeds N, the first of N.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub seed: u64,
    /// Runs each cell at N seeds (--seed, --seed + 1, …): tables show mean ± SD, verdicts test
    /// over seeds and test images [default: 3 for the medium preset, 1 otherwise]. With
    /// --test-fraction F, seed S holds out fold S mod ⌈1/F⌉ (k-fold: ⌈1/F⌉ seeds test every image).
    #[cfg_attr(feature = "cli", arg(long))]
    pub seeds: Option<u64>,
    /// Other study folders (comma-separated) whose finished runs fill this study's cells where the
    /// training, settings and seed are identical (read from their results.json; the medium
    /// preset's studies share their base cell this way).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub reuse: Vec<PathBuf>,
    /// Train only these cells (comma-separated ids; --list shows them); the report still covers
    /// every finished cell of the study.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub only: Vec<String>,
    /// Train each cell for this many steps instead of the preset's epochs (a smoke test).
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_steps: Option<usize>,
    /// List the cells, their settings and the study's budget, and exit without training.
    #[cfg_attr(feature = "cli", arg(long))]
    pub list: bool,
    /// Draw the study's figures again from OUT/results.json and exit: trains nothing, checks no
    /// settings, leaves report.md and results.json as they are (results of an older simclr, whose
    /// settings today's cells no longer match, get today's figures). Reads the test split of the
    /// data flags for its size (the error bars of one-run points).
    #[cfg_attr(feature = "cli", arg(long, conflicts_with_all = ["list", "only", "reuse"]))]
    pub redraw: bool,
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
    /// The supervised baseline: the same network, initialised as the SimCLR encoder, trained with
    /// labels on every training image (`simclr finetune`'s protocol) for the same epochs,
    /// its views cropped, flipped and colour-distorted at the cell's `augment.color_strength`
    /// (0: crop and flip only, as `finetune`).
    Supervised,
    /// No training: linear evaluation of h of the network with torchvision's random
    /// initialisation (`simclr linear-eval --random-init`), what pretraining has to beat.
    RandomInit,
}

impl CellKind {
    /// What the cell's run trains.
    pub fn trains(&self) -> Trains {
        match self {
            Self::Contrastive(_) => Trains::Simclr,
            Self::Supervised => Trains::Supervised,
            Self::RandomInit => Trains::Nothing,
        }
    }

    /// The names of the scores it records (keys of [`CellResult::top1`]).
    fn scores(&self) -> Vec<String> {
        match self {
            Self::Contrastive(layers) => layers.iter().map(Layer::to_string).collect(),
            Self::Supervised => vec!["supervised".into()],
            Self::RandomInit => vec!["h".into()],
        }
    }
}

/// What a cell's run trained, recorded with its result so that a finished run is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trains {
    /// SimCLR pretraining, then linear evaluation.
    Simclr,
    /// Supervised training from random init.
    Supervised,
    /// Nothing: linear evaluation of the untrained network.
    Nothing,
}

/// Which test images a classifier got right, in the test split's order (for paired tests). In
/// JSON: the count, a colon, then 4 images a hexadecimal digit, the first in the high bit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hits(pub Vec<bool>);

impl Serialize for Hits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let digits: String = self.0.chunks(4).map(|c| char::from_digit(c.iter().enumerate().map(|(i, &b)| (b as u32) << (3 - i)).sum(), 16).expect("a nibble")).collect();
        s.serialize_str(&format!("{}:{digits}", self.0.len()))
    }
}

impl<'de> Deserialize<'de> for Hits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("per-image hits: expected COUNT:HEX, got {:?}", text.chars().take(40).collect::<String>()));
        let (n, digits) = text.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().map_err(|_| bad())?;
        if digits.len() != n.div_ceil(4) {
            return Err(bad());
        }
        let nibbles = digits.chars().map(|c| c.to_digit(16)).collect::<Option<Vec<u32>>>().ok_or_else(bad)?;
        Ok(Hits((0..n).map(|i| nibbles[i / 4] >> (3 - i % 4) & 1 == 1).collect()))
    }
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

impl Cell {
    /// The cell's run at `seed`. On a drawn test split (`--test-fraction F`) it holds out fold
    /// `seed mod ⌈1/F⌉`, so that ⌈1/F⌉ consecutive seeds test every image once (k-fold), and a
    /// contrast pairs the cells of one seed on that fold's images.
    pub fn at_seed(&self, seed: u64) -> Cell {
        let mut cell = self.clone();
        cell.config.run.seed = seed;
        let data = &mut cell.config.data;
        if data.test_fraction > 0.0 {
            data.test_fold = (seed % crate::data::HoldOut::folds(data.test_fraction) as u64) as usize;
        }
        cell
    }
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
    /// The cell's settings, its seed included (a rerun with other settings in the same folder is
    /// refused).
    pub config: Config,
    /// What the run trained; absent in results written before it was recorded, which are then
    /// never taken for a finished cell.
    #[serde(default)]
    pub trains: Option<Trains>,
    /// Which test images each score of `top1` got right (empty in results written before they
    /// were recorded).
    #[serde(default)]
    pub hits: BTreeMap<String, Hits>,
    /// The commit of the working tree `ablate` was started in (`git describe --always --dirty`),
    /// when it was one.
    #[serde(default)]
    pub commit: Option<String>,
    /// The backend that trained it.
    #[serde(default)]
    pub backend: Option<String>,
    /// In a report's tables: the standard deviation of each `top1` over the seeds averaged into
    /// this row (empty: one run, as stored).
    #[serde(skip)]
    pub top1_sd: BTreeMap<String, f64>,
    /// In a report: why the cell is not evidence although it has a score (its supervised training
    /// did not beat a linear classifier on its untrained encoder: `report::check_training`).
    #[serde(skip)]
    pub failed: Option<String>,
}

impl CellResult {
    /// The first evaluated layer's top-1 (h for the contrastive cells), if any.
    pub fn main_top1(&self) -> Option<f64> {
        self.top1.get(self.main_score()?).copied()
    }

    /// The name of the first evaluated layer's score (h for the contrastive cells), if any.
    pub fn main_score(&self) -> Option<&str> {
        ["h", "supervised"].into_iter().find(|k| self.top1.contains_key(*k)).or_else(|| self.top1.keys().next().map(String::as_str))
    }
}

/// The data a study's runs are evaluated on: the labelled training images and the test split.
struct EvalData {
    train: Arc<dyn Dataset>,
    test: Arc<dyn Dataset>,
}

impl EvalData {
    /// The evaluation data of `base`'s dataset with test fold `fold` held out (the training
    /// images limited as pretraining's).
    fn open(base: &Config, fold: usize) -> Result<Self> {
        let mut at = base.clone();
        at.data.test_fold = fold;
        let data = Self { train: data::first(data::open(&at.source(), Split::Train)?, at.data.limit), test: data::open(&at.source(), Split::Test)? };
        if data.train.num_classes() == 0 {
            bail!("simclr ablate evaluates with labels, and --dataset {} has none; use a labelled dataset", base.data.dataset.name());
        }
        Ok(data)
    }
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
        /// Runs (a cell at a seed) trained by this invocation.
        ran: usize,
        /// Runs found finished before (in the folder or through `--reuse`).
        kept: usize,
        /// Seconds this invocation took.
        seconds: f64,
        /// `OUT/report.md`.
        report: PathBuf,
    },
    /// `--redraw`: the figures drawn again.
    Redrawn {
        /// The study.
        study: Study,
        /// The figures' paths.
        figures: Vec<PathBuf>,
    },
}

/// Runs the study `args` asks for (or, with `--list`, describes it), every cell's network computing
/// at `precision` in `memory_format`.
pub fn run(args: &AblateArgs, precision: Precision, memory_format: MemoryFormat, device: &Device, progress: bool) -> Result<Ablated> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/ablate-{}", args.study.name())));
    let mut base = studies::base(args.preset, &args.data, &out, args.seed);
    (base.run.precision, base.run.memory_format) = (precision, memory_format);
    base.run.compute(device)?;
    let cells = with_max_steps(studies::cells(args.study, args.preset, &base), args.max_steps);
    let chosen = select(&cells, &args.only)?;
    let seeds = seeds(args)?;
    let runs = plan(&chosen, &seeds);
    if args.list {
        return Ok(Ablated::Listed(report::listing(args.study, args.preset, &chosen, &runs, &base)));
    }
    if args.redraw {
        return redraw(args.study, &out, &base);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", out.display()))?;
    let mut finished = Finished::read(&out)?;
    finished.check(&cells, &out)?;
    for other in &args.reuse {
        let file = other.join("results.json");
        let text = crate::files::read_to_string(&file).with_context(|| format!("--reuse {}: no study results to reuse; give a folder `simclr ablate` wrote", other.display()))?;
        let runs: Vec<CellResult> = serde_json::from_str(&text).with_context(|| format!("--reuse {}: not a study's results", file.display()))?;
        finished.1.extend(runs);
    }
    // One test split per fold the runs hold out (one in all unless the data is a drawn split).
    let mut folds = BTreeMap::new();
    for run in &runs {
        let fold = run.cell.config.data.test_fold;
        if !folds.contains_key(&fold) {
            folds.insert(fold, EvalData::open(&base, fold)?);
        }
    }
    let test_images = folds.values().map(|d| d.test.len()).sum();
    let (start, commit) = (Instant::now(), commit());
    let (mut ran, mut kept) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        let seed = run.cell.config.run.seed;
        let name = format!("{} (seed {seed})", run.cell.id);
        if finished.find(&run.cell).is_some() {
            tracing::info!("[{}/{}] {name}: finished before", i + 1, runs.len());
            kept += 1;
            continue;
        }
        let data = &folds[&run.cell.config.data.test_fold];
        let result = run_cell(&run.cell, &out.join("cells").join(&run.cell.id).join(format!("seed-{seed}")), data, &commit, device, progress)?;
        tracing::info!("[{}/{}] {name}: {} ({:.0} s)", i + 1, runs.len(), summary(&result), result.seconds);
        finished.0.push(result);
        ran += 1;
        report::write(&out, args.study, args.preset, &cells, &finished.of(&cells), &base, test_images)?;
    }
    report::write(&out, args.study, args.preset, &cells, &finished.of(&cells), &base, test_images)?;
    Ok(Ablated::Ran { study: args.study, ran, kept, seconds: start.elapsed().as_secs_f64(), report: out.join("report.md") })
}

/// `--redraw`: the figures of the runs in `out`'s results.json, as they are (no settings checked).
fn redraw(study: Study, out: &Path, base: &Config) -> Result<Ablated> {
    if !out.join("results.json").is_file() {
        bail!("--redraw: {} holds no results.json; give the --out of a study `simclr ablate` ran", out.display());
    }
    let Finished(results, _) = Finished::read(out)?;
    let test_images = EvalData::open(base, base.data.test_fold)?.test.len();
    let figures = report::redraw(out, study, &results, test_images)?;
    Ok(Ablated::Redrawn { study, figures: figures.iter().map(|f| out.join(f)).collect() })
}

/// Most seeds a cell runs at (each is a whole training run).
const MAX_SEEDS: u64 = 100;

/// The seeds every chosen cell runs at: `--seeds` of them from `--seed`.
fn seeds(args: &AblateArgs) -> Result<Vec<u64>> {
    let n = args.seeds.unwrap_or(if args.preset == Preset::Medium { 3 } else { 1 });
    if !(1..=MAX_SEEDS).contains(&n) {
        bail!("--seeds {n}: give 1 to {MAX_SEEDS} runs a cell");
    }
    (0..n).map(|k| args.seed.checked_add(k).with_context(|| format!("--seed {} --seeds {n}: the seeds pass {}; use a smaller --seed", args.seed, u64::MAX))).collect()
}

/// Every cell trained `max_steps` steps when given.
fn with_max_steps(cells: Vec<Cell>, max_steps: Option<usize>) -> Vec<Cell> {
    cells
        .into_iter()
        .map(|mut c| {
            if let Some(steps) = max_steps {
                c.config.optim.max_steps = steps;
            }
            c
        })
        .collect()
}

/// The cells `only` names (all when empty).
fn select(cells: &[Cell], only: &[String]) -> Result<Vec<Cell>> {
    if let Some(unknown) = only.iter().find(|id| !cells.iter().any(|c| &c.id == *id)) {
        bail!("--only {unknown}: no such cell; the study's cells are {}", cells.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(cells.iter().filter(|c| only.is_empty() || only.contains(&c.id)).cloned().collect())
}

/// One training run: a cell at one seed, standing for every chosen cell with the same settings
/// (they are one run, evaluated on the union of their layers).
pub struct Run {
    /// The first such cell, its seed set and its layers the union.
    pub cell: Cell,
    /// The ids of the other cells it stands for.
    pub same_as: Vec<String>,
}

/// The runs `cells` need at each of `seeds`: cells of identical settings share one.
fn plan(cells: &[Cell], seeds: &[u64]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for &seed in seeds {
        for cell in cells {
            let cell = cell.at_seed(seed);
            match runs.iter_mut().find(|r| r.cell.kind.trains() == cell.kind.trains() && same_settings(&r.cell.config, &cell.config)) {
                Some(run) => {
                    if let (CellKind::Contrastive(have), CellKind::Contrastive(more)) = (&mut run.cell.kind, &cell.kind) {
                        let extra: Vec<Layer> = more.iter().filter(|l| !have.contains(l)).copied().collect();
                        have.extend(extra);
                    }
                    run.same_as.push(cell.id);
                }
                None => runs.push(Run { cell, same_as: Vec::new() }),
            }
        }
    }
    runs
}

/// The finished runs of a study folder: `OUT/results.json` (which survives as a committed file
/// when the run folders do not) and each run folder's `result.json`; then those of `--reuse`.
struct Finished(Vec<CellResult>, Vec<CellResult>);

impl Finished {
    fn read(out: &Path) -> Result<Finished> {
        let mut found: Vec<CellResult> = Vec::new();
        let file = out.join("results.json");
        if file.exists() {
            let text = crate::files::read_to_string(&file)?;
            found = serde_json::from_str(&text).with_context(|| format!("{}: not a study's results; move it away to start the study afresh", file.display()))?;
        }
        for cell in read_dir_or_empty(&out.join("cells"))? {
            for run in read_dir_or_empty(&cell)? {
                let file = run.join("result.json");
                if let Ok(text) = crate::files::read_to_string(&file) {
                    let done: CellResult = serde_json::from_str(&text).with_context(|| format!("{}: not a cell result; delete it to run the cell again", file.display()))?;
                    if !found.iter().any(|r| r.id == done.id && r.config.run.seed == done.config.run.seed) {
                        found.push(done);
                    }
                }
            }
        }
        Ok(Finished(found, Vec::new()))
    }

    /// Refuses results stored under a cell's id with other settings than the cell's (another
    /// preset, data or step count), which the report would otherwise mix in.
    fn check(&self, cells: &[Cell], out: &Path) -> Result<()> {
        for r in &self.0 {
            if let Some(cell) = cells.iter().find(|c| c.id == r.id) {
                if r.trains != Some(cell.kind.trains()) || !same_settings(&r.config, &cell.at_seed(r.config.run.seed).config) {
                    bail!(
                        "{}: cell {} (seed {}) was run with other settings (another --preset, --max-steps or data, or written by an older simclr); use another --out, or move that folder's results.json and cells/{} away to run it again",
                        out.display(),
                        r.id,
                        r.config.run.seed,
                        r.id
                    );
                }
            }
        }
        Ok(())
    }

    /// The finished run that fills `cell` at its seed: same training and settings, every score
    /// the cell needs; labelled as the cell.
    fn find(&self, cell: &Cell) -> Option<CellResult> {
        let needs = cell.kind.scores();
        let run = self.0.iter().chain(&self.1).find(|r| r.trains == Some(cell.kind.trains()) && same_settings(&r.config, &cell.config) && needs.iter().all(|k| r.top1.contains_key(k) || r.diverged.is_some()))?;
        let mut r = run.clone();
        (r.id, r.table, r.row, r.column, r.paper) = (cell.id.clone(), cell.table.to_string(), cell.row.clone(), cell.column.clone(), cell.paper);
        Some(r)
    }

    /// Every finished run of each of `cells`, at every seed found, in the cells' order.
    fn of(&self, cells: &[Cell]) -> Vec<CellResult> {
        let seeds = report::seeds(self.0.iter().chain(&self.1).map(|r| r.config.run.seed));
        cells
            .iter()
            .flat_map(|cell| {
                seeds.iter().filter_map(move |&seed| self.find(&cell.at_seed(seed)))
            })
            .collect()
    }
}

/// The entries of `dir`, none when it does not exist.
fn read_dir_or_empty(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot list", dir.display())),
    }
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

/// Runs one cell in `dir` (resuming its pretraining from the folder's last checkpoint) and writes
/// its result there, recording `commit` as the code that ran it.
fn run_cell(cell: &Cell, dir: &Path, data: &EvalData, commit: &Option<String>, device: &Device, progress: bool) -> Result<CellResult> {
    let mut cfg = cell.config.clone();
    cfg.run.out = dir.to_path_buf();
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
        trains: Some(cell.kind.trains()),
        hits: BTreeMap::new(),
        commit: commit.clone(),
        backend: Some(crate::device::backend_name(device).to_string()),
        top1_sd: BTreeMap::new(),
        failed: None,
    };
    match &cell.kind {
        CellKind::Contrastive(layers) => contrastive(&cfg, layers, data, device, progress, &mut result)?,
        CellKind::Supervised => supervised(&cfg, data, device, &mut result)?,
        CellKind::RandomInit => {
            let model = eval::random_init_baseline(&cfg, cfg.model.image_size).init_seeded(cfg.run.seed, device).with_compute(cfg.run.compute(device)?);
            linear_top1(&model, &[Layer::H], &cfg, data, device, &mut result)?;
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let (tmp, file) = (dir.join(".result.json.tmp"), dir.join("result.json"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&result)?).and_then(|_| std::fs::rename(&tmp, &file)).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok(result)
}

/// The commit of the current folder's git checkout when `ablate` starts, `-dirty` when it has
/// changes.
fn commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["describe", "--always", "--dirty", "--abbrev=10"]).stderr(std::process::Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
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
    linear_top1(&model, layers, cfg, data, device, result)
}

/// Records the test top-1 (%) and per-image hits of the linear protocol on each of `layers` of
/// `model` (`simclr linear-eval`'s default: L-BFGS, L2 chosen on held-out training images), the
/// features of every layer extracted in one pass over each split.
fn linear_top1(model: &crate::model::SimClr, layers: &[Layer], cfg: &Config, data: &EvalData, device: &Device, result: &mut CellResult) -> Result<()> {
    let (bad, classes) = (cfg.bad_images(), data.train.num_classes());
    let indices = layers.iter().map(|layer| layer.index(model.head.len())).collect::<Result<Vec<_>>>()?;
    let extract = |ds: &dyn crate::data::Dataset| eval::extract_layers(model, &indices, ds, cfg.model.image_size, 256, &bad, device);
    let ((train, _), (test, _)) = (extract(data.train.as_ref())?, extract(data.test.as_ref())?);
    for ((layer, train), test) in layers.iter().zip(&train).zip(&test) {
        let probe = eval::linear::probe(train, test, classes, eval::linear::Fit::Lbfgs, cfg.run.seed, device)?;
        record(result, &layer.to_string(), &probe.test_scores, &test.labels, classes)?;
    }
    Ok(())
}

/// Records a classifier's test top-1 (%) and per-image hits under `name`.
fn record(result: &mut CellResult, name: &str, scores: &[f32], labels: &[usize], classes: usize) -> Result<()> {
    let hits = eval::paired::hits(&eval::paired::predictions(scores, classes), labels);
    result.top1.insert(name.to_string(), 100.0 * eval::topk_accuracy(scores, classes, labels, 1)?);
    result.hits.insert(name.to_string(), Hits(hits));
    Ok(())
}

/// The supervised baseline: the cell's network initialised as its SimCLR encoder (each residual
/// block's last BN γ at zero, as the official code's supervised runs: without it ResNet-50 ×0.125
/// under-trained at the small preset's 620 steps), trained with labels on every training image for
/// the cell's epochs (`simclr finetune`'s protocol on views cropped as the cell's SimCLR views,
/// flipped and colour-distorted at its strength), its test top-1.
fn supervised(cfg: &Config, data: &EvalData, device: &Device, result: &mut CellResult) -> Result<()> {
    let size = cfg.model.image_size;
    let model = cfg.model(size).init_seeded(cfg.run.seed, device).with_compute(cfg.run.compute(device)?);
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
        crop_min_area: cfg.augment.crop_min_area,
        color_strength: cfg.augment.color_strength,
        seed: cfg.run.seed,
    };
    let settings = finetune::Finetune { from_head_layer: 0, fit };
    let done = finetune::finetune(model, size, data.train.clone(), &every, data.test.as_ref(), &settings, &cfg.bad_images(), device)?;
    record(result, "supervised", &done.test_scores, &done.test_labels, data.train.num_classes())?;
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
