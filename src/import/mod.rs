//! Pretrained-weight import: a TensorFlow checkpoint of the official SimCLR code (Google's released
//! v1 and v2 models; [`tensorflow`]) or a ResNet encoder saved by PyTorch under torchvision's names (`conv1`,
//! `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, …, `fc`) becomes a checkpoint folder that
//! `linear-eval`, `knn`, `finetune` and `embed` take with `--checkpoint`.
//!
//! That layout is the one of the official SimCLR v1 checkpoints converted to PyTorch, of
//! torchvision's ResNets, and of the backbones of solo-learn, lightly and most PyTorch SimCLR
//! scripts. The file is a `.pth`/`.pt` written by `torch.save` (a state dict, or a checkpoint whose
//! nested dictionaries hold one: their keys are joined with dots, e.g. `state_dict.backbone.conv1.weight`)
//! or a `.safetensors` file. The encoder's key prefix is found by itself when the file holds one
//! ResNet. Depth (blocks per stage; bottlenecks when blocks have a `conv3`), width (stem channels /
//! 64, paper §4) and stem (7×7 kernel: ImageNet, 3×3: CIFAR, App. B.9) are read from the weights.
//!
//! Only the encoder f is imported: the projection head g is drawn from the seed, so the
//! representation to evaluate is h (`--layer h`, the paper's choice, §4.2). The encoder takes
//! images in [0, 1], as SimCLR's; weights trained on mean/std-normalised images (torchvision's
//! supervised ones) see other input statistics here.

pub mod tensorflow;

use crate::checkpoint;
use crate::config::{Config, ModelArgs, RunArgs};
use crate::manifest::sha256_file;
use crate::model::SimClr;
use crate::resnet::{Arch, Stem};
use anyhow::{bail, Context, Result};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{DType, Device, TensorData};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The float tensors of a weights file by name, as `f32`. Integer tensors (BN's
/// `num_batches_tracked`, step counters) are left out.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    if !path.exists() {
        bail!("--weights {}: no such file", path.display());
    }
    crate::files::open(path, crate::files::ARRAY).with_context(|| format!("--weights {}: cannot read", path.display()))?;
    let mut out = BTreeMap::new();
    if path.extension().is_some_and(|e| e == "safetensors") {
        let bytes = crate::files::read(path, crate::files::ARRAY).with_context(|| format!("reading {}", path.display()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("--weights {}: not a valid safetensors file", path.display()))?;
        for (name, view) in file.tensors() {
            let dtype = match view.dtype() {
                safetensors::Dtype::F64 => DType::F64,
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                _ => continue,
            };
            out.insert(name, as_f32(view.data().to_vec(), view.shape().to_vec(), dtype));
        }
    } else {
        use burn::store::pytorch_reader::{DType as Pt, PytorchReader};
        if let Ok(pickle) = PytorchReader::read_pickle_data(path, None) {
            if let Some(name) = foreign_call(&pickle) {
                bail!("--weights {}: its pickle calls {name}, which builds no PyTorch, NumPy or Python data; refused (nothing was called)", path.display());
            }
        }
        let reader = PytorchReader::new(path).map_err(|e| {
            anyhow::anyhow!("--weights {}: cannot read it as a PyTorch file ({e}); give a torch.save file or a .safetensors", path.display())
        })?;
        for (name, tensor) in reader.into_tensors() {
            let dtype = match tensor.dtype() {
                Pt::F64 => DType::F64,
                Pt::F32 => DType::F32,
                Pt::F16 => DType::F16,
                Pt::BF16 => DType::BF16,
                _ => continue,
            };
            let bytes = tensor.read().with_context(|| format!("--weights {}: tensor {name}", path.display()))?;
            out.insert(name, as_f32(bytes, tensor.shape().to_vec(), dtype));
        }
    }
    Ok(out)
}

