//! The pretraining loop (paper §2.1 Algorithm 1): for each batch draw two views of every image,
//! compute z = g(f(x)) for all 2N views, minimise NT-Xent, update with the scheduled LR.
//!
//! Views are produced ahead of the step by a background thread (rayon-parallel augmentation, a
//! bounded queue of ready batches), so the step only waits for data when augmentation is slower
//! than the model; the time spent waiting is measured and logged.

use crate::augment::{augment, splitmix64, view_rng, AugmentConfig};
use crate::checkpoint::{self, TrainState};
use crate::config::Config;
use crate::data::{self, BadImages, Dataset, Split};
use crate::image::Image;
use crate::head::SimClr;
use crate::eval::{extract, topk_accuracy};
use crate::knn::Knn;
use crate::loss::nt_xent;
use crate::optim::Optimizer;
use crate::schedule::WarmupCosine;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

/// Ready batches kept in the queue ahead of the step.
const PREFETCH: usize = 3;

/// One line of `OUT/metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct StepMetrics {
    /// Steps completed after this one.
    pub step: usize,
    /// 0-based epoch of this step.
    pub epoch: usize,
    /// NT-Xent loss.
    pub loss: f32,
    /// Contrastive top-1 accuracy.
    pub contrast_acc: f32,
    /// Entropy of the contrastive distribution.
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
    /// Seconds spent in the kNN monitor.
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
}

/// The order of the images in `epoch`: a permutation seeded by `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(splitmix64(seed ^ splitmix64(epoch as u64))));
    order
}

/// `views` augmented views of each image `indices[i]`, as a `[views·N, 3, S, S]` buffer (all first
/// views, then all second views, …), augmented in parallel.
/// An unreadable image is replaced by the next readable one under [`BadImages::Skip`]; the
/// returned batch names the images actually used, so labels follow them.
pub fn make_views(
    ds: &dyn Dataset,
    indices: &[usize],
    views: usize,
    aug: &AugmentConfig,
    seed: u64,
    epoch: usize,
    bad: &BadImages,
) -> Result<Batch> {
    let n = indices.len();
    let read: Vec<(usize, Image)> = indices.par_iter().map(|&i| bad.read(ds, i)).collect::<Result<_, data::DataError>>()?;
    let pixels: Vec<Vec<f32>> = (0..views * n)
        .into_par_iter()
        .map(|v| {
            let (index, img) = &read[v % n];
            let mut rng = view_rng(seed, epoch as u64, *index as u64, (v / n) as u64);
            augment(img, aug, &mut rng).data
        })
        .collect();
    Ok(Batch { images: read.into_iter().map(|(i, _)| i).collect(), pixels: pixels.concat() })
}

/// One batch from the loader: which images, and their augmented views.
pub struct Batch {
    /// Dataset indices of the batch's images.
    pub images: Vec<usize>,
    /// `[views·N, 3, S, S]` pixels (see [`make_views`]).
    pub pixels: Vec<f32>,
}

/// Starts a producer thread for steps `start..total` over the images `pool` of `ds`: each epoch
/// visits `pool` in the order [`epoch_order`] gives, `batch` images a step (the last incomplete
/// batch dropped), `views` augmented views each. At most [`PREFETCH`] batches wait in the queue.
#[allow(clippy::too_many_arguments)]
pub fn spawn_loader(
    ds: Arc<dyn Dataset>,
    pool: Vec<usize>,
    views: usize,
    aug: AugmentConfig,
    seed: u64,
    batch: usize,
    start: usize,
    total: usize,
    bad: BadImages,
) -> Receiver<Result<Batch>> {
    let (tx, rx) = sync_channel(PREFETCH);
    let steps_per_epoch = pool.len() / batch;
    std::thread::spawn(move || {
        let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
        for step in start..total {
            let epoch = step / steps_per_epoch;
            if order.0 != epoch {
                order = (epoch, epoch_order(pool.len(), seed, epoch).into_iter().map(|i| pool[i]).collect());
            }
            let at = (step % steps_per_epoch) * batch;
            let result = make_views(ds.as_ref(), &order.1[at..at + batch], views, &aug, seed, epoch, &bad);
            if tx.send(result).is_err() {
                return;
            }
        }
    });
    rx
}

