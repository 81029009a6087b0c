//! Google's released SimCLR checkpoints, read as TensorFlow wrote them ([`crate::tfcheckpoint`]):
//! the TF1 checkpoints of SimCLR v1 (`model.ckpt-225206`) and v2 (`model.ckpt-250228`), and any
//! checkpoint of the official code (`run.py`, TF1).
//!
//! The official code builds its layers with `tf.layers`, so variables are named by creation
//! order: `base_model/conv2d[_N]/kernel` and `base_model/batch_normalization[_N]/{gamma, beta,
//! moving_mean, moving_variance}`, numbered stem first, then block by block — the projection
//! shortcut first, then the 1×1, the 3×3 (with selective kernels: the 3×3 to two branches, the
//! attention's 1×1, its BN, the 1×1 to the mixing logits), the last 1×1, and squeeze-excitation's two
//! biased 1×1 convolutions. The projection head is `head_contrastive/nl_J/dense/kernel` and
//! `head_contrastive/nl_J/batch_normalization/…` (the last without β; `l_0` for a linear head);
//! the supervised head `head_supervised/linear_layer/dense/{kernel, bias}`, read into our probe
//! (which layer it reads is not in the checkpoint: `--classifier-layer`).
//!
//! Depth, width, stem, selective kernels and squeeze-excitation are read from the variables: each
//! candidate network's expected list (names and shapes) is compared with the checkpoint's, and
//! exactly one must match; otherwise the error names the closest candidate's first missing, extra
//! or misshaped variable. `global_step`, optimiser slots (`…/Momentum`) and the moving averages
//! (`ema_model/…`, `…/ExponentialMovingAverage`) are skipped; `ema` loads the moving averages
//! instead of the weights.
//!
//! The official code makes a projection shortcut in the first block of every stage, also where
//! the shape does not change (ResNet-18/34's first stage), which this encoder does not have:
//! checkpoints of those depths are refused by name. Every released model is ResNet-50 or deeper.

use crate::resnet::{scaled, se_width, sk_width, Arch, Padding, ResNetConfig, Stem};
use crate::tfcheckpoint::Bundle;
use anyhow::{bail, Result};
use burn::tensor::TensorData;
use std::collections::BTreeMap;

/// How a TensorFlow variable becomes ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A convolution kernel `[kh, kw, in, out]` → `[out, in, kh, kw]`.
    Conv,
    /// A dense kernel `[in, out]`, a linear layer's as it is.
    Linear,
    /// A vector (BN parameter or statistic, bias) as it is.
    Vector,
}

/// One variable a network expects: TensorFlow's name and shape, our name, the layout change.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// TensorFlow's name.
    pub tf: String,
    /// TensorFlow's shape.
    pub shape: Vec<usize>,
    /// Our parameter's path in [`crate::model::SimClr`].
    pub ours: String,
    /// How the values are laid out.
    pub layout: Layout,
}

/// The variables of the official code's network in creation order.
struct Names {
    vars: Vec<Variable>,
    convs: usize,
    norms: usize,
}

impl Names {
    fn numbered(base: &str, n: usize) -> String {
        if n == 0 { format!("base_model/{base}") } else { format!("base_model/{base}_{n}") }
    }

    fn push(&mut self, tf: String, shape: Vec<usize>, ours: String, layout: Layout) {
        self.vars.push(Variable { tf, shape, ours, layout });
    }

    /// A `tf.layers.conv2d` (kernel `k`, `cin` → `cout`, with a bias if `bias`), ours at `ours`.
    fn conv(&mut self, k: usize, cin: usize, cout: usize, ours: &str, bias: bool) {
        let name = Self::numbered("conv2d", self.convs);
        self.convs += 1;
        self.push(format!("{name}/kernel"), vec![k, k, cin, cout], format!("{ours}.weight"), Layout::Conv);
        if bias {
            self.push(format!("{name}/bias"), vec![cout], format!("{ours}.bias"), Layout::Vector);
        }
    }