/// The first callable in a pickle that is not a data type of PyTorch, NumPy or Python's standard
/// containers (`argparse.Namespace`, `collections.OrderedDict`, …). The reader never calls it
/// (it keeps only its name), but a file that asks for `os.system` or `builtins.eval` is not a
/// checkpoint: it is refused, naming the callable, rather than loaded with that entry dropped.
fn foreign_call(value: &burn::store::pytorch_reader::PickleValue) -> Option<String> {
    use burn::store::pytorch_reader::PickleValue;
    const DATA: [&str; 6] = ["torch.", "numpy.", "collections.", "argparse.", "copyreg._reconstructor", "_codecs.encode"];
    const BUILTIN_DATA: [&str; 6] = ["set", "frozenset", "slice", "complex", "bytearray", "object"];
    match value {
        PickleValue::Unsupported(name) => {
            let builtin = name.strip_prefix("builtins.").or_else(|| name.strip_prefix("__builtin__."));
            let data = !name.contains('.') || DATA.iter().any(|p| name.starts_with(p)) || builtin.is_some_and(|b| BUILTIN_DATA.contains(&b));
            (!data).then(|| name.clone())
        }
        PickleValue::List(items) => items.iter().find_map(foreign_call),
        PickleValue::Dict(entries) => entries.values().find_map(foreign_call),
        _ => None,
    }
}

fn as_f32(bytes: Vec<u8>, shape: Vec<usize>, dtype: DType) -> TensorData {
    TensorData::from_bytes_vec(bytes, shape, dtype).convert::<f32>()
}

/// The prefix before torchvision's names: the one `P` for which both `Pconv1.weight` and
/// `Player1.0.conv1.weight` exist.
pub fn find_prefix(keys: &[&str]) -> Result<String, String> {
    let found: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_suffix("layer1.0.conv1.weight"))
        .filter(|p| keys.contains(&format!("{p}conv1.weight").as_str()))
        .map(String::from)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no torchvision-layout ResNet in it (no `conv1.weight` beside `layer1.0.conv1.weight`); its first keys: {}",
            keys.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        )),
        many => Err(format!("it holds {} ResNets (prefixes {}); choose one with --prefix", many.len(), many.join(", "))),
    }
}

/// A ResNet's shape as read from its weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Shape {
    /// Depth.
    pub arch: Arch,
    /// Width multiplier (stem channels / 64).
    pub width: f32,
    /// Stem.
    pub stem: Stem,
    /// Selective kernels' ratio (0: none).
    pub sk_ratio: f32,
    /// Squeeze-excitation's ratio (0: none).
    pub se_ratio: f32,
}

/// Reads depth, width and stem from torchvision names (`prefix` removed) and shapes.
pub fn infer_shape(tensors: &BTreeMap<&str, &TensorData>) -> Result<Shape, String> {
    let stem_conv = tensors.get("conv1.weight").ok_or("no conv1.weight")?;
    let dims = stem_conv.shape().as_slice();
    let stem = match dims {
        [_, 3, 7, 7] => Stem::Imagenet,
        [_, 3, 3, 3] => Stem::Cifar,
        _ => return Err(format!("conv1.weight has shape {dims:?}; a ResNet stem is [C, 3, 7, 7] (ImageNet) or [C, 3, 3, 3] (CIFAR)")),
    };
    let mut depths = [0usize; 4];
    let mut bottleneck = false;
    for name in tensors.keys() {
        if let Some((stage, block, rest)) = block_name(name) {
            if (1..=4).contains(&stage) {
                depths[stage - 1] = depths[stage - 1].max(block + 1);
                bottleneck |= rest.starts_with("conv3.");
            }
        }
    }
    let arch = Arch::ALL
        .into_iter()
        .find(|a| a.layout() == (depths, bottleneck))
        .ok_or_else(|| format!("stages of {depths:?} {} blocks match no ResNet depth (18, 34, 50, 101, 152)", if bottleneck { "bottleneck" } else { "basic" }))?;
    Ok(Shape { arch, width: dims[0] as f32 / 64.0, stem, sk_ratio: 0.0, se_ratio: 0.0 })
}

/// `layerS.B.rest` → `(S, B, rest)`.
fn block_name(name: &str) -> Option<(usize, usize, &str)> {
    let rest = name.strip_prefix("layer")?;
    let (stage, rest) = rest.split_once('.')?;
    let (block, rest) = rest.split_once('.')?;
    Some((stage.parse().ok()?, block.parse().ok()?, rest))
}

/// Where a torchvision tensor goes in [`SimClr`]'s encoder.
#[derive(Debug, PartialEq)]
pub enum Target {
    /// This parameter or BN statistic of ours.
    Ours(String),
    /// The supervised classifier (`fc`): not part of the encoder.
    Classifier,
    /// Not a torchvision ResNet name.
    Unknown,
}

