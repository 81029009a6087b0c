//! What every study's cells share: the preset's base settings, the supervised baseline's recipe,
//! and the untrained baseline appended to each study's cells ([`super::study`] defines each study).

use super::{Cell, CellKind, Preset, Study};
use crate::config::{Config, DataArgs};
use crate::eval::Layer;
use crate::resnet::Arch;
use std::path::Path;

/// Peak learning rate of the supervised baseline before linear batch scaling (0.1 at batch 128, the
/// usual CIFAR ResNet recipe), Nesterov SGD with a cosine decay.
pub const SUPERVISED_LR: f64 = 0.2;
/// Weight decay of the supervised baseline (the usual CIFAR ResNet recipe).
pub const SUPERVISED_WEIGHT_DECAY: f64 = 5e-4;

/// Training images of the small preset unless `--limit` says otherwise.
pub const SMALL_LIMIT: usize = 8000;

/// The medium preset's network width (ResNet-18 on 28 px images, batch 128, τ 0.1, colour
/// strength ½ without blur as the paper's CIFAR-10 runs), training images, epochs and smallest
/// crop: chosen so that the full pipeline's contrastive task is learnt (contrastive accuracy above
/// 50% in the last epoch; at batch 256, τ 0.1 it ended at 49.3%, at τ 0.5 with the paper's 8%
/// crops near 22%) while the four studies at 3 seeds fit about 8 CPU hours with the libtorch build.
pub const MEDIUM_WIDTH: f32 = 0.125;
/// Training images of the medium preset unless `--limit` says otherwise.
pub const MEDIUM_LIMIT: usize = 20_000;
/// Pretraining epochs of the medium preset.
pub const MEDIUM_EPOCHS: usize = 10;
/// Smallest random-crop area of the medium preset (a fifth of a 28 px image; the paper's 8% is for
/// 224 px).
pub const MEDIUM_CROP_MIN_AREA: f32 = 0.2;

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
        Preset::Medium => {
            (m.arch, m.width, m.image_size) = (Arch::Resnet18, MEDIUM_WIDTH, 28);
            (cfg.augment.color_strength, cfg.augment.blur, cfg.augment.crop_min_area) = (0.5, Some(false), MEDIUM_CROP_MIN_AREA);
            (o.batch_size, o.epochs, o.lr, o.warmup_epochs, o.temperature) = (128, MEDIUM_EPOCHS, 1.0, 0.5, 0.1);
            cfg.data.limit = MEDIUM_LIMIT;
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
    let mut cells = study.definition().cells(preset, base);
    cells.push(cell("random-init".into(), "baseline", "random init".into(), "-".into(), CellKind::RandomInit, base.clone(), None));
    cells
}

pub(super) fn cell(id: String, table: &'static str, row: String, column: String, kind: CellKind, config: Config, paper: Option<f64>) -> Cell {
    Cell { id, table, row, column, kind, config, paper }
}

pub(super) fn h() -> CellKind {
    CellKind::Contrastive(vec![Layer::H])
}

