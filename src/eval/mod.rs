//! The evaluation protocols (paper §4, App. B.5–B.6) — [`linear`] evaluation, [`knn`],
//! [`finetune`] on a fraction of the labels, [`embed`] (features out), their [`report`]s — and the
//! pieces they share: loading a pretrained (or randomly initialised) network, choosing the layer to
//! evaluate, extracting frozen features of un-augmented images, top-k accuracy and confusion matrices.

pub mod embed;
pub mod finetune;
pub mod knn;
pub mod linear;
pub mod map;
pub mod paired;
pub mod predict;
pub mod report;

use crate::augment::augment;
use crate::checkpoint;
use crate::config::Config;
use crate::data::{BadImages, Dataset};
use crate::model::SimClr;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Features of a dataset, row-major `n × dim`, with labels when the dataset has them.
#[derive(Clone, Debug)]
pub struct Features {
    /// Values.
    pub data: Vec<f32>,
    /// Number of rows.
    pub n: usize,
    /// Dimension of a row.
    pub dim: usize,
    /// Label of each row (empty for an unlabelled dataset).
    pub labels: Vec<usize>,
}

impl Features {
    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Features {
        let mut data = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            data.extend_from_slice(&self.data[i * self.dim..(i + 1) * self.dim]);
        }
        let labels = if self.labels.is_empty() { vec![] } else { indices.iter().map(|&i| self.labels[i]).collect() };
        Features { data, n: indices.len(), dim: self.dim, labels }
    }

    /// Whether every row has a label.
    pub fn is_labelled(&self) -> bool {
        self.labels.len() == self.n
    }

    /// An error naming the first row holding a NaN or an infinity, and `what` the rows are (these
    /// would score as anything: a NaN compares false both ways), or rows with no dimension.
    pub fn ensure_finite(&self, what: &str) -> Result<()> {
        if self.n > 0 && self.dim == 0 {
            bail!("{what}: {} rows of 0 dimensions; there is nothing to compare", self.n);
        }
        match self.data.chunks(self.dim.max(1)).position(|row| row.iter().any(|v| !v.is_finite())) {
            Some(row) => bail!("{what}: row {row} holds a NaN or an infinity; refusing to score non-finite features"),
            None => Ok(()),
        }
    }
}

/// Which representation to evaluate: h (before the head), z (after it), or head layer K.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Layer {
    /// The encoder output h (the paper's default for downstream tasks).
    H,
    /// The projection output z.
    Z,
    /// The output of head layer K (1-based; `head:0` is h).
    Head(usize),
}

impl FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "h" => Ok(Layer::H),
            "z" => Ok(Layer::Z),
            _ => s
                .strip_prefix("head:")
                .and_then(|k| k.parse().ok())
                .map(Layer::Head)
                .ok_or_else(|| format!("--layer {s}: expected h, z or head:K (K = 0 … number of head layers)")),
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::H => write!(f, "h"),
            Layer::Z => write!(f, "z"),
            Layer::Head(k) => write!(f, "head:{k}"),
        }
    }
}

impl Layer {
    /// Index into the list `[h, head layer 1, …, z]` of a model with `head_layers` layers.
    pub fn index(self, head_layers: usize) -> Result<usize> {
        match self {
            Layer::H => Ok(0),
            Layer::Z => Ok(head_layers),
            Layer::Head(k) if k <= head_layers => Ok(k),
            Layer::Head(k) => bail!("--layer head:{k}: the model's head has only {head_layers} layers"),
        }
    }
}

/// A network to evaluate, with where it came from.
pub struct Loaded {
    /// The network (weights on the given device, autodiff off).
    pub model: SimClr,
    /// The config it was trained with (or the flags, for random init).
    pub config: Config,
    /// Side of the images it takes.
    pub image_size: usize,
    /// The checkpoint folder, if any.
    pub checkpoint: Option<PathBuf>,
    /// SHA-256 of the checkpoint's `model.safetensors`, if any.
    pub checkpoint_sha256: Option<String>,
}