/// Maps torchvision's name of an encoder tensor to ours for a ResNet of shape `arch` (BN `weight`
/// and `bias` are our `gamma` and `beta`; `downsample.0`/`.1` our shortcut's `conv`/`bn`).
pub fn our_name(name: &str, arch: Arch) -> Target {
    let (depths, bottleneck) = arch.layout();
    let layer = |part: &str| -> Option<String> {
        let (module, param) = part.rsplit_once('.')?;
        let module = match module {
            "conv1" | "bn1" | "conv2" | "bn2" => module,
            "conv3" | "bn3" if bottleneck => module,
            "downsample.0" => "shortcut.conv",
            "downsample.1" => "shortcut.bn",
            _ => return None,
        };
        let param = match (module.contains("bn"), param) {
            (true, "weight") => "gamma",
            (true, "bias") => "beta",
            (true, "running_mean" | "running_var") | (false, "weight") => param,
            _ => return None,
        };
        Some(format!("{module}.{param}"))
    };
    if name.starts_with("fc.") {
        return Target::Classifier;
    }
    let mapped = match block_name(name) {
        Some((stage @ 1..=4, block, rest)) if block < depths[stage - 1] => {
            let index: usize = depths[..stage - 1].iter().sum::<usize>() + block;
            let variant = if bottleneck { "Bottleneck" } else { "Basic" };
            layer(rest).map(|p| format!("encoder.blocks.{index}.{variant}.{p}"))
        }
        Some(_) => None,
        None => layer(name).filter(|p| p.starts_with("conv1.") || p.starts_with("bn1.")).map(|p| format!("encoder.{p}")),
    };
    mapped.map_or(Target::Unknown, Target::Ours)
}

/// What the imported network expects, as `import` prints it and `import.json` records it: RGB in
/// [0, 1], no mean/std normalisation (the official code's convention and ours;
/// google-research/simclr#12), evaluated on the centre 87.5% of the shorter side resized to
/// --image-size as `resize` says (bicubic where the official code made it).
pub fn input_convention(resize: crate::augment::Resize) -> String {
    let how = match resize {
        crate::augment::Resize::Bilinear => "bilinearly",
        crate::augment::Resize::Bicubic => "bicubically as TensorFlow's resize_bicubic (the official code's)",
    };
    format!("RGB in [0, 1] without mean/std normalisation; evaluation takes the centre 87.5% of the shorter side, resized {how} to --image-size (224 for ImageNet models)")
}

/// What was imported, written as `OUT/import.json`.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// The weights file (a TensorFlow checkpoint's prefix).
    pub weights: String,
    /// Its SHA-256 (a TensorFlow checkpoint's: of its `.index`).
    pub weights_sha256: String,
    /// What wrote it: `torchvision` names or a `tensorflow` checkpoint of the official code.
    pub format: &'static str,
    /// The prefix removed from its keys.
    pub prefix: String,
    /// The encoder's shape, read from the weights.
    pub shape: Shape,
    /// The projection head read from the weights (none: drawn from --seed).
    pub head: Option<tensorflow::HeadShape>,
    /// The supervised head's `[in, classes]`, imported as the network's classifier (the probe).
    pub classifier: Option<Vec<usize>>,
    /// The layer it reads (0: h, k: head layer k).
    pub classifier_layer: Option<usize>,
    /// Tensors loaded into the network.
    pub tensors_loaded: usize,
    /// Tensors of the file left out (the classifier, anything outside the prefix, training state).
    pub ignored: Vec<String>,
    /// The input the network expects.
    pub input: String,
}

