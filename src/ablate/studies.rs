//! The cells of each study at each preset, with the paper's numbers where it prints them.

use super::{Cell, CellKind, Preset, Study};
use crate::augment::ablation::{Transform, Transforms};
use crate::config::{Config, DataArgs};
use crate::eval::Layer;
use crate::head::HeadMode;
use crate::resnet::Arch;
use std::path::Path;

/// Peak learning rate of the supervised baseline before linear batch scaling (0.1 at batch 128, the
/// usual CIFAR ResNet recipe), Nesterov SGD with a cosine decay.
pub const SUPERVISED_LR: f64 = 0.2;
/// Weight decay of the supervised baseline (the usual CIFAR ResNet recipe).
pub const SUPERVISED_WEIGHT_DECAY: f64 = 5e-4;

/// Training images of the small preset unless `--limit` says otherwise.
pub const SMALL_LIMIT: usize = 8000;

/// The settings every cell of a study starts from: the preset's network and optimisation, the
/// data flags on top (an image cache, if asked for, shared by all cells in `OUT/cache`).
pub fn base(preset: Preset, data: &DataArgs, out: &Path, seed: u64) -> Config {
    let mut cfg = Config::default();
    let (m, o) = (&mut cfg.model, &mut cfg.optim);
    match preset {
        Preset::Small => {
            (m.arch, m.width, m.image_size) = (Arch::Resnet18, 0.125, 24);
            cfg.augment.color_strength = 0.5;
            (o.batch_size, o.epochs, o.lr, o.warmup_epochs, o.temperature) = (128, 5, 1.0, 0.5, 0.5);
            cfg.data.limit = SMALL_LIMIT;
        }
        Preset::Full => {
            (m.arch, m.width, m.image_size) = (Arch::Resnet50, 1.0, 224);
            cfg.augment.color_strength = 1.0;
            (o.batch_size, o.epochs, o.lr, o.warmup_epochs, o.temperature) = (4096, 100, 0.3, 10.0, 0.1);
        }
    }
    (cfg.monitor.online_probe, cfg.monitor.keep_checkpoints) = (false, 1);
    cfg.data.apply(data.clone());
    if cfg.data.cache_size > 0 && cfg.data.cache_dir.is_none() {
        cfg.data.cache_dir = Some(out.join("cache"));
    }
    cfg.run.seed = seed;
    cfg
}

/// The study's cells, built on `base`, and last the untrained baseline every table is read against.
pub fn cells(study: Study, preset: Preset, base: &Config) -> Vec<Cell> {
    let mut cells = match study {
        Study::Augment => augment(base),
        Study::Head => head(preset, base),
        Study::Temperature => temperature(preset, base),
        Study::Scale => scale(preset, base),
    };
    cells.push(cell("random-init".into(), "baseline", "random init".into(), "-".into(), CellKind::RandomInit, base.clone(), None));
    cells
}

fn cell(id: String, table: &'static str, row: String, column: String, kind: CellKind, config: Config, paper: Option<f64>) -> Cell {
    Cell { id, table, row, column, kind, config, paper }
}

fn h() -> CellKind {
    CellKind::Contrastive(vec![Layer::H])
}

/// Paper Fig. 5 (ImageNet top-1 %, linear evaluation, one branch transformed): row = first
/// transformation, column = second, diagonal = that transformation alone; order of
/// [`Transform::ALL`]. Read off the figure.
pub const FIG5: [[f64; 7]; 7] = [
    [33.1, 33.9, 56.3, 46.0, 39.9, 35.0, 30.2],
    [32.2, 25.6, 33.9, 40.0, 26.5, 25.2, 22.4],
    [55.8, 35.5, 18.8, 21.0, 11.4, 16.5, 20.8],
    [46.2, 40.6, 20.9, 4.0, 9.3, 6.2, 4.2],
    [38.8, 25.8, 7.5, 7.6, 9.8, 9.8, 9.6],
    [35.1, 25.2, 16.6, 5.8, 9.7, 2.6, 6.7],
    [30.0, 22.5, 20.7, 4.3, 9.7, 6.5, 2.6],
];

/// Paper Table 1, SimCLR row: colour distortion strength (with crop; the last also with blur) and
/// ImageNet top-1 %.
pub const TABLE1: [(&str, f32, bool, f64); 5] = [("1/8", 0.125, false, 59.6), ("1/4", 0.25, false, 61.0), ("1/2", 0.5, false, 62.6), ("1", 1.0, false, 63.2), ("1 (+blur)", 1.0, true, 64.5)];

/// §3: every transformation alone and every ordered pair on one branch (Fig. 5), then the colour
/// strength with the standard two-branch crop + colour pipeline (Table 1).
fn augment(base: &Config) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (i, a) in Transform::ALL.into_iter().enumerate() {
        for (j, b) in Transform::ALL.into_iter().enumerate() {
            let list = if a == b { vec![a] } else { vec![a, b] };
            let mut cfg = base.clone();
            cfg.augment.one_branch = Some(Transforms(list.clone()));
            cells.push(cell(Transforms(list).to_string().replace(',', "+"), "pairs", a.to_string(), b.to_string(), h(), cfg, Some(FIG5[i][j])));
        }
    }
    for (label, strength, blur, paper) in TABLE1 {
        let mut cfg = base.clone();
        (cfg.augment.color_strength, cfg.augment.blur) = (strength, Some(blur));
        let id = format!("strength-{strength}{}", if blur { "-blur" } else { "" });
        cells.push(cell(id, "strength", "SimCLR".into(), label.into(), h(), cfg, Some(paper)));
    }
    cells
}

