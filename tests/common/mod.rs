//! What several test binaries share.

use simclr::config::{AugmentSettings, Config, DataSettings, ModelSettings, OptimSettings, RunSettings};
use std::path::Path;

/// A pretraining run that takes seconds: ResNet-18 at width 1/8 on 16 px views of the first 512
/// built-in images, batch 32, one epoch, writing into `out`.
pub fn small(out: &Path) -> Config {
    Config {
        data: DataSettings { limit: 512, ..Default::default() },
        model: ModelSettings { width: 0.125, proj_dim: 32, image_size: 16, ..Default::default() },
        augment: AugmentSettings { color_strength: 0.5, ..Default::default() },
        optim: OptimSettings { batch_size: 32, epochs: 1, lr: 1.0, warmup_epochs: 0.1, ..Default::default() },
        run: RunSettings { out: out.to_path_buf(), ..Default::default() },
        ..Config::default()
    }
}