/// Reads the encoder in `weights` (under `prefix`, found by itself when `None`) into a network
/// shaped by the file and by the model flags `model` (head, image size; `--arch`/`--width`/`--stem`,
/// if given, must agree with the file), with the head drawn from `run`'s seed.
pub fn import(weights: &Path, prefix: Option<&str>, model: &ModelArgs, run: &RunArgs, device: &Device) -> Result<(SimClr, Config, ImportReport)> {
    let file = weights.display();
    let all = read_tensors(weights)?;
    let keys: Vec<&str> = all.keys().map(String::as_str).collect();
    let prefix = match prefix {
        Some(p) if all.contains_key(&format!("{p}conv1.weight")) => p.to_string(),
        Some(p) => bail!("--prefix {p:?}: {file} has no {p}conv1.weight; {}", find_prefix(&keys).map_or_else(|e| e, |p| format!("its ResNet is under --prefix {p:?}"))),
        None => find_prefix(&keys).map_err(|e| anyhow::anyhow!("--weights {file}: {e}"))?,
    };
    let encoder: BTreeMap<&str, &TensorData> = all.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix.as_str())?, v))).collect();
    let shape = infer_shape(&encoder).map_err(|e| anyhow::anyhow!("--weights {file}: {e}"))?;
    let mut cfg = Config { model: model.clone().resolve(), run: run.clone().resolve(), ..Config::default() };
    check_flag("--arch", model.arch.map(|a| a != shape.arch), &shape)?;
    check_flag("--width", model.width.map(|w| (w - shape.width).abs() > 1e-6), &shape)?;
    check_flag("--stem", model.stem.map(|s| s != Stem::Auto && s != shape.stem), &shape)?;
    check_flag("--sk-ratio", model.sk_ratio.map(|r| r != 0.0), &shape)?;
    check_flag("--se-ratio", model.se_ratio.map(|r| r != 0.0), &shape)?;
    cfg.model.arch = shape.arch;
    cfg.model.width = shape.width;
    cfg.model.stem = shape.stem;
    cfg.model.padding = crate::resnet::Padding::Torchvision;
    cfg.monitor.online_probe = false;

    let mut ignored: Vec<String> = all.keys().filter(|k| !k.starts_with(prefix.as_str())).cloned().collect();
    let mut unknown = Vec::new();
    let mut ours: BTreeMap<String, &TensorData> = BTreeMap::new();
    for (name, data) in &encoder {
        match our_name(name, shape.arch) {
            Target::Ours(n) => {
                ours.insert(n, data);
            }
            Target::Classifier => ignored.push(format!("{prefix}{name}")),
            Target::Unknown => unknown.push(format!("{prefix}{name}")),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "--weights {file}: {} tensors under the prefix {prefix:?} are not part of a torchvision {:?} (first: {}); other layouts (e.g. selective kernels) are not supported",
            unknown.len(),
            shape.arch,
            unknown.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
    }

    let model = cfg.model(cfg.model.image_size).init_seeded(cfg.run.seed, device);
    let model = load(model, &ours, "encoder.").with_context(|| format!("--weights {file}"))?;
    let report = ImportReport {
        weights: weights.display().to_string(),
        weights_sha256: sha256_file(weights)?,
        format: "torchvision",
        prefix,
        shape,
        head: None,
        classifier: None,
        classifier_layer: None,
        tensors_loaded: ours.len(),
        ignored,
        input: input_convention(cfg.augment.resize),
    };
    Ok((model, cfg, report))
}

/// How to read a TensorFlow checkpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct TfOptions {
    /// Load the moving averages (`ema_model/…`) instead of the weights.
    pub ema: bool,
    /// The layer the supervised head reads (0: h; SimCLR v2's fine-tuned models: 1).
    pub classifier_layer: usize,
}

