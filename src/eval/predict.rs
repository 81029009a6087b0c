//! `simclr predict`: the classes a checkpoint's classifier gives image files — its probe, which is
//! the online linear probe of a pretraining run on labelled data, or the supervised head of a
//! model imported from TensorFlow (a SimCLR v2 release fine-tuned on ImageNet classifies into its
//! 1000 classes).
//!
//! Each image is preprocessed for evaluation ([`crate::model::SimClr::eval_pipeline`]: over 32 px
//! a centre crop of 87.5% of the shorter side, resized to the network's image side as its run
//! resized: bicubic for networks imported from TensorFlow), run in inference mode up
//! to the layer the classifier reads, and its softmax's most probable classes are returned.

use crate::augment::{augment, MAX_DEFAULT_VIEW_SIDE};
use crate::config::Config;
use crate::image::Image;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Images through the network at once.
const BATCH: usize = 64;

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Guess {
    /// Class index.
    pub class: usize,
    /// Its name (the dataset's, `--class-names`', or `class N`).
    pub name: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The most probable classes of one image, most probable first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The image file.
    pub image: PathBuf,
    /// The top classes.
    pub top: Vec<Guess>,
}

/// What `simclr predict` found.
#[derive(Clone, Debug, Serialize)]
pub struct Predictions {
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// The layer the classifier reads (0: h).
    pub layer: usize,
    /// Its number of classes.
    pub classes: usize,
    /// The image side the network takes.
    pub image_size: usize,
    /// One per image, in the order given.
    pub predictions: Vec<Prediction>,
}

/// The `top` most probable classes of each of `images` under the classifier of `checkpoint`,
/// named from `class_names` (one per line) or the checkpoint's dataset; computing as `flags.run`
/// says (precision, memory order).
pub fn predict(checkpoint: &Path, images: &[PathBuf], top: usize, class_names: Option<&Path>, flags: &Config, device: &Device) -> Result<Predictions> {
    if images.is_empty() {
        bail!("no image given: name one or more image files");
    }
    if top == 0 {
        bail!("--top 0: ask for at least one class");
    }
    let loaded = super::load(Some(checkpoint), flags, MAX_DEFAULT_VIEW_SIDE, device)?;
    let dir = loaded.checkpoint.clone().unwrap_or_else(|| checkpoint.to_path_buf());
    let Some(probe) = &loaded.model.probe else {
        bail!(
            "{}: this network has no classifier (pretrain on labelled data with the online probe, or import a TensorFlow checkpoint with a supervised head); evaluate it with linear-eval or knn",
            dir.display()
        );
    };
    let classes = probe.weight.val().dims()[1];
    // An imported network's config does not name the data it was trained on (`import.json` says
    // where it came from): its classes are numbers unless named.
    let dataset = (!dir.join("import.json").is_file()).then_some(loaded.config.data.dataset);
    let names = names(class_names, dataset, classes)?;
    let device = device.clone().inner();
    let model = loaded.model.valid().to_device(&device);
    let size = loaded.image_size;
    let eval = model.eval_pipeline(size);
    let mut predictions = Vec::with_capacity(images.len());
    for files in images.chunks(BATCH) {
        let pixels = files
            .iter()
            .map(|file| {
                if !file.exists() {
                    bail!("{}: no such image file", file.display());
                }
                let img = crate::data::folder::read_image(file).with_context(|| format!("{}: cannot read it as an image", file.display()))?;
                let (w, h) = img.dimensions();
                Ok(augment(&Image::from_u8_hwc(img.as_raw(), h as usize, w as usize, 3), &eval, &mut ChaCha8Rng::seed_from_u64(0)).data)
            })
            .collect::<Result<Vec<_>>>()?;
        let x = Tensor::<4>::from_data(TensorData::new(pixels.concat(), [files.len(), 3, size, size]), &device);
        let logits = model.probe_logits(&model.forward(x)).expect("the network has a probe");
        let probabilities = crate::floats(softmax(logits, 1));
        for (file, row) in files.iter().zip(probabilities.chunks(classes)) {
            if row.iter().any(|p| !p.is_finite()) {
                bail!("{}: the classifier's output is not finite (NaN or infinity): the network's weights or BN statistics are broken", file.display());
            }
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top = order.into_iter().take(top).map(|c| Guess { class: c, name: names[c].clone(), probability: row[c] }).collect();
            predictions.push(Prediction { image: file.clone(), top });
        }
    }
    Ok(Predictions { checkpoint: dir, layer: model.probe_layer, classes, image_size: size, predictions })
}

/// The names of `classes` classes: one per line of `file`, else `dataset`'s, else `class N`.
fn names(file: Option<&Path>, dataset: Option<crate::data::DatasetKind>, classes: usize) -> Result<Vec<String>> {
    if let Some(file) = file {
        let text = crate::files::read_to_string(file).with_context(|| format!("--class-names {}: cannot read it", file.display()))?;
        let names: Vec<String> = text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        if names.len() != classes {
            bail!("--class-names {}: {} names for a classifier of {classes} classes; give one name a line, in class order", file.display(), names.len());
        }
        return Ok(names);
    }
    Ok(match dataset.and_then(|d| d.class_names()) {
        Some(names) if names.len() == classes => names,
        _ => (0..classes).map(|c| format!("class {c}")).collect(),
    })
}