/// Side of the training views: the configured one, or the dataset's own (that of its first
/// readable image), at most 224 px as the paper's ImageNet setting.
fn view_size(cfg: &Config, ds: &dyn Dataset, bad: &BadImages) -> Result<usize> {
    if cfg.image_size > 0 {
        return Ok(cfg.image_size);
    }
    let (_, first) = bad.read(ds, 0)?;
    Ok(first.height.max(first.width).min(224))
}

/// Opens `OUT/metrics.jsonl` for the rows after step `start`, so that each step has one row: rows of
/// later steps — from a run cut after its last checkpoint, or an earlier run in the same folder when
/// starting afresh (`start` 0) — are dropped first (the kept rows are rewritten atomically).
fn open_metrics(out: &Path, start: usize) -> Result<std::fs::File> {
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
    std::fs::OpenOptions::new().append(true).open(&path).with_context(cannot)
}

/// Runs pretraining as `cfg` says, resuming from the latest checkpoint in `cfg.out` if `resume`.
pub fn pretrain(cfg: &Config, resume: bool, device: &Device, progress: bool) -> Result<Pretrained> {
    cfg.validate()?;
    let mut ds = data::open(&cfg.source(), Split::Pretrain)?;
    if cfg.limit > 0 && cfg.limit < ds.len() {
        ds = Arc::new(data::Subset::new(ds, (0..cfg.limit).collect()));
    }
    if ds.len() < cfg.batch_size {
        bail!("--batch-size {}: the dataset has only {} images; use a smaller batch", cfg.batch_size, ds.len());
    }
    let bad = cfg.bad_images();
    let size = view_size(cfg, ds.as_ref(), &bad)?;
    let cfg = &Config { image_size: size, num_classes: ds.num_classes(), ..cfg.clone() };
    let model_cfg = cfg.model(size);
    let min = model_cfg.encoder.min_image_size();
    if size < min {
        bail!("--image-size {size}: too small for the {:?} stem (needs at least {min} px); use a larger --image-size or --stem cifar", model_cfg.encoder.stem);
    }

    std::fs::create_dir_all(&cfg.out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", cfg.out.display()))?;
    std::fs::write(cfg.out.join("config.toml"), cfg.to_toml())
        .with_context(|| format!("--out {}: cannot write into the folder; choose a writable path", cfg.out.display()))?;

    let device = device.clone().autodiff();
    let mut model = model_cfg.init_seeded(cfg.seed, &device);
    let mut optim = Optimizer::new(cfg.rule());
    let mut start = 0;
    let mut last_checkpoint = PathBuf::new();
    if resume {
        if let Some(dir) = checkpoint::latest(&cfg.out)? {
            let state = checkpoint::read_state(&dir)?;
            model = checkpoint::load_model(model, &dir.join("model.safetensors"))?;
            optim = Optimizer::load(cfg.rule(), &dir.join("optimizer.safetensors"), &device)?;
            start = state.step;
            last_checkpoint = dir.clone();
            tracing::info!("resuming from {} at step {start}", dir.display());
        } else {
            tracing::info!("--resume: no checkpoint in {}, starting from scratch", cfg.out.display());
        }
    }

    let steps_per_epoch = ds.len() / cfg.batch_size;
    let total = if cfg.max_steps > 0 { cfg.max_steps } else { cfg.epochs * steps_per_epoch };
    let schedule = WarmupCosine {
        peak: cfg.lr_scaling.scale(cfg.lr, cfg.batch_size),
        warmup_steps: (cfg.warmup_epochs * ds.len() as f64 / cfg.batch_size as f64).round() as usize,
        total_steps: total,
    };
    let aug = cfg.augment(size);
    let loader = spawn_loader(ds.clone(), (0..ds.len()).collect(), 2, aug, cfg.seed, cfg.batch_size, start, total, bad.clone());
    let mut metrics_file = open_metrics(&cfg.out, start)?;

    let bar = progress_bar(progress, start, total);
    let mut timing = Timing::default();
    let run_start = Instant::now();
    let mut history = Vec::new();
    let mut epoch_wait = 0.0;
    for step in start..total {
        let t0 = Instant::now();
        let batch = loader.recv().context("the data loader stopped")??;
        let wait = t0.elapsed().as_secs_f64();
        epoch_wait += wait;
        let epoch = step / steps_per_epoch;
        let lr = schedule.lr(step);
        let x = Tensor::<4>::from_data(TensorData::new(batch.pixels, [2 * cfg.batch_size, 3, size, size]), &device);
        let hiddens = model.forward(x);
        let out = nt_xent(hiddens.last().expect("the head returns z").clone(), cfg.temperature);
        let probe = model.probe_logits(hiddens[0].clone()).and_then(|logits| probe_loss(logits, &batch.images, ds.as_ref()));
        let total_loss = match &probe {
            Some((ce, _)) => out.loss.clone() + ce.clone(),
            None => out.loss.clone(),
        };
        let grads = GradientsParams::from_grads(total_loss.backward(), &model);
        model = optim.step(lr, model, grads);
        let loss: f32 = out.loss.into_scalar();
        timing.data_wait_s += wait;
        timing.step_s += t0.elapsed().as_secs_f64() - wait;
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {} (lr {lr:.4}); lower --lr or raise --temperature. The last good checkpoint is {}",
                step + 1,
                if last_checkpoint.as_os_str().is_empty() { "none".into() } else { last_checkpoint.display().to_string() }
            );
        }
        let m = StepMetrics {
            step: step + 1,
            epoch,
            loss,
            contrast_acc: out.accuracy.into_scalar(),
            contrast_entropy: out.entropy.into_scalar(),
            lr,
            images_per_sec: cfg.batch_size as f64 / t0.elapsed().as_secs_f64(),
            data_wait_s: wait,
            probe_acc: probe.map(|(_, acc)| acc.into_scalar()),
        };
        writeln!(metrics_file, "{}", serde_json::to_string(&m)?)?;
        bar.set_position((step + 1) as u64);
        bar.set_message(format!(
            "epoch {} loss {:.4} acc {:.3} lr {:.4} {:.1} img/s",
            epoch + 1,
            m.loss,
            m.contrast_acc,
            lr,
            m.images_per_sec
        ));
        history.push(m);

        let done = step + 1;
        let epoch_end = done % steps_per_epoch == 0 || done == total;
        let periodic = cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0;
        if epoch_end || periodic {
            let state = TrainState { step: done, epoch: done / steps_per_epoch, seed: cfg.seed };
            let t = Instant::now();
            last_checkpoint = checkpoint::save(&cfg.out, cfg, &model, &optim, &state)?;
            timing.checkpoint_s += t.elapsed().as_secs_f64();
        }
        if epoch_end {
            let recent = &history[history.len().saturating_sub(steps_per_epoch)..];
            let mean = |f: fn(&StepMetrics) -> f64| recent.iter().map(f).sum::<f64>() / recent.len() as f64;
            let probe = if model.probe.is_some() { format!(", online probe acc {:.3}", mean(|m| m.probe_acc.unwrap_or(0.0) as f64)) } else { String::new() };
            bar.suspend(|| {
                tracing::info!(
                    "epoch {} done at step {done}/{total}: loss {:.4}, contrast acc {:.3}{probe}, {:.1} img/s, waited {:.2}s for data, RSS {:.0} MiB",
                    epoch + 1,
                    mean(|m| m.loss as f64),
                    mean(|m| m.contrast_acc as f64),
                    mean(|m| m.images_per_sec),
                    epoch_wait,
                    crate::bench::rss_mib().unwrap_or(f64::NAN)
                )
            });
            epoch_wait = 0.0;
            if let Some(skipped) = bad.log().map(|l| l.take()).filter(|s| !s.is_empty()) {
                bar.suspend(|| tracing::warn!("skipped {} unreadable files this epoch: {}", skipped.len(), skipped.join("; ")));
            }
            let finished_epochs = done / steps_per_epoch;
            if cfg.knn_every > 0 && done % steps_per_epoch == 0 && finished_epochs % cfg.knn_every == 0 {
                let t = Instant::now();
                let top1 = knn_monitor(&model, ds.clone(), cfg, size, &device)?;
                timing.monitor_s += t.elapsed().as_secs_f64();
                bar.suspend(|| tracing::info!("epoch {finished_epochs}: kNN monitor top-1 {:.2}%", 100.0 * top1));
                writeln!(metrics_file, "{}", serde_json::json!({ "epoch": finished_epochs, "step": done, "knn_top1": top1 }))?;
            }
        }
    }
    bar.finish_and_clear();
    if start >= total {
        tracing::info!("nothing to do: the checkpoint is at step {start} of {total}");
    }
    timing.wall_s = run_start.elapsed().as_secs_f64();
    Ok(Pretrained { timing, model, history, checkpoint: last_checkpoint, start_step: start })
}

