//! Evaluation reports: `OUT/report.json` (what was evaluated, how, and the metrics) and a confusion
//! matrix rendered as PNG for the classification protocols.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// Everything an evaluation command records.
#[derive(Debug, Serialize)]
pub struct Report<M: Serialize> {
    /// Which protocol (`linear-eval`, `knn`, `finetune`, `embed`).
    pub protocol: &'static str,
    /// The checkpoint folder, or `null` for a randomly initialised network.
    pub checkpoint: Option<String>,
    /// SHA-256 of the checkpoint's `model.safetensors`.
    pub checkpoint_sha256: Option<String>,
    /// Dataset name and folder.
    pub dataset: String,
    /// The pretraining config of the evaluated network.
    pub model_config: crate::config::Config,
    /// The protocol's own settings.
    pub settings: serde_json::Value,
    /// Results (`top1`, `top5` as fractions, …).
    pub metrics: M,
    /// Seconds the whole command took.
    pub wall_time_s: f64,
    /// The folder it was written to.
    #[serde(skip)]
    pub out: std::path::PathBuf,
}

impl<M: Serialize> Report<M> {
    /// The evaluated network: its checkpoint folder, or `random init`.
    pub fn source(&self) -> &str {
        self.checkpoint.as_deref().unwrap_or("random init")
    }

    /// Writes the report as pretty JSON to `OUT/report.json` (atomically), `OUT` its folder.
    pub fn write(&self) -> Result<()> {
        let out = &self.out;
        std::fs::create_dir_all(out).with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
        let tmp = out.join(".report.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("--out {}: cannot write", out.display()))?;
        std::fs::rename(&tmp, out.join("report.json")).with_context(|| format!("--out {}: cannot write report.json", out.display()))?;
        Ok(())
    }
}

/// Renders `matrix[true][predicted]` as a PNG heat map: one square per cell, darker for a larger
/// share of the true class's images, with the diagonal in green and errors in red.
pub fn confusion_png(matrix: &[Vec<usize>], file: &Path) -> Result<()> {
    const CELL: u32 = 24;
    let c = matrix.len() as u32;
    let mut img = image::RgbImage::new(c * CELL + 1, c * CELL + 1);
    for (t, row) in matrix.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f32;
        for (p, &count) in row.iter().enumerate() {
            let share = count as f32 / total;
            let fade = |v: f32| (255.0 - share * (255.0 - v)) as u8;
            let colour = if t == p { [fade(0.0), fade(110.0), fade(0.0)] } else { [fade(200.0), fade(0.0), fade(0.0)] };
            for y in 0..CELL {
                for x in 0..CELL {
                    let border = x == 0 || y == 0;
                    let px = if border { [160, 160, 160] } else { colour };
                    img.put_pixel(p as u32 * CELL + x, t as u32 * CELL + y, image::Rgb(px));
                }
            }
        }
    }
    for i in 0..=c * CELL {
        img.put_pixel(i, c * CELL, image::Rgb([160, 160, 160]));
        img.put_pixel(c * CELL, i, image::Rgb([160, 160, 160]));
    }
    img.save(file).with_context(|| format!("writing {}", file.display()))
}
