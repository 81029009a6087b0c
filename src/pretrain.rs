//! The pretraining loop (paper §2.1 Algorithm 1; official `run.py`): for each batch draw two views
//! of every image ([`crate::data::loader`], ahead of the step in a background thread), compute
//! z = g(f(x)) for all 2N views, minimise NT-Xent, update with the scheduled LR; checkpoint, log
//! one `metrics.jsonl` row per step, and call the per-epoch [`crate::monitor`] hooks.

use crate::checkpoint::{self, TrainState};
use crate::config::Config;
use crate::data::loader::{Loader, Shard};
use crate::data::{self, BadImages, Dataset, Split};
use crate::distributed;
use crate::model::SimClr;
use crate::monitor::{EpochEnd, EpochHook};
use crate::optim::Optimizer;
use crate::schedule::WarmupCosine;
use crate::train::{self, simclr::{SimClrObjective, ViewBatch}};
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::ProgressBar;
use serde::Serialize;
use crate::tensorboard::EventWriter;
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// One line of `OUT/metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct StepMetrics {
    /// Steps completed after this one.
    pub step: usize,
    /// 0-based epoch of this step.
    pub epoch: usize,
    /// NT-Xent loss at the official scale (Σ ℓ / N, see [`crate::loss`]).
    pub loss: f32,
    /// Official `contrast_acc`: first views whose second view ranks first among the N second views.
    pub contrast_acc: f32,
    /// Official `contrast_entropy`: mean entropy of the softmax over those N candidates.
    pub contrast_entropy: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Images (not views) per second of this step, data wait included.
    pub images_per_sec: f64,
    /// Seconds this step waited for its batch.
    pub data_wait_s: f64,
    /// Batch accuracy of the online linear probe (when the data has labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_acc: Option<f32>,
    /// With several ranks: seconds rank 0 spent in collective operations this step (transfers and
    /// waiting for the other ranks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm_s: Option<f64>,
    /// With several ranks: MiB of rank 0's buffers the collective operations exchanged this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm_mib: Option<f64>,
}

/// The error of a run whose loss stopped being a finite number.
#[derive(Debug, thiserror::Error)]
#[error("the loss became {loss} at step {step} (lr {lr:.4}); lower --lr or raise --temperature. The last good checkpoint is {last_good}")]
pub struct Diverged {
    /// The loss (NaN or infinite).
    pub loss: f32,
    /// The step it was computed at (1-based).
    pub step: usize,
    /// The learning rate of that step.
    pub lr: f64,
    /// The last checkpoint written, or "none".
    pub last_good: String,
}

/// Where the wall time of a run went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timing {
    /// Seconds the step waited for the data loader.
    pub data_wait_s: f64,
    /// Seconds of forward, backward and update (data wait excluded).
    pub step_s: f64,
    /// Seconds spent writing checkpoints.
    pub checkpoint_s: f64,
    /// Seconds spent in the per-epoch hooks (kNN monitor, curves).
    pub monitor_s: f64,
    /// Seconds from the first step to the end.
    pub wall_s: f64,
}

/// What a finished (or resumed and finished) run reports.
pub struct Pretrained {
    /// Where the time went.
    pub timing: Timing,
    /// The trained network (on the training device, autodiff).
    pub model: SimClr,
    /// Metrics of each step run in this invocation.
    pub history: Vec<StepMetrics>,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// Step the run started from (0, or the resumed step).
    pub start_step: usize,
    /// Whether the run stopped early on request ([`crate::interrupt`]), its checkpoint written.
    pub interrupted: bool,
}

/// Side of the training views: the configured one, or the dataset's own (that of its first
/// readable image; [`crate::augment::default_view_side`]).
fn view_size(cfg: &Config, ds: &dyn Dataset, bad: &BadImages) -> Result<usize> {
    if cfg.model.image_size > 0 {
        return Ok(cfg.model.image_size);
    }
    let (_, first) = bad.read(ds, 0)?;
    Ok(crate::augment::default_view_side(first.height, first.width))
}