/// Loads `--checkpoint` (a checkpoint or run folder), or builds a randomly initialised network from
/// `flags` when `checkpoint` is `None`; either computing as `flags.run` says (precision, memory
/// format). `dataset_size` is the image side used when neither the checkpoint's config nor the
/// flags set one.
pub fn load(checkpoint_arg: Option<&Path>, flags: &Config, dataset_size: usize, device: &Device) -> Result<Loaded> {
    let compute = flags.run.compute(device)?;
    let loaded = load_weights(checkpoint_arg, flags, dataset_size, device)?;
    Ok(Loaded { model: loaded.model.with_compute(compute), ..loaded })
}

fn load_weights(checkpoint_arg: Option<&Path>, flags: &Config, dataset_size: usize, device: &Device) -> Result<Loaded> {
    match checkpoint_arg {
        Some(path) => {
            let checkpoint::Verified { dir, model_sha256 } = checkpoint::resolve(path)?;
            let config = checkpoint::read_config(&dir)?;
            config.data.check_held_out_split(&flags.data).with_context(|| format!("--checkpoint {}", dir.display()))?;
            let size = if config.model.image_size > 0 { config.model.image_size } else { dataset_size };
            let mut model = checkpoint::load_model(config.model(size).init(device), &dir.join("model.safetensors"))?;
            model.input_resize = config.augment.resize;
            Ok(Loaded { model, config, image_size: size, checkpoint: Some(dir), checkpoint_sha256: Some(model_sha256) })
        }
        None => {
            let size = if flags.model.image_size > 0 { flags.model.image_size } else { dataset_size };
            let mut model = random_init_baseline(flags, size).init_seeded(flags.run.seed, device);
            model.input_resize = flags.augment.resize;
            Ok(Loaded { model, config: flags.clone(), image_size: size, checkpoint: None, checkpoint_sha256: None })
        }
    }
}

/// The random-init baseline: the run's network with torchvision's default initialisation (every
/// BN γ = 1). The zero-γ start of pretraining silences each residual branch, so its random
/// features are much weaker (58.8% vs 76.8% linear-probe accuracy on the built-in data at width
/// 0.25) and would overstate what pretraining adds.
pub fn random_init_baseline(flags: &Config, image_size: usize) -> crate::model::ModelConfig {
    let mut cfg = flags.model(image_size);
    cfg.encoder.zero_init_residual = false;
    cfg
}

/// Output `layer` (index into `[h, head layers…]`) for every image of `ds`, preprocessed for
/// evaluation ([`SimClr::eval_pipeline`]: over 32 px a centre crop of 87.5%, then resized to
/// `image_size` as the network's run resized), in batches of `batch`, BN in inference mode, no gradient.
/// Unreadable images are left out under [`BadImages::Skip`] (and logged), an error otherwise.
pub fn extract(
    model: &SimClr,
    layer: usize,
    ds: &dyn Dataset,
    image_size: usize,
    batch: usize,
    bad: &BadImages,
    device: &Device,
) -> Result<Features> {
    Ok(extract_indexed(model, layer, ds, image_size, batch, bad, device)?.0)
}

/// [`extract`], with the index in `ds` of each row (rows of unreadable images are left out).
pub fn extract_indexed(
    model: &SimClr,
    layer: usize,
    ds: &dyn Dataset,
    image_size: usize,
    batch: usize,
    bad: &BadImages,
    device: &Device,
) -> Result<(Features, Vec<usize>)> {
    let (mut layers, rows) = extract_layers(model, &[layer], ds, image_size, batch, bad, device)?;
    Ok((layers.swap_remove(0), rows))
}