    /// A `tf.layers.batch_normalization` of `c` channels, ours at `ours`.
    fn bn(&mut self, c: usize, ours: &str) {
        let name = Self::numbered("batch_normalization", self.norms);
        self.norms += 1;
        bn_vars(self, &name, c, ours, true);
    }
}

fn bn_vars(names: &mut Names, tf: &str, c: usize, ours: &str, center: bool) {
    let params: &[(&str, &str)] = if center {
        &[("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")]
    } else {
        &[("gamma", "gamma"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")]
    };
    for (theirs, mine) in params {
        names.push(format!("{tf}/{theirs}"), vec![c], format!("{ours}.{mine}"), Layout::Vector);
    }
}

/// The official code's variables for the encoder `cfg` (a bottleneck depth, ImageNet or CIFAR
/// stem), in creation order, with our names.
pub fn encoder_variables(cfg: &ResNetConfig) -> Vec<Variable> {
    let mut n = Names { vars: Vec::new(), convs: 0, norms: 0 };
    let sk = cfg.sk_ratio > 0.0;
    let stem = scaled(64, cfg.width);
    match (cfg.stem, sk) {
        (Stem::Imagenet, true) => {
            let half = (stem / 2).max(1);
            n.conv(3, 3, half, "encoder.conv1", false);
            n.bn(half, "encoder.bn1");
            n.conv(3, half, half, "encoder.deep_stem.conv2", false);
            n.bn(half, "encoder.deep_stem.bn2");
            n.conv(3, half, stem, "encoder.deep_stem.conv3", false);
            n.bn(stem, "encoder.deep_stem.bn3");
        }
        (Stem::Imagenet, false) => {
            n.conv(7, 3, stem, "encoder.conv1", false);
            n.bn(stem, "encoder.bn1");
        }
        _ => {
            n.conv(3, 3, stem, "encoder.conv1", false);
            n.bn(stem, "encoder.bn1");
        }
    }
    let (depths, _) = cfg.arch.layout();
    let mut cin = stem;
    let mut index = 0;
    for (stage, &depth) in depths.iter().enumerate() {
        let planes = scaled(64 << stage, cfg.width);
        let cout = 4 * planes;
        for block in 0..depth {
            let b = format!("encoder.blocks.{index}.Bottleneck");
            if block == 0 {
                n.conv(1, cin, cout, &format!("{b}.shortcut.conv"), false);
                n.bn(cout, &format!("{b}.shortcut.bn"));
            }
            n.conv(1, cin, planes, &format!("{b}.conv1"), false);
            n.bn(planes, &format!("{b}.bn1"));
            let branches = if sk { 2 * planes } else { planes };
            n.conv(3, planes, branches, &format!("{b}.conv2"), false);
            n.bn(branches, &format!("{b}.bn2"));
            if sk {
                let mid = sk_width(planes, cfg.sk_ratio);
                n.conv(1, planes, mid, &format!("{b}.sk.reduce"), false);
                n.bn(mid, &format!("{b}.sk.bn"));
                n.conv(1, mid, 2 * planes, &format!("{b}.sk.mix"), false);
            }
            n.conv(1, planes, cout, &format!("{b}.conv3"), false);
            n.bn(cout, &format!("{b}.bn3"));
            if cfg.se_ratio > 0.0 {
                let mid = se_width(planes, cfg.se_ratio);
                n.conv(1, cout, mid, &format!("{b}.se.reduce"), true);
                n.conv(1, mid, cout, &format!("{b}.se.expand"), true);
            }
            cin = cout;
            index += 1;
        }
    }
    n.vars
}

/// The projection head the checkpoint holds: mode, layers and the dimension of z.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct HeadShape {
    /// Head kind (nonlinear `nl_J` layers, or one linear `l_0`).
    pub mode: crate::head::HeadMode,
    /// Layers.
    pub layers: usize,
    /// Dimension of z.
    pub proj_dim: usize,
}

/// The official code's projection head variables for features of dimension `h_dim`.
pub fn head_variables(head: &HeadShape, h_dim: usize) -> Vec<Variable> {
    let mut n = Names { vars: Vec::new(), convs: 0, norms: 0 };
    let linear = head.mode == crate::head::HeadMode::Linear;
    for j in 0..head.layers {
        let last = j + 1 == head.layers;
        let scope = if linear { "head_contrastive/l_0".to_string() } else { format!("head_contrastive/nl_{j}") };
        let dout = if last { head.proj_dim } else { h_dim };
        let ours = format!("head.layers.{j}");
        n.push(format!("{scope}/dense/kernel"), vec![h_dim, dout], format!("{ours}.linear.weight"), Layout::Linear);
        bn_vars(&mut n, &format!("{scope}/batch_normalization"), dout, &format!("{ours}.bn"), !last);
    }
    n.vars
}

/// Whether a variable is training state, not the network: the step counter, optimiser slots and
/// (unless they are what is loaded) the moving averages.
fn is_state(name: &str) -> bool {
    name == "global_step" || name.ends_with("/Momentum") || name.contains("/Momentum/") || name.ends_with("/ExponentialMovingAverage")
}

/// The variables that make the network: `ema_model/X` in place of `X` when `ema`.
pub fn network_variables(bundle: &Bundle, ema: bool) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut out = BTreeMap::new();
    let mut averages = 0;
    for (name, entry) in bundle.entries() {
        if is_state(name) {
            continue;
        }
        match (name.strip_prefix("ema_model/"), ema) {
            (Some(inner), true) => {
                averages += 1;
                out.insert(inner.to_string(), entry.shape.clone());
            }
            (Some(_), false) => {}
            (None, true) => {
                out.entry(name.clone()).or_insert_with(|| entry.shape.clone());
            }
            (None, false) => {
                out.insert(name.clone(), entry.shape.clone());
            }
        }
    }
    if ema && averages == 0 {
        bail!("--ema: {} holds no moving averages (no ema_model/ variables); leave --ema out", bundle.prefix().display());
    }
    Ok(out)
}