/// Cross-entropy of the online probe on both views of the batch's labelled images, and its
/// accuracy; `None` when no image of the batch has a label (e.g. STL-10's unlabelled part).
fn probe_loss(logits: Tensor<2>, images: &[usize], ds: &dyn Dataset) -> Option<(Tensor<1>, Tensor<1>)> {
    let [rows, classes] = logits.dims();
    let mut onehot = vec![0f32; rows * classes];
    let mut labelled = 0usize;
    for r in 0..rows {
        if let Some(label) = ds.label(images[r % images.len()]) {
            onehot[r * classes + label] = 1.0;
            labelled += 1;
        }
    }
    if labelled == 0 {
        return None;
    }
    let device = logits.device();
    let y = Tensor::<2>::from_data(TensorData::new(onehot, [rows, classes]), &device);
    let predicted = logits.clone().detach().argmax(1).reshape([rows]).one_hot::<2>(classes).float();
    let acc = (predicted * y.clone()).sum().div_scalar(labelled as f32);
    let ce = (log_softmax(logits, 1) * y).sum().neg().div_scalar(labelled as f32);
    Some((ce, acc))
}

/// Images of the training set the kNN monitor uses as its memory bank.
const KNN_BANK: usize = 10_000;

/// Weighted-kNN top-1 on the test split, with (up to) the first [`KNN_BANK`] training images as
/// the memory bank: a cheap per-epoch view of representation quality.
fn knn_monitor(model: &SimClr, train: Arc<dyn Dataset>, cfg: &Config, size: usize, device: &Device) -> Result<f64> {
    let test = data::open(&cfg.source(), Split::Test)?;
    if train.num_classes() == 0 {
        bail!("--knn-every needs a labelled dataset");
    }
    let classes = train.num_classes();
    let bank_ds = data::Subset::new(train.clone(), (0..train.len().min(KNN_BANK)).collect());
    let bad = cfg.bad_images();
    let bank = extract(model, 0, &bank_ds, size, 256, &bad, device)?;
    let queries = extract(model, 0, test.as_ref(), size, 256, &bad, device)?;
    let scores = Knn::default().scores(&bank, &queries, classes, &device.clone().inner());
    Ok(topk_accuracy(&scores, classes, &queries.labels, 1))
}

fn progress_bar(show: bool, start: usize, total: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64).with_position(start as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} eta {eta}")
            .expect("a valid template"),
    );
    bar
}

impl Pretrained {
    /// The trained model without autodiff, BN in inference mode, for evaluation.
    pub fn eval_model(&self) -> SimClr {
        self.model.valid()
    }
}