/// The features of several `layers` (indices into `[h, head layer 1, …, z]`) of every image of
/// `ds`, in one forward pass over the data, in the order of `layers`; with the index in `ds` of
/// each row (rows of unreadable images are left out).
pub fn extract_layers(
    model: &SimClr,
    layers: &[usize],
    ds: &dyn Dataset,
    image_size: usize,
    batch: usize,
    bad: &BadImages,
    device: &Device,
) -> Result<(Vec<Features>, Vec<usize>)> {
    let device = device.clone().inner();
    let model = model.valid().to_device(&device);
    let aug = model.eval_pipeline(image_size);
    let mut data = vec![Vec::new(); layers.len()];
    let mut dims = vec![0; layers.len()];
    let mut labels = Vec::with_capacity(ds.len());
    let mut rows = Vec::with_capacity(ds.len());
    let bar = crate::progress::bar(ds.len() as u64, "extracting features");
    for start in (0..ds.len()).step_by(batch) {
        bar.set_position(start as u64);
        let read: Vec<(usize, Option<Vec<f32>>)> = (start..(start + batch).min(ds.len()))
            .into_par_iter()
            .map(|i| Ok((i, bad.read_exact(ds, i)?.map(|img| augment(&img, &aug, &mut ChaCha8Rng::seed_from_u64(0)).data))))
            .collect::<Result<_>>()?;
        let (idx, pixels): (Vec<usize>, Vec<Vec<f32>>) = read.into_iter().filter_map(|(i, p)| p.map(|p| (i, p))).unzip();
        if idx.is_empty() {
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(pixels.concat(), [idx.len(), 3, image_size, image_size]), &device);
        let hiddens = model.forward(x);
        for (k, &layer) in layers.iter().enumerate() {
            let Some(f) = hiddens.get(layer) else {
                bail!("layer {layer} does not exist: the model has h (0) and {} head layers", hiddens.len() - 1);
            };
            dims[k] = f.dims()[1];
            let values = crate::floats(f.clone());
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                let i = idx[at / dims[k].max(1)];
                let image = ds.file(i).map_or_else(|| format!("image {i}"), |f| f.display().to_string());
                bail!("the network's output at layer {layer} is not finite (NaN or infinity) for {image}: its weights or BN statistics are broken; evaluate another checkpoint");
            }
            data[k].extend(values);
        }
        labels.extend(idx.iter().filter_map(|&i| ds.label(i)));
        rows.extend(idx);
    }
    bar.finish_and_clear();
    let n = rows.len();
    if !labels.is_empty() && labels.len() != n {
        bail!("only some images have labels ({} of {n})", labels.len());
    }
    let features = data.into_iter().zip(dims).map(|(data, dim)| Features { n, dim, data, labels: labels.clone() }).collect();
    Ok((features, rows))
}

/// The one gate before anything is scored: one row of `classes` finite scores per label, at least
/// one label, every label one of the classes. A NaN compares false both ways, so an unchecked NaN
/// row would count as a hit; a label past the classes is a test class the classifier never saw.
pub fn check_scores(scores: &[f32], classes: usize, labels: &[usize]) -> Result<()> {
    if labels.is_empty() {
        bail!("no labelled image to score: the test split is empty or none of its images could be read");
    }
    if classes == 0 || scores.len() != labels.len() * classes {
        bail!("{} scores do not make one row of {classes} classes for each of {} labels", scores.len(), labels.len());
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
        bail!("label {l} is not one of the {classes} classes the classifier was trained on: the test split has a class the training split lacks");
    }
    if let Some(row) = scores.chunks(classes).position(|r| r.iter().any(|s| !s.is_finite())) {
        bail!("the scores of test row {row} are not finite (NaN or infinity): the classifier's fit diverged or its input is not finite; no accuracy is reported from them");
    }
    Ok(())
}

/// Fraction of rows whose label is among the `k` highest of `scores` (`n × classes`, row-major).
/// Ties count against the label. Refuses what [`check_scores`] refuses.
pub fn topk_accuracy(scores: &[f32], classes: usize, labels: &[usize], k: usize) -> Result<f64> {
    check_scores(scores, classes, labels)?;
    let hits = scores
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &l)| row.iter().filter(|&&s| s >= row[l]).count() <= k)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

/// Row-normalisable confusion counts: `matrix[true][predicted]`. Refuses what [`check_scores`]
/// refuses.
pub fn confusion(scores: &[f32], classes: usize, labels: &[usize]) -> Result<Vec<Vec<usize>>> {
    check_scores(scores, classes, labels)?;
    let mut m = vec![vec![0; classes]; classes];
    for (row, &l) in scores.chunks(classes).zip(labels) {
        let pred = row.iter().enumerate().fold(0, |b, (i, &s)| if s > row[b] { i } else { b });
        m[l][pred] += 1;
    }
    Ok(m)
}
