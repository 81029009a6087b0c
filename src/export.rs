//! Our encoder out, for other tools (`simclr export`). `--format torchvision`: the encoder's weights
//! and BN statistics as a `.safetensors` file under torchvision's ResNet names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`, …, with the `num_batches_tracked`
//! counters torchvision's BN keeps), so `torchvision.models.resnet18/50()` with `fc = Identity()`
//! loads it with `strict=True` (for the CIFAR stem, after `conv1 = Conv2d(3, 64, 3, 1, 1,
//! bias=False)` and `maxpool = Identity()`; at a width other than 1, a torchvision-layout ResNet
//! with every channel count scaled). The mapping is [`crate::import::our_name`] read backwards, so
//! export and import are each other's inverse.
//!
//! The network takes `[N, 3, H, W]` RGB in [0, 1], without mean/std normalisation, as our encoder
//! saw during pretraining; the file's metadata says so, with the architecture and stem.

use crate::checkpoint;
use crate::import::{our_name, Target};
use crate::resnet::{Arch, Stem};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What `simclr export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The encoder under torchvision's ResNet names, as `.safetensors`.
    Torchvision,
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

/// Writes the encoder of the verified checkpoint (or run folder) `checkpoint` to `out` in `format`;
/// returns a one-line summary with how to load it.
pub fn run(checkpoint_arg: &Path, format: Format, out: &Path) -> Result<String> {
    let Format::Torchvision = format;
    let dir = checkpoint::resolve(checkpoint_arg)?.dir;
    let cfg = checkpoint::read_config(&dir)?;
    let size = if cfg.model.image_size > 0 { cfg.model.image_size } else { 224 };
    let (arch, stem) = (cfg.model.arch, cfg.model.stem.resolve(size));
    let bytes = std::fs::read(dir.join("model.safetensors")).with_context(|| format!("reading {}", dir.display()))?;
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
    let stem_name = match stem {
        Stem::Cifar => "cifar (conv1 3x3 stride 1, no max-pool)",
        _ => "imagenet (conv1 7x7 stride 2, max-pool)",
    };
    let metadata = HashMap::from([
        ("format".to_string(), "torchvision ResNet state dict (fc left out)".to_string()),
        ("arch".to_string(), format!("{arch:?}").to_lowercase()),
        ("width".to_string(), cfg.model.width.to_string()),
        ("stem".to_string(), stem_name.to_string()),
        ("input".to_string(), "[N, 3, H, W] RGB in [0, 1], no mean/std normalisation".to_string()),
        ("checkpoint".to_string(), dir.display().to_string()),
    ]);
    let tensors = views.len();
    let data = safetensors::serialize(views, Some(metadata)).context("serialising the export")?;
    let tmp = out.with_extension("safetensors.tmp");
    std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, out)).with_context(|| format!("--out {}: cannot write the file", out.display()))?;
    let arch_name = format!("{arch:?}").to_lowercase();
    let stem_channels = tensor_of("conv1.weight").map_or(64, |t| t.shape()[0]);
    let stem_fix = match stem {
        Stem::Cifar => format!("model.conv1 = nn.Conv2d(3, {stem_channels}, 3, 1, 1, bias=False); model.maxpool = nn.Identity(); "),
        _ => String::new(),
    };
    Ok(format!(
        "exported the {arch_name} encoder (width {}, {stem_name}) of {} as {tensors} tensors under torchvision's names into {}; in PyTorch: model = torchvision.models.{arch_name}(); {stem_fix}model.fc = nn.Identity(); model.load_state_dict(safetensors.torch.load_file(\"{}\"), strict=True)",
        cfg.model.width,
        dir.display(),
        out.display(),
        out.display()
    ))
}