/// Every encoder the official code builds whose stem matches the first convolution `[k, k, 3, c]`.
fn candidates(first: &[usize], vars: &BTreeMap<String, Vec<usize>>) -> Vec<ResNetConfig> {
    let [k, _, 3, c] = first else { return vec![] };
    let mut out = Vec::new();
    for arch in [Arch::Resnet50, Arch::Resnet101, Arch::Resnet152] {
        for (stem, sk, stem_width) in [(Stem::Imagenet, false, *c), (Stem::Cifar, false, *c), (Stem::Imagenet, true, 2 * c), (Stem::Cifar, true, *c)] {
            let kernel = if stem == Stem::Imagenet && !sk { 7 } else { 3 };
            if *k != kernel {
                continue;
            }
            let width = stem_width as f32 / 64.0;
            let sk_ratio = if sk { ratio(vars, "sk", width, crate::resnet::SK_MIN_DIM) } else { 0.0 };
            for se in [false, true] {
                let se_ratio = if se { ratio(vars, "se", width, 1) } else { 0.0 };
                let cfg = ResNetConfig { arch, width, stem, zero_init_residual: false, sk_ratio, se_ratio, padding: Padding::Tensorflow };
                out.push(cfg);
            }
        }
    }
    out
}

/// The ratio (sk or se) that reproduces the attention widths, read off the last stage, whose
/// planes are the largest (`512·width`): its selective kernels' first 1×1 kernel is
/// `[1, 1, planes, mid]` (mid ≤ planes, unlike the last 1×1's `4·planes`; the attention's second
/// 1×1 may also start from `planes` channels where mid is the floor 32, but ends in `2·planes`), its
/// squeeze-excitation's first `[1, 1, 4·planes, mid]` with a bias. Where the floor `min` hides the
/// ratio, SimCLR v2's 0.0625 (sk) or 0.25 (se) if it gives the same widths.
fn ratio(vars: &BTreeMap<String, Vec<usize>>, which: &str, width: f32, min: usize) -> f32 {
    let planes = scaled(512, width);
    let (input, default) = if which == "sk" { (planes, 0.0625) } else { (4 * planes, 0.25) };
    let mids = vars.iter().filter(|(n, s)| {
        let biased = vars.contains_key(&n.replace("/kernel", "/bias"));
        n.starts_with("base_model/conv2d") && n.ends_with("/kernel") && s.len() == 4 && s[..3] == [1, 1, input] && (if which == "sk" { s[3] <= planes && !biased } else { biased })
    });
    match mids.map(|(_, s)| s[3]).max() {
        Some(mid) if mid > min => mid as f32 / planes as f32,
        _ => default,
    }
}