/// Reads the official code's TensorFlow checkpoint `weights` (its prefix, `.index`, a data file
/// or its folder) into a network shaped by its variables: the encoder, the projection head where
/// the checkpoint has one (else drawn from `run`'s seed) and the supervised head as the probe,
/// reading `options.classifier_layer`. Model flags that shape the network must agree with the
/// checkpoint.
pub fn import_tensorflow(weights: &Path, options: TfOptions, model: &ModelArgs, run: &RunArgs, device: &Device) -> Result<(SimClr, Config, ImportReport)> {
    let ema = options.ema;
    let bundle = crate::tfcheckpoint::Bundle::open(weights)?;
    let file = bundle.prefix().display().to_string();
    let vars = tensorflow::network_variables(&bundle, ema)?;
    let (encoder, mut wanted) = tensorflow::infer_encoder(&vars).map_err(|e| anyhow::anyhow!("--weights {file}: {e}"))?;
    let h_dim = encoder.out_dim();
    let head = tensorflow::infer_head(&vars, h_dim).map_err(|e| anyhow::anyhow!("--weights {file}: {e}"))?;
    let shape = Shape { arch: encoder.arch, width: encoder.width, stem: encoder.stem, sk_ratio: encoder.sk_ratio, se_ratio: encoder.se_ratio };
    check_flag("--arch", model.arch.map(|a| a != shape.arch), &shape)?;
    check_flag("--width", model.width.map(|w| (w - shape.width).abs() > 1e-6), &shape)?;
    check_flag("--stem", model.stem.map(|s| s != Stem::Auto && s != shape.stem), &shape)?;
    check_flag("--sk-ratio", model.sk_ratio.map(|r| (r - shape.sk_ratio).abs() > 1e-6), &shape)?;
    check_flag("--se-ratio", model.se_ratio.map(|r| (r - shape.se_ratio).abs() > 1e-6), &shape)?;
    let mut cfg = Config { model: model.clone().resolve(), run: run.clone().resolve(), ..Config::default() };
    (cfg.model.arch, cfg.model.width, cfg.model.stem) = (shape.arch, shape.width, shape.stem);
    (cfg.model.sk_ratio, cfg.model.se_ratio, cfg.model.padding) = (shape.sk_ratio, shape.se_ratio, crate::resnet::Padding::Tensorflow);
    // The official code resizes with TF1's bicubic, in training and evaluation.
    cfg.augment.resize = crate::augment::Resize::Bicubic;
    if let Some((h, vars)) = &head {
        check_head_flags(model, h)?;
        (cfg.model.head, cfg.model.head_layers, cfg.model.proj_dim) = (h.mode, h.layers, h.proj_dim);
        wanted.extend(vars.iter().cloned());
    }
    let classifier = tensorflow::classifier(&vars);
    cfg.monitor.online_probe = classifier.is_some();
    if let Some(kernel) = &classifier {
        let layer = options.classifier_layer;
        let classes = classifier_classes(kernel, layer, h_dim, head.as_ref().map(|(h, _)| h)).with_context(|| format!("--weights {file}"))?;
        (cfg.monitor.num_classes, cfg.monitor.probe_layer) = (classes, layer);
        wanted.extend(tensorflow::classifier_variables(kernel[0], classes));
    }

    let (mut ours, read) = tensorflow::read(&bundle, &wanted, ema)?;
    if let Some((h, _)) = &head {
        // The last layer's BN has no β (`center=False`): ours stays at zero.
        ours.insert(format!("head.layers.{}.bn.beta", h.layers - 1), TensorData::new(vec![0f32; h.proj_dim], [h.proj_dim]));
    }
    let net = cfg.model(cfg.model.image_size).init_seeded(cfg.run.seed, device);
    let scope = if head.is_some() { "" } else { "encoder." };
    let refs: BTreeMap<String, &TensorData> = ours.iter().map(|(k, v)| (k.clone(), v)).collect();
    let net = load(net, &refs, scope).with_context(|| format!("--weights {file}"))?;
    let ignored = bundle.entries().keys().filter(|n| !read.contains(n.as_str())).cloned().collect();
    let report = ImportReport {
        weights: file,
        weights_sha256: sha256_file(&crate::tfcheckpoint::index_path(bundle.prefix()))?,
        format: "tensorflow",
        prefix: String::new(),
        shape,
        head: head.map(|(h, _)| h),
        classifier_layer: classifier.is_some().then_some(options.classifier_layer),
        classifier,
        tensors_loaded: ours.len(),
        ignored,
        input: input_convention(cfg.augment.resize),
    };
    Ok((net, cfg, report))
}

/// The head flags, where given, must be the checkpoint's head `h`.
fn check_head_flags(model: &ModelArgs, h: &tensorflow::HeadShape) -> Result<()> {
    for (flag, differs) in [
        ("--head", model.head.is_some_and(|m| m != h.mode)),
        ("--head-layers", model.head_layers.is_some_and(|l| l != h.layers)),
        ("--proj-dim", model.proj_dim.is_some_and(|d| d != h.proj_dim)),
    ] {
        if differs {
            bail!("{flag} disagrees with the checkpoint's head ({:?}, {} layers, z of {}); leave it out", h.mode, h.layers, h.proj_dim);
        }
    }
    Ok(())
}