/// Opens `OUT/metrics.jsonl` for the rows after step `start`, so that each step has one row: rows of
/// later steps — from a run cut after its last checkpoint, or an earlier run in the same folder when
/// starting afresh (`start` 0) — are dropped first (the kept rows are rewritten atomically). Ranks
/// other than the writer ([`distributed::is_writer`]) write nowhere.
fn open_metrics(out: &Path, start: usize) -> Result<Box<dyn Write>> {
    if !distributed::is_writer() {
        return Ok(Box::new(std::io::sink()));
    }
    let path = out.join("metrics.jsonl");
    let cannot = || format!("--out {}: cannot write metrics.jsonl", out.display());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(cannot),
    };
    let step_of = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok()?["step"].as_u64();
    let kept: String = text.lines().filter(|l| step_of(l).is_some_and(|s| s as usize <= start)).map(|l| format!("{l}\n")).collect();
    let tmp = out.join(".metrics.jsonl.tmp");
    std::fs::write(&tmp, kept).and_then(|_| std::fs::rename(&tmp, &path)).with_context(cannot)?;
    Ok(Box::new(std::fs::OpenOptions::new().append(true).open(&path).with_context(cannot)?))
}

/// Runs pretraining as `cfg` says, resuming from the latest checkpoint in `cfg.run.out` if `resume`, with
/// the per-epoch hooks the config asks for ([`crate::monitor::standard`]).
pub fn pretrain(cfg: &Config, resume: bool, device: &Device, progress: bool) -> Result<Pretrained> {
    cfg.validate()?;
    pretrain_with(cfg, resume, device, progress, crate::monitor::standard(cfg)?)
}

/// [`pretrain`] with the caller's per-epoch hooks, called in order at every epoch end.
pub fn pretrain_with(cfg: &Config, resume: bool, device: &Device, progress: bool, hooks: Vec<Box<dyn EpochHook>>) -> Result<Pretrained> {
    cfg.validate()?;
    let world = distributed::world();
    let compute = cfg.run.compute(device)?.with_sync_bn(cfg.optim.sync_bn, world);
    check_ranks(cfg)?;
    let (ds, cfg, _lock) = open_run(cfg, resume)?;
    let cfg = &cfg;
    let size = cfg.model.image_size;
    let device = device.clone().autodiff();
    let shard = Shard { rank: world.rank(), ranks: world.ranks() };
    let bad = cfg.bad_images();
    let loader = Loader { ds: ds.clone(), pool: (0..ds.len()).collect(), views: 2, aug: cfg.augment(size), seed: cfg.run.seed, batch: cfg.optim.batch_size, shard, bad: bad.clone() };
    let steps_per_epoch = loader.steps_per_epoch();
    let total = match cfg.optim.max_steps {
        0 => cfg.optim.epochs.checked_mul(steps_per_epoch).with_context(|| {
            format!("--epochs {}: that many epochs of {steps_per_epoch} steps is more steps than can be counted; use fewer epochs", cfg.optim.epochs)
        })?,
        steps => steps,
    };
    // The checkpoint loads (and matches these settings) before the run's config is written.
    let (model, mut optim, start, last_checkpoint) = restore(cfg, resume, &device)?;
    let model = model.with_compute(compute);
    if distributed::is_writer() {
        std::fs::write(cfg.run.out.join("config.toml"), cfg.to_toml())
            .with_context(|| format!("--out {}: cannot write into the folder; choose a writable path", cfg.run.out.display()))?;
    }
    let schedule = WarmupCosine {
        peak: cfg.optim.lr_scaling.scale(cfg.optim.lr, cfg.optim.batch_size),
        warmup_steps: (cfg.optim.warmup_epochs * ds.len() as f64 / cfg.optim.batch_size as f64).round() as usize,
        total_steps: total,
    };
    let loader = loader.spawn(start, total);
    let objective = SimClrObjective { temperature: cfg.optim.temperature, l2_normalize: cfg.optim.l2_normalize };
    let strategy = train::simclr::strategy(objective, cfg.optim.micro_batch, cfg.optim.chunk_views);
    let metrics = open_metrics(&cfg.run.out, start)?;
    let tb = RefCell::new((cfg.monitor.tensorboard && distributed::is_writer()).then(|| EventWriter::create(&cfg.run.out.join("tb"))).transpose()?);
    let bar = progress_bar(progress && distributed::is_writer(), start, total);
    let run_start = Instant::now();
    let mut record = Record { cfg, device: &device, world, steps_per_epoch, total, bad, metrics, tb: &tb, bar, hooks, timing: Timing::default(), history: Vec::new(), epoch_wait: 0.0, last_checkpoint, interrupted: false };
    world.take_traffic();
    let next_batch = |step| {
        let batch = loader.recv().context("the data loader stopped")??;
        if let (true, Some(tb)) = (step == start, tb.borrow_mut().as_mut()) {
            tb.image("views", step + 1, &crate::grid::batch_views(&batch.pixels, size, 8))?;
        }
        Ok(ViewBatch::new(batch, ds.as_ref(), size, &device))
    };
    let model = train::run(model, &mut optim, strategy.as_ref(), |step| schedule.lr(step), start..total, world, next_batch, &mut record)?;
    record.bar.finish_and_clear();
    if start >= total {
        tracing::info!("nothing to do: the checkpoint is at step {start} of {total}");
    }
    let Record { mut timing, history, last_checkpoint, interrupted, .. } = record;
    timing.wall_s = run_start.elapsed().as_secs_f64();
    Ok(Pretrained { timing, model, history, checkpoint: last_checkpoint, start_step: start, interrupted })
}

