//! Our encoder out, for other tools (`simclr export`). `--format torchvision`: the encoder's weights
//! and BN statistics as a `.safetensors` file under torchvision's ResNet names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`, …, with the `num_batches_tracked`
//! counters torchvision's BN keeps), so `torchvision.models.resnet18/50()` with `fc = Identity()`
//! loads it with `strict=True` (for the CIFAR stem, after `conv1 = Conv2d(3, 64, 3, 1, 1,
//! bias=False)` and `maxpool = Identity()`; at a width other than 1, a torchvision-layout ResNet
//! with every channel count scaled). The mapping is [`crate::import::our_name`] read backwards, so
//! export and import are each other's inverse.
//!
//! `--format onnx`: the network up to `--layer` (h: the encoder; z or head:K: the encoder and the
//! head up to layer K) in inference mode (BN with its running statistics) as an ONNX model (opset
//! 18, weights embedded, batch axis dynamic, height and width those of pretraining), recorded by
//! `burn-onnx`'s exporter from the very forward pass our evaluation runs.
//!
//! The network takes `[N, 3, H, W]` RGB in [0, 1], without mean/std normalisation, as our encoder
//! saw during pretraining; each file's metadata says so, with the architecture and stem.

use crate::checkpoint;
use crate::config::Config;
use crate::eval::Layer;
use crate::import::{our_name, Target};
use crate::model::SimClr;
use crate::resnet::{Arch, Padding, Stem};
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What `simclr export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// The encoder under torchvision's ResNet names, as `.safetensors`.
    Torchvision,
    /// The network up to --layer as an ONNX model (opset 18, dynamic batch axis).
    Onnx,
}

impl Format {
    /// The output file when `--out` is not given.
    pub fn default_out(self) -> &'static str {
        match self {
            Format::Torchvision => "encoder.safetensors",
            Format::Onnx => "encoder.onnx",
        }
    }
}

/// torchvision's names of the encoder tensors of a ResNet of shape `arch`, in its state-dict order
/// (without the `num_batches_tracked` counters and the classifier); the shortcut's (`downsample`)
/// only where `has_shortcut(stage, block)`.
fn torchvision_names(arch: Arch, has_shortcut: impl Fn(usize, usize) -> bool) -> Vec<String> {
    let (depths, bottleneck) = arch.layout();
    let conv_bn = |prefix: &str, conv: &str, bn: &str| {
        let mut names = vec![format!("{prefix}{conv}.weight")];
        names.extend(["weight", "bias", "running_mean", "running_var"].map(|p| format!("{prefix}{bn}.{p}")));
        names
    };
    let mut names = conv_bn("", "conv1", "bn1");
    for (s, &depth) in depths.iter().enumerate() {
        for b in 0..depth {
            let prefix = format!("layer{}.{b}.", s + 1);
            for k in 1..=(if bottleneck { 3 } else { 2 }) {
                names.extend(conv_bn(&prefix, &format!("conv{k}"), &format!("bn{k}")));
            }
            if has_shortcut(s + 1, b) {
                names.extend(conv_bn(&prefix, "downsample.0", "downsample.1"));
            }
        }
    }
    names
}

/// What `simclr export` wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The checkpoint folder exported.
    pub checkpoint: PathBuf,
    /// The file written.
    pub file: PathBuf,
    /// What it holds.
    pub holds: Holds,
}

/// The network in an exported file.
#[derive(Clone, Debug)]
pub enum Holds {
    /// ONNX: the network up to `layer`, input `input` `[N, 3, size, size]`, output `output`.
    Onnx { layer: Layer, image_size: usize, output: String },
    /// The encoder's `tensors` under torchvision's names (its max-pool padded as `padding`).
    Torchvision { arch: Arch, width: f32, stem: Stem, stem_channels: usize, tensors: usize, padding: Padding },
}

impl Holds {
    /// PyTorch code that builds the torchvision model of a torchvision export and loads `file` into it
    /// (strict); `None` for ONNX.
    pub fn pytorch_code(&self, file: &Path) -> Option<String> {
        let Holds::Torchvision { arch, stem, stem_channels, padding, .. } = self else { return None };
        let arch_name = format!("{arch:?}").to_lowercase();
        let stem_fix = match (stem, padding) {
            (Stem::Cifar, _) => format!("model.conv1 = nn.Conv2d(3, {stem_channels}, 3, 1, 1, bias=False); model.maxpool = nn.Identity(); "),
            // TensorFlow's SAME max-pool where its input side is even (112 px for 224 px images);
            // after the stem's ReLU, zero padding is the same as −∞.
            (_, Padding::Tensorflow) => "model.maxpool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2)); ".to_string(),
            _ => String::new(),
        };
        Some(format!(
            "model = torchvision.models.{arch_name}(); {stem_fix}model.fc = nn.Identity(); model.load_state_dict(safetensors.torch.load_file(\"{}\"), strict=True)",
            file.display()
        ))
    }
}

/// Writes the network of the verified checkpoint (or run folder) `checkpoint` to `out` in `format`
/// (torchvision: the encoder; ONNX: up to `layer`).
pub fn run(checkpoint_arg: &Path, format: Format, layer: Layer, out: &Path) -> Result<Exported> {
    match format {
        Format::Torchvision if layer != Layer::H => bail!("--layer {layer}: --format torchvision holds the encoder only (h); use --format onnx for the head"),
        Format::Torchvision => torchvision(checkpoint_arg, out),
        Format::Onnx => onnx(checkpoint_arg, layer, out),
    }
}

/// The layers of a (resolved) stem, as the exports describe them.
pub fn stem_layout(stem: Stem) -> &'static str {
    match stem {
        Stem::Cifar => "cifar (conv1 3x3 stride 1, no max-pool)",
        _ => "imagenet (conv1 7x7 stride 2, max-pool)",
    }
}

/// The metadata every export carries: what the input is, which network and where it came from.
fn describe(cfg: &Config, stem: Stem, dir: &Path) -> Vec<(String, String)> {
    let m = &cfg.model;
    let mut meta = vec![
        ("arch".into(), format!("{:?}", m.arch).to_lowercase()),
        ("width".into(), m.width.to_string()),
        ("stem".into(), if m.sk_ratio > 0.0 && stem == Stem::Imagenet { "imagenet deep (three 3x3 convs, the first stride 2; max-pool)" } else { stem_layout(stem) }.into()),
        ("input".into(), "[N, 3, H, W] RGB in [0, 1], no mean/std normalisation".into()),
        ("checkpoint".into(), dir.display().to_string()),
    ];
    if m.padding == Padding::Tensorflow && stem == Stem::Imagenet {
        meta.push(("max_pool_padding".into(), "tensorflow SAME (an even side padded at the bottom/right only)".into()));
    }
    for (key, ratio) in [("sk_ratio", m.sk_ratio), ("se_ratio", m.se_ratio)] {
        if ratio > 0.0 {
            meta.push((key.into(), ratio.to_string()));
        }
    }
    meta
}

/// Writes `bytes` to `out` through a temporary file and a rename, so a failed write leaves no half file.
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, out)).with_context(|| format!("--out {}: cannot write the file", out.display()))
}

/// `--format onnx`: the network up to `layer`, recorded by `burn-onnx` from our inference forward
/// pass at two batch sizes (so the batch axis is symbolic), with [`describe`]'s metadata added.
fn onnx(checkpoint_arg: &Path, layer: Layer, out: &Path) -> Result<Exported> {
    use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
    use onnx_ir::Message;
    let dir = checkpoint::resolve(checkpoint_arg)?.dir;
    let cfg = checkpoint::read_config(&dir)?;
    let size = if cfg.model.image_size > 0 { cfg.model.image_size } else { 224 };
    let device = Device::default();
    let mut model = checkpoint::load_model(cfg.model(size).init(&device), &dir.join("model.safetensors"))?;
    let keep = layer.index(model.head.len())?;
    model.head = model.head.truncated(keep);
    model.probe = None;
    let model = model.valid();
    let sample = |n| Tensor::<4>::zeros([n, 3, size, size], &device);
    let axes = [InputSpec::new([AxisSpec::dynamic("batch"), AxisSpec::Static, AxisSpec::Static, AxisSpec::Static])];
    let forward = |m: &SimClr, x: Tensor<4>| m.forward(x).pop().expect("h is always there");
    let exported = OnnxExporter::new()
        .export_dynamic(&model, sample(1), sample(2), &axes, forward)
        .map_err(|e| anyhow::anyhow!("burn-onnx could not export the network: {e}"))?;
    let mut proto = onnx_ir::ModelProto::parse_from_bytes(exported.as_bytes()).context("reading back burn-onnx's model")?;
    let output = layer.to_string().replace(':', "_");
    let graph = proto.graph.mut_or_insert_default();
    let (input_name, output_name) = (graph.input[0].name.clone(), graph.output[0].name.clone());
    rename(graph, &input_name, "input");
    rename(graph, &output_name, &output);
    scalar_pad_values(graph);
    proto.producer_name = "simclr".into();
    proto.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut meta = describe(&cfg, cfg.model.stem.resolve(size), &dir);
    meta.push(("output".into(), format!("{output}: [N, D], the representation {layer}")));
    meta.push(("image_size".into(), size.to_string()));
    for (key, value) in meta {
        proto.metadata_props.push(Default::default());
        let entry = proto.metadata_props.last_mut().expect("just pushed");
        (entry.key, entry.value) = (key, value);
    }
    write_atomically(out, &proto.write_to_bytes().context("serialising the ONNX model")?)?;
    Ok(Exported { checkpoint: dir, file: out.to_path_buf(), holds: Holds::Onnx { layer, image_size: size, output } })
}

/// Makes every `Pad` node's `constant_value` the scalar ONNX specifies: burn-onnx 0.22 writes it
/// with shape `[1]`, which ONNX Runtime accepts and tract refuses. (Our padded poolings, of
/// networks with selective kernels or TensorFlow's padding, pad explicitly.)
fn scalar_pad_values(graph: &mut onnx_ir::GraphProto) {
    let values: std::collections::HashSet<String> = graph.node.iter().filter(|n| n.op_type == "Pad").filter_map(|n| n.input.get(2).cloned()).collect();
    for value in graph.initializer.iter_mut().filter(|t| values.contains(&t.name) && t.dims == [1]) {
        value.dims.clear();
    }
}

/// Renames the value `from` of `graph` (an input, output or node edge) to `to`.
fn rename(graph: &mut onnx_ir::GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for name in node.input.iter_mut().chain(node.output.iter_mut()).filter(|n| *n == from) {
            *name = to.into();
        }
    }
    for value in graph.input.iter_mut().chain(graph.output.iter_mut()).filter(|v| v.name == from) {
        value.name = to.into();
    }
}

/// `--format torchvision`.
fn torchvision(checkpoint_arg: &Path, out: &Path) -> Result<Exported> {
    let dir = checkpoint::resolve(checkpoint_arg)?.dir;
    let cfg = checkpoint::read_config(&dir)?;
    let size = if cfg.model.image_size > 0 { cfg.model.image_size } else { 224 };
    let (arch, stem) = (cfg.model.arch, cfg.model.stem.resolve(size));
    if cfg.model.sk_ratio > 0.0 || cfg.model.se_ratio > 0.0 {
        bail!(
            "{}: the network has selective kernels or squeeze-excitation (--sk-ratio {}, --se-ratio {}), which torchvision's ResNets have not; use --format onnx",
            dir.display(),
            cfg.model.sk_ratio,
            cfg.model.se_ratio
        );
    }
    let bytes = crate::files::read(&dir.join("model.safetensors"), crate::files::ARRAY).with_context(|| format!("reading {}", dir.display()))?;
    let ours = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}/model.safetensors", dir.display()))?;
    let ours: BTreeMap<String, safetensors::tensor::TensorView> = ours.tensors().into_iter().filter(|(k, _)| k.starts_with("encoder.")).collect();

    let tensor_of = |tv: &str| match our_name(tv, arch) {
        Target::Ours(name) => ours.get(&name),
        _ => None,
    };
    let names = torchvision_names(arch, |s, b| tensor_of(&format!("layer{s}.{b}.downsample.0.weight")).is_some());
    // One counter per BN, as torchvision's state dict has them (PyTorch's int64 scalar).
    let counter = 0i64.to_le_bytes();
    let mut views = Vec::new();
    let mut used = 0;
    for tv in &names {
        let Some(t) = tensor_of(tv) else {
            bail!("{}: the encoder has no tensor for torchvision's {tv}; it is not a {arch:?} of our layout", dir.display());
        };
        views.push((tv.clone(), safetensors::tensor::TensorView::new(t.dtype(), t.shape().to_vec(), t.data())?));
        used += 1;
        if let Some(bn) = tv.strip_suffix(".running_var") {
            views.push((format!("{bn}.num_batches_tracked"), safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![], &counter)?));
        }
    }
    if used != ours.len() {
        bail!("{}: {} encoder tensors have no torchvision name", dir.display(), ours.len() - used);
    }
    let mut metadata: HashMap<String, String> = describe(&cfg, stem, &dir).into_iter().collect();
    metadata.insert("format".into(), "torchvision ResNet state dict (fc left out)".into());
    let tensors = views.len();
    write_atomically(out, &safetensors::serialize(views, Some(metadata)).context("serialising the export")?)?;
    let stem_channels = tensor_of("conv1.weight").map_or(64, |t| t.shape()[0]);
    Ok(Exported { checkpoint: dir, file: out.to_path_buf(), holds: Holds::Torchvision { arch, width: cfg.model.width, stem, stem_channels, tensors, padding: cfg.model.padding } })
}