/// The network a checkpoint's variables describe: the one candidate whose variables are exactly
/// the checkpoint's under `base_model/`.
pub fn infer_encoder(vars: &BTreeMap<String, Vec<usize>>) -> Result<(ResNetConfig, Vec<Variable>), String> {
    let Some(first) = vars.get("base_model/conv2d/kernel") else {
        return Err("no base_model/conv2d/kernel: not a checkpoint of the official SimCLR code (its encoder's first convolution is missing)".into());
    };
    let theirs: BTreeMap<&str, &Vec<usize>> = vars.iter().filter(|(n, _)| n.starts_with("base_model/")).map(|(n, s)| (n.as_str(), s)).collect();
    let mut closest: Option<(usize, String)> = None;
    for cfg in candidates(first, vars) {
        let expected = encoder_variables(&cfg);
        let mut differences = Vec::new();
        for v in &expected {
            match theirs.get(v.tf.as_str()) {
                None => differences.push(format!("{} (shape {:?}) is missing", v.tf, v.shape)),
                Some(s) if **s != v.shape => differences.push(format!("{} has shape {:?}, {:?} expected", v.tf, s, v.shape)),
                Some(_) => {}
            }
        }
        let known: std::collections::BTreeSet<&str> = expected.iter().map(|v| v.tf.as_str()).collect();
        differences.extend(theirs.keys().filter(|n| !known.contains(*n)).map(|n| format!("{n} is not a variable of this network")));
        if differences.is_empty() {
            return Ok((cfg, expected));
        }
        let summary = format!(
            "closest: ResNet-{} width {}{}{}, where {} variables differ; first: {}",
            depth(cfg.arch),
            cfg.width,
            if cfg.sk_ratio > 0.0 { format!(", sk_ratio {}", cfg.sk_ratio) } else { String::new() },
            if cfg.se_ratio > 0.0 { format!(", se_ratio {}", cfg.se_ratio) } else { String::new() },
            differences.len(),
            differences.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
        if closest.as_ref().is_none_or(|(n, _)| differences.len() < *n) {
            closest = Some((differences.len(), summary));
        }
    }
    let basic = vars.keys().filter(|n| n.starts_with("base_model/conv2d")).all(|n| !n.ends_with("/kernel") || vars[n][0] != 1 || vars[n][2] != vars[n][3] * 4);
    let hint = if basic && vars.len() < 200 {
        " (a ResNet-18/34 of the official code has a projection shortcut in its first block that this encoder has not; only ResNet-50/101/152 are read)"
    } else {
        ""
    };
    Err(match closest {
        Some((_, summary)) => format!("its variables fit no ResNet-50/101/152 of the official code{hint}; {summary}"),
        None => format!("its first convolution base_model/conv2d/kernel has shape {first:?}; the official stems are [7, 7, 3, 64·w], [3, 3, 3, 32·w] (selective kernels) or [3, 3, 3, 64·w] (CIFAR)"),
    })
}

fn depth(arch: Arch) -> usize {
    match arch {
        Arch::Resnet18 => 18,
        Arch::Resnet34 => 34,
        Arch::Resnet50 => 50,
        Arch::Resnet101 => 101,
        Arch::Resnet152 => 152,
    }
}

/// The projection head in the checkpoint, if any: its layers' variables must be exactly those
/// the official code makes for it.
pub fn infer_head(vars: &BTreeMap<String, Vec<usize>>, h_dim: usize) -> Result<Option<(HeadShape, Vec<Variable>)>, String> {
    let head: BTreeMap<&str, &Vec<usize>> = vars.iter().filter(|(n, _)| n.starts_with("head_contrastive/")).map(|(n, s)| (n.as_str(), s)).collect();
    if head.is_empty() {
        return Ok(None);
    }
    let linear = head.keys().any(|n| n.starts_with("head_contrastive/l_0/"));
    let layers = if linear { 1 } else { (0..).take_while(|j| head.contains_key(format!("head_contrastive/nl_{j}/dense/kernel").as_str())).count() };
    let last = if linear { "head_contrastive/l_0/dense/kernel".to_string() } else { format!("head_contrastive/nl_{}/dense/kernel", layers.saturating_sub(1)) };
    let Some(kernel) = head.get(last.as_str()) else { return Err(format!("head_contrastive holds no {last}")) };
    let mode = if linear { crate::head::HeadMode::Linear } else { crate::head::HeadMode::Nonlinear };
    let shape = HeadShape { mode, layers, proj_dim: kernel.last().copied().unwrap_or(0) };
    let expected = head_variables(&shape, h_dim);
    for v in &expected {
        match head.get(v.tf.as_str()) {
            None => return Err(format!("{} (shape {:?}) is missing from the projection head", v.tf, v.shape)),
            Some(s) if **s != v.shape => return Err(format!("{} has shape {:?}; the head on h of {h_dim} dimensions has {:?}", v.tf, s, v.shape)),
            Some(_) => {}
        }
    }
    if let Some(extra) = head.keys().find(|n| !expected.iter().any(|v| v.tf == **n)) {
        return Err(format!("{extra} is not a variable of a {layers}-layer projection head"));
    }
    Ok(Some((shape, expected)))
}

/// The supervised head's `[in, classes]`, if the checkpoint has one.
pub fn classifier(vars: &BTreeMap<String, Vec<usize>>) -> Option<Vec<usize>> {
    vars.get(&format!("{SUPERVISED}/kernel")).cloned()
}

/// The official supervised head's dense layer (`linear_layer` with a bias, no BN).
const SUPERVISED: &str = "head_supervised/linear_layer/dense";

/// The supervised head's variables, read into our probe.
pub fn classifier_variables(din: usize, classes: usize) -> [Variable; 2] {
    [
        Variable { tf: format!("{SUPERVISED}/kernel"), shape: vec![din, classes], ours: "probe.weight".into(), layout: Layout::Linear },
        Variable { tf: format!("{SUPERVISED}/bias"), shape: vec![classes], ours: "probe.bias".into(), layout: Layout::Vector },
    ]
}

/// Reads `vars` from `bundle` (from `ema_model/` when `ema`) laid out as ours, by our names; with
/// the names of the checkpoint's variables read.
pub fn read(bundle: &Bundle, vars: &[Variable], ema: bool) -> Result<(BTreeMap<String, TensorData>, std::collections::BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    let mut read = std::collections::BTreeSet::new();
    for v in vars {
        let averaged = format!("ema_model/{}", v.tf);
        let name = if ema && bundle.entries().contains_key(&averaged) { averaged } else { v.tf.clone() };
        out.insert(v.ours.clone(), relayout(bundle.read(&name)?, v.layout));
        read.insert(name);
    }
    Ok((out, read))
}

/// `data` in our layout.
fn relayout(data: TensorData, layout: Layout) -> TensorData {
    let shape = data.shape().to_vec();
    match layout {
        Layout::Vector | Layout::Linear => data,
        Layout::Conv => {
            let [kh, kw, cin, cout] = [shape[0], shape[1], shape[2], shape[3]];
            let values = data.try_into_vec::<f32>().expect("read as f32");
            let mut out = vec![0f32; values.len()];
            for (i, v) in values.into_iter().enumerate() {
                let (o, rest) = (i % cout, i / cout);
                let (c, rest) = (rest % cin, rest / cin);
                let (x, y) = (rest % kw, rest / kw);
                out[((o * cin + c) * kh + y) * kw + x] = v;
            }
            TensorData::new(out, [cout, cin, kh, kw])
        }
    }
}