/// What a pretraining run keeps between steps: the metrics file and history, the checkpoints, the
/// per-epoch hooks, the progress bar and where the time went.
struct Record<'a> {
    cfg: &'a Config,
    device: &'a Device,
    world: &'static dyn distributed::Collective,
    steps_per_epoch: usize,
    total: usize,
    bad: BadImages,
    metrics: Box<dyn Write>,
    /// The TensorBoard events (`--tensorboard`; the writing rank only).
    tb: &'a RefCell<Option<EventWriter>>,
    bar: ProgressBar,
    hooks: Vec<Box<dyn EpochHook>>,
    timing: Timing,
    history: Vec<StepMetrics>,
    /// Seconds this epoch's steps waited for data.
    epoch_wait: f64,
    last_checkpoint: PathBuf,
    interrupted: bool,
}

impl train::StepHook<SimClr> for Record<'_> {
    /// The step's `metrics.jsonl` row (an error if its loss is not finite), then at an epoch's end,
    /// every `--checkpoint-every` steps or on a stop request a checkpoint, and at an epoch's end its
    /// log line and the per-epoch hooks.
    fn after_step(&mut self, end: train::StepEnd<'_, SimClr>) -> Result<train::Flow> {
        let (cfg, done, steps_per_epoch) = (self.cfg, end.done, self.steps_per_epoch);
        let epoch = (done - 1) / steps_per_epoch;
        let m = self.step_metrics(&end, epoch)?;
        writeln!(self.metrics, "{}", serde_json::to_string(&m)?).with_context(|| format!("--out {}: cannot write metrics.jsonl", cfg.run.out.display()))?;
        if let Some(tb) = self.tb.borrow_mut().as_mut() {
            tb.row(&serde_json::to_value(&m)?)?;
            tb.flush()?;
        }
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("epoch {} loss {:.4} acc {:.3} lr {:.4} {:.1} img/s", epoch + 1, m.loss, m.contrast_acc, end.lr, m.images_per_sec));
        self.history.push(m);

        let epoch_end = done % steps_per_epoch == 0 || done == self.total;
        let stop = distributed::any(crate::interrupt::requested()) && done < self.total;
        if epoch_end || stop || (cfg.monitor.checkpoint_every > 0 && done % cfg.monitor.checkpoint_every == 0) {
            let state = TrainState { step: done, epoch: done / steps_per_epoch, seed: cfg.run.seed };
            let t = Instant::now();
            distributed::check_same_parameters(end.model, done)?;
            if distributed::is_writer() {
                self.last_checkpoint = checkpoint::save(&cfg.run.out, cfg, end.model, end.optim, &state)?;
            }
            self.timing.checkpoint_s += t.elapsed().as_secs_f64();
        }
        if epoch_end && distributed::is_writer() {
            self.end_epoch(end.model, epoch, done)?;
        }
        if stop {
            self.bar.suspend(|| tracing::warn!("stopped on request after step {done} of {}; checkpoint {}", self.total, self.last_checkpoint.display()));
            self.interrupted = true;
            return Ok(train::Flow::Stop);
        }
        Ok(train::Flow::Continue)
    }
}