/// §4.2: no head, a linear head and the nonlinear (2-layer MLP) head across output sizes (Fig. 8),
/// each evaluated on h, on z and (nonlinear) on the hidden layer.
fn head(preset: Preset, base: &Config) -> Vec<Cell> {
    let (dims, epochs): (&[usize], usize) = match preset {
        Preset::Small => (&[32, 128, 512], 15),
        Preset::Full => (&[32, 64, 128, 256, 512, 1024, 2048], base.optim.epochs),
    };
    let with = |mode: HeadMode, dim: usize| {
        let mut cfg = base.clone();
        (cfg.model.head, cfg.model.proj_dim, cfg.optim.epochs) = (mode, dim, epochs);
        cfg
    };
    let mut cells = vec![cell("none".into(), "head", "none".into(), "-".into(), h(), with(HeadMode::None, base.model.proj_dim), None)];
    for &dim in dims {
        cells.push(cell(format!("linear-{dim}"), "head", "linear".into(), dim.to_string(), CellKind::Contrastive(vec![Layer::H, Layer::Z]), with(HeadMode::Linear, dim), None));
    }
    for &dim in dims {
        let layers = vec![Layer::H, Layer::Head(1), Layer::Z];
        cells.push(cell(format!("nonlinear-{dim}"), "head", "nonlinear".into(), dim.to_string(), CellKind::Contrastive(layers), with(HeadMode::Nonlinear, dim), None));
    }
    cells
}

/// Paper Table 5 (ImageNet, 100 epochs): (ℓ2 normalisation, τ, entropy, contrastive accuracy %,
/// top-1 %).
pub const TABLE5: [(bool, f32, f64, f64, f64); 6] =
    [(true, 0.05, 1.0, 90.5, 59.7), (true, 0.1, 4.5, 87.8, 64.4), (true, 0.5, 8.2, 68.2, 60.7), (true, 1.0, 8.3, 59.1, 58.0), (false, 10.0, 0.5, 91.7, 57.2), (false, 100.0, 0.5, 92.1, 57.0)];

/// §5.1: τ with ℓ2-normalised z, and on raw dot products at the same τ and at the paper's 10 and
/// 100 (Table 5).
fn temperature(preset: Preset, base: &Config) -> Vec<Cell> {
    let epochs = if preset == Preset::Small { 10 } else { base.optim.epochs };
    let paper = |norm: bool, tau: f32| TABLE5.iter().find(|r| r.0 == norm && r.1 == tau).map(|r| r.4);
    let mut cells = Vec::new();
    for (norm, taus) in [(true, &[0.05f32, 0.1, 0.5, 1.0][..]), (false, &[0.05, 0.1, 0.5, 1.0, 10.0, 100.0][..])] {
        for &tau in taus {
            let mut cfg = base.clone();
            (cfg.optim.temperature, cfg.optim.l2_normalize, cfg.optim.epochs) = (tau, norm, epochs);
            let row = if norm { "ℓ2-normalised" } else { "raw dot product" };
            let id = format!("{}-tau{tau}", if norm { "l2" } else { "dot" });
            cells.push(cell(id, "temperature", row.into(), tau.to_string(), h(), cfg, paper(norm, tau)));
        }
    }
    cells
}

/// §5.2: batch size × training epochs (Fig. 9), and wider and deeper encoders, each beside the
/// same network trained with labels for the same epochs (Fig. 7).
fn scale(preset: Preset, base: &Config) -> Vec<Cell> {
    let (batches, epochs, size_epochs): (&[usize], &[usize], usize) = match preset {
        Preset::Small => (&[64, 128, 256], &[5, 10, 20], 10),
        Preset::Full => (&[256, 512, 1024, 2048, 4096, 8192], &[100, 200, 400, 800], 100),
    };
    let mut cells = Vec::new();
    for &e in epochs {
        for &b in batches {
            let mut cfg = base.clone();
            (cfg.optim.batch_size, cfg.optim.epochs) = (b, e);
            cells.push(cell(format!("batch{b}-epochs{e}"), "batch-epochs", format!("{e} epochs"), b.to_string(), h(), cfg, None));
        }
    }
    let w = base.model.width;
    let sizes: Vec<(Arch, f32)> = match preset {
        Preset::Small => vec![(Arch::Resnet18, w), (Arch::Resnet18, 2.0 * w), (Arch::Resnet34, w), (Arch::Resnet50, w)],
        Preset::Full => vec![(Arch::Resnet18, w), (Arch::Resnet34, w), (Arch::Resnet50, w), (Arch::Resnet50, 2.0 * w), (Arch::Resnet50, 4.0 * w)],
    };
    for (arch, width) in sizes {
        let mut cfg = base.clone();
        (cfg.model.arch, cfg.model.width, cfg.optim.epochs) = (arch, width, size_epochs);
        let name = format!("{arch:?}x{width}").to_lowercase();
        cells.push(cell(format!("{name}-simclr"), "size", name.clone(), "SimCLR".into(), h(), cfg.clone(), None));
        cells.push(cell(format!("{name}-supervised"), "size", name, "supervised".into(), CellKind::Supervised, cfg, None));
    }
    cells
}