/// The classes of the supervised head `kernel` (`[in, classes]`) read at `layer` of a network
/// with features h of `h_dim` and the projection head `head`, whose output there must have `in`
/// dimensions.
fn classifier_classes(kernel: &[usize], layer: usize, h_dim: usize, head: Option<&tensorflow::HeadShape>) -> Result<usize> {
    let layers = head.map_or(0, |h| h.layers);
    let dim = match (layer, head) {
        (0, _) => h_dim,
        (k, Some(h)) if k == h.layers => h.proj_dim,
        (k, Some(_)) if k < layers => h_dim,
        _ => bail!("--classifier-layer {layer}: the network has {layers} head layers (0 is h)"),
    };
    let [din, classes] = kernel[..] else { bail!("head_supervised/linear_layer/dense/kernel has shape {kernel:?}, not [in, classes]") };
    if din != dim {
        bail!("--classifier-layer {layer}: that layer has {dim} dimensions, but the supervised head reads {din} (head_supervised/linear_layer/dense/kernel is {kernel:?}); choose the layer it was trained on");
    }
    Ok(classes)
}

fn check_flag(flag: &str, differs: Option<bool>, shape: &Shape) -> Result<()> {
    if differs == Some(true) {
        bail!(
            "{flag} disagrees with the weights, which are a {:?} of width {} with the {:?} stem (sk_ratio {}, se_ratio {}); leave it out",
            shape.arch,
            shape.width,
            shape.stem,
            shape.sk_ratio,
            shape.se_ratio
        );
    }
    Ok(())
}

/// Loads `tensors` (by our names) into `model`; every tensor whose path starts with `scope` must
/// be given, with its shape.
fn load(mut model: SimClr, tensors: &BTreeMap<String, &TensorData>, scope: &str) -> Result<SimClr> {
    checkpoint::ensure_finite(tensors.iter().map(|(name, data)| (name.as_str(), data.dtype(), data.as_bytes())), "the weights")?;
    let views = tensors
        .iter()
        .map(|(name, data)| Ok((name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, data.shape().to_vec(), data.as_bytes())?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, None)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| anyhow::anyhow!("cannot load the encoder ({e})"))?;
    let missing: Vec<&String> = result.missing.iter().map(|(path, _)| path).filter(|p| p.starts_with(scope)).collect();
    if !result.errors.is_empty() || !missing.is_empty() || !result.unused.is_empty() {
        bail!(
            "does not fit a ResNet of the shape its stem and stages imply (wrong shapes: {:?}; missing: {:?}; unexpected: {:?})",
            result.errors.iter().take(3).collect::<Vec<_>>(),
            missing.iter().take(3).collect::<Vec<_>>(),
            result.unused.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(model)
}

/// `simclr import`: imports `weights` and writes `OUT/model.safetensors` (atomically),
/// `OUT/config.toml` and `OUT/import.json`. Returns that report and the folder `OUT`.
/// A TensorFlow checkpoint (see [`crate::tfcheckpoint::is_checkpoint`]) is read by
/// [`import_tensorflow`] with `tf_options`, anything else by [`import`].
pub fn run(weights: &Path, prefix: Option<&str>, tf_options: TfOptions, model: &ModelArgs, run: &RunArgs, device: &Device) -> Result<(ImportReport, PathBuf)> {
    let tf = crate::tfcheckpoint::is_checkpoint(weights);
    if !tf && (tf_options.ema || tf_options.classifier_layer > 0) {
        let flag = if tf_options.ema { "--ema" } else { "--classifier-layer" };
        bail!("{flag}: {} is not a TensorFlow checkpoint (no {}.index); {flag} is for the official code's checkpoints", weights.display(), weights.display());
    }
    if tf && prefix.is_some() {
        bail!("--prefix: a TensorFlow checkpoint's variables are found by their names; leave --prefix out");
    }
    let (model, mut cfg, report) = if tf { import_tensorflow(weights, tf_options, model, run, device)? } else { import(weights, prefix, model, run, device)? };
    cfg.validate()?;
    let out: PathBuf = run.out.clone().unwrap_or_else(|| PathBuf::from("runs/imported"));
    cfg.run.out = out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("--out {}: cannot create the folder; choose a writable path", out.display()))?;
    let tmp = out.join(".model.safetensors.tmp");
    checkpoint::save_model(&model, &tmp)?;
    let cannot = || format!("--out {}: cannot write into the folder", out.display());
    std::fs::write(out.join("config.toml"), cfg.to_toml()).with_context(cannot)?;
    std::fs::write(out.join("import.json"), serde_json::to_string_pretty(&report)?).with_context(cannot)?;
    std::fs::rename(&tmp, out.join("model.safetensors")).with_context(cannot)?;
    crate::manifest::seal(&out, &["model.safetensors", "config.toml", "import.json"])?;
    Ok((report, out))
}