impl Record<'_> {
    /// The step's row of `metrics.jsonl`, its time added to the run's; [`Diverged`] if the loss is
    /// not a finite number.
    fn step_metrics(&mut self, end: &train::StepEnd<'_, SimClr>, epoch: usize) -> Result<StepMetrics> {
        let value = |name| end.logged.get(name).expect("the SimCLR objective logs it");
        let (loss, wait) = (value("loss"), end.wait_s);
        let traffic = self.world.take_traffic();
        self.timing.data_wait_s += wait;
        self.timing.step_s += end.step_s;
        self.epoch_wait += wait;
        if !loss.is_finite() {
            let last_good = if self.last_checkpoint.as_os_str().is_empty() { "none".into() } else { self.last_checkpoint.display().to_string() };
            return Err(Diverged { loss, step: end.done, lr: end.lr, last_good }.into());
        }
        Ok(StepMetrics {
            step: end.done,
            epoch,
            loss,
            contrast_acc: value("contrast_acc"),
            contrast_entropy: value("contrast_entropy"),
            lr: end.lr,
            images_per_sec: self.cfg.optim.batch_size as f64 / (wait + end.step_s),
            data_wait_s: wait,
            probe_acc: end.logged.get("probe_acc"),
            comm_s: (self.world.ranks() > 1).then_some(traffic.seconds),
            comm_mib: (self.world.ranks() > 1).then_some(traffic.bytes as f64 / (1 << 20) as f64),
        })
    }

    /// The epoch's log line and its hooks, after step `done` of 0-based `epoch`.
    fn end_epoch(&mut self, model: &SimClr, epoch: usize, done: usize) -> Result<()> {
        let steps_per_epoch = self.steps_per_epoch;
        let recent = &self.history[self.history.len().saturating_sub(steps_per_epoch)..];
        let waited = std::mem::take(&mut self.epoch_wait);
        self.bar.suspend(|| log_epoch(epoch + 1, done, self.total, recent, waited, &self.bad));
        let complete = done % steps_per_epoch == 0;
        let end = EpochEnd { epoch: if complete { done / steps_per_epoch } else { epoch + 1 }, complete, step: done, model, cfg: self.cfg, device: self.device };
        let t = Instant::now();
        run_hooks(&mut self.hooks, &end, &mut self.metrics, self.tb.borrow_mut().as_mut(), &self.bar)?;
        // The curves picture once, at the run's end (a PNG of about 0.6 MB: every epoch's would
        // make the event file grow by that much an epoch; the scalars are there anyway).
        let curves = self.cfg.run.out.join("curves.png");
        if let Some(tb) = self.tb.borrow_mut().as_mut().filter(|_| done == self.total && curves.exists()) {
            tb.png_file("curves", done, &curves)?;
            tb.flush()?;
        }
        self.timing.monitor_s += t.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Opens the pretraining images (`--limit` applied), checks them against the batch and the stem,
/// and takes the run folder's lock ([`checkpoint::lock_run`]): the images, the config resolved for
/// them (view size, classes) and the lock, held while the run lasts (by the writing rank; the other
/// ranks of a distributed run neither lock nor write). Without `resume`, a folder that holds a run
/// is refused: two runs never share one folder's checkpoints and metrics.
fn open_run(cfg: &Config, resume: bool) -> Result<(Arc<dyn Dataset>, Config, Option<std::fs::File>)> {
    let ds = data::first(data::open(&cfg.source(), Split::Pretrain)?, cfg.data.limit);
    if ds.len() < cfg.optim.batch_size {
        bail!("--batch-size {}: the dataset has only {} images; use a smaller batch", cfg.optim.batch_size, ds.len());
    }
    let size = view_size(cfg, ds.as_ref(), &cfg.bad_images())?;
    let mut cfg = cfg.clone();
    (cfg.model.image_size, cfg.monitor.num_classes) = (size, ds.num_classes());
    let stem = cfg.model(size).encoder;
    if size < stem.min_image_size() {
        bail!("--image-size {size}: too small for the {:?} stem (needs at least {} px); use a larger --image-size or --stem cifar", stem.stem, stem.min_image_size());
    }
    if !distributed::is_writer() {
        return Ok((ds, cfg, None));
    }
    std::fs::create_dir_all(&cfg.run.out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", cfg.run.out.display()))?;
    let lock = checkpoint::lock_run(&cfg.run.out)?;
    if let Some(run) = checkpoint::existing_run(&cfg.run.out)?.filter(|_| !resume) {
        bail!(
            "--out {}: the folder already holds a run ({run}); continue it with `simclr pretrain --resume --out {}`, or start a new run with a fresh --out",
            cfg.run.out.display(),
            cfg.run.out.display()
        );
    }
    Ok((ds, cfg, Some(lock)))
}

/// A distributed run's constraint: the global batch splits evenly over the ranks, and each rank's
/// part into chunks of `--micro-batch` images.
fn check_ranks(cfg: &Config) -> Result<()> {
    let ranks = distributed::world().ranks();
    let (batch, micro) = (cfg.optim.batch_size, cfg.optim.micro_batch);
    if batch % ranks != 0 {
        bail!("--batch-size {batch}: the global batch must split evenly over the {ranks} ranks; use a multiple of {ranks}");
    }
    let part = batch / ranks;
    if micro > 0 && part % micro != 0 {
        bail!("--micro-batch {micro}: must divide each rank's {part} images (--batch-size {batch} over {ranks} ranks); use a divisor of {part}, or 0 for no chunks");
    }
    Ok(())
}

/// The network and optimiser to start from: drawn from the seed, or with `resume` those of the
/// newest intact checkpoint in `OUT` (damaged newer ones skipped with a warning), with its step and
/// folder.
fn restore(cfg: &Config, resume: bool, device: &Device) -> Result<(SimClr, Optimizer, usize, PathBuf)> {
    let model = cfg.model(cfg.model.image_size).init_seeded(cfg.run.seed, device);
    let fresh = Optimizer::new(cfg.rule());
    if !resume {
        return Ok((model, fresh, 0, PathBuf::new()));
    }
    let Some(checkpoint::Verified { dir, .. }) = checkpoint::latest_intact(&cfg.run.out)? else {
        tracing::info!("--resume: no checkpoint in {}, starting from scratch", cfg.run.out.display());
        return Ok((model, fresh, 0, PathBuf::new()));
    };
    checkpoint::check_resumable(cfg, &checkpoint::read_config(&dir)?, &dir)?;
    let state = checkpoint::read_state(&dir)?;
    let model = checkpoint::load_model(model, &dir.join("model.safetensors"))?;
    let optim = Optimizer::load(cfg.rule(), &dir.join("optimizer.safetensors"), &model, device)?;
    tracing::info!("resuming from {} at step {}", dir.display(), state.step);
    Ok((model, optim, state.step, dir))
}

/// The epoch's log line (means over its steps `recent`), and the unreadable files it skipped.
fn log_epoch(epoch: usize, done: usize, total: usize, recent: &[StepMetrics], waited: f64, bad: &BadImages) {
    let mean = |f: fn(&StepMetrics) -> f64| recent.iter().map(f).sum::<f64>() / recent.len() as f64;
    let probe = match recent.iter().any(|m| m.probe_acc.is_some()) {
        true => format!(", online probe acc {:.3}", mean(|m| m.probe_acc.unwrap_or(0.0) as f64)),
        false => String::new(),
    };
    tracing::info!(
        "epoch {epoch} done at step {done}/{total}: loss {:.4}, contrast acc {:.3}{probe}, {:.1} img/s, waited {waited:.2}s for data, RSS {:.0} MiB",
        mean(|m| m.loss as f64),
        mean(|m| m.contrast_acc as f64),
        mean(|m| m.images_per_sec),
        crate::bench::rss_mib().unwrap_or(f64::NAN)
    );
    if let Some(skipped) = bad.log().map(|l| l.take()).filter(|s| !s.is_empty()) {
        tracing::warn!("skipped {} unreadable files this epoch: {}", skipped.len(), skipped.join("; "));
    }
}

/// Calls each hook in order; the values one returns become a `metrics.jsonl` row (with the epoch
/// and step), TensorBoard scalars and a log line, before the next hook runs.
fn run_hooks(hooks: &mut [Box<dyn EpochHook>], end: &EpochEnd, metrics: &mut dyn Write, mut tb: Option<&mut EventWriter>, bar: &ProgressBar) -> Result<()> {
    for hook in hooks {
        let values = hook.after_epoch(end)?;
        if values.is_empty() {
            continue;
        }
        let mut row = serde_json::json!({ "epoch": end.epoch, "step": end.step });
        for (name, v) in &values {
            row[*name] = serde_json::json!(v);
        }
        writeln!(metrics, "{row}").context("cannot write metrics.jsonl")?;
        if let Some(tb) = tb.as_deref_mut() {
            tb.row(&row)?;
        }
        let text: Vec<String> = values.iter().map(|(name, v)| format!("{name} {v:.4}")).collect();
        bar.suspend(|| tracing::info!("epoch {}: {}", end.epoch, text.join(", ")));
    }
    Ok(())
}

fn progress_bar(show: bool, start: usize, total: usize) -> ProgressBar {
    match show {
        true => crate::progress::bar(total as u64, "pretraining step").with_position(start as u64),
        false => ProgressBar::hidden(),
    }
}

impl Pretrained {
    /// The trained model without autodiff, BN in inference mode, for evaluation.
    pub fn eval_model(&self) -> SimClr {
        self.model.valid()
    }
}
