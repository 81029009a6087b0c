//! §5.2, scale: batch size × training epochs (Fig. 9), and wider and deeper encoders beside the
//! same network trained with labels (Fig. 7): cells, tables, findings, figures.

use super::Definition;
use crate::ablate::report::*;
use crate::ablate::studies::{cell, h};
use crate::ablate::{Cell, CellKind, CellResult, Preset};
use crate::config::Config;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use crate::resnet::Arch;

/// The study's definition.
pub(in crate::ablate) struct Scale;

impl Definition for Scale {
    fn cells(&self, preset: Preset, base: &Config) -> Vec<Cell> {
        match preset {
            Preset::Medium => medium(base),
            Preset::Small => scale(false, base),
            Preset::Full => scale(true, base),
        }
    }

    fn claims(&self, preset: Preset) -> Vec<Claim> {
        match preset {
            Preset::Medium => vec![
                Claim::better("Training longer helps (twice the epochs)", "Fig. 9: 100 → 200 epochs, +2 to +5 points", "epochs-x2", "base", "h"),
                Claim::better("A bigger batch helps at the same epochs (4× the batch)", "Fig. 9: 256 → 1024 at 100 epochs, ~+4", "batch-x4", "base", "h"),
                Claim::better("A wider network helps (twice the width)", "Fig. 7: ResNet-50 ×1 → ×2, 69.3 → 74.2", "width-x2", "base", "h"),
                Claim::gains_more(
                    "The wider network's gain is more than its wider h gives untrained: (×2 − ×1) − (untrained ×2 − untrained ×1)",
                    "—",
                    ("width-x2", "base", "h"),
                    ("random-init-width-x2", "random-init", "h"),
                ),
                Claim::gains_more(
                    "Width helps SimCLR more than supervised training: (SimCLR ×2 − ×1) − (supervised ×2 − ×1)",
                    "Fig. 7: the gap to supervised closes with width",
                    ("width-x2", "base", "h"),
                    ("supervised-width-x2", "supervised", "supervised"),
                ),
            ],
            Preset::Small => vec![
                Claim::better("Training longer helps (batch 128, 20 vs 5 epochs)", "Fig. 9: +2 to +5 points from 100 to 200 epochs", "batch128-epochs20", "batch128-epochs5", "h"),
                Claim::better("A bigger batch helps (256 vs 64, 5 epochs)", "Fig. 9: most when training is short", "batch256-epochs5", "batch64-epochs5", "h"),
                Claim::better("A wider network helps (ResNet-18 ×0.25 vs ×0.125)", "Fig. 7", "resnet18x0.25-simclr", "resnet18x0.125-simclr", "h"),
            ],
            Preset::Full => vec![
                Claim::better("Training longer helps (batch 4096, 800 vs 100 epochs)", "Fig. 9", "batch4096-epochs800", "batch4096-epochs100", "h"),
                Claim::better("A bigger batch helps (4096 vs 256, 100 epochs)", "Fig. 9", "batch4096-epochs100", "batch256-epochs100", "h"),
                Claim::better("A wider network helps (ResNet-50 ×2 vs ×1)", "Fig. 7: 69.3 → 74.2", "resnet50x2-simclr", "resnet50x1-simclr", "h"),
            ],
        }
    }

    fn tables(&self, results: &[CellResult]) -> String {
        let mut s = String::new();
        if results.iter().any(|r| r.table == "medium") {
            s += "### Longer, bigger batch, wider: each one change from the shared settings (paper Fig. 9 and Fig. 7)\n\n| cell | setting | trains | top-1 | contrastive acc % | steps | encoder parameters |\n|---|---|---|---|---|---|---|\n";
            for r in results.iter().filter(|r| r.table == "medium" || r.table == "baseline") {
                let acc = pct(r.contrast_acc.map(|a| 100.0 * a));
                let _ = writeln!(s, "| {} | {} | {} | {} | {acc} | {} | {:.2} M |", r.id, r.row, r.column, ours_and_paper(Some(r)), r.steps, r.encoder_params as f64 / 1e6);
            }
            return s;
        }
        let batches = distinct(results, "batch-epochs", |r| &r.column);
        s += "### Batch size × training epochs (paper Fig. 9)\n\n| epochs \\ batch |";
        for b in &batches {
            let _ = write!(s, " {b} |");
        }
        s += "\n|---|";
        s += &"---|".repeat(batches.len());
        s += "\n";
        for e in distinct(results, "batch-epochs", |r| &r.row) {
            let _ = write!(s, "| {e} |");
            for b in &batches {
                let _ = write!(s, " {} |", ours_and_paper(find(results, "batch-epochs", &e, b)));
            }
            s += "\n";
        }
        s += "\n### Width and depth, SimCLR (linear eval) beside supervised training for the same epochs and the untrained encoder (paper Fig. 7)\n\n| encoder | trainable parameters | untrained | SimCLR | supervised | gap |\n|---|---|---|---|---|---|\n";
        for net in distinct(results, "size", |r| &r.row) {
            let (a, b, u) = (find(results, "size", &net, "SimCLR"), find(results, "size", &net, "supervised"), find(results, "size", &net, "untrained"));
            let gap = a.and_then(CellResult::main_top1).zip(b.and_then(CellResult::main_top1)).map(|(x, y)| x - y);
            let params = a.or(b).map_or("—".into(), |r| format!("{:.2} M", r.encoder_params as f64 / 1e6));
            let _ = writeln!(s, "| {net} | {params} | {} | {} | {} | {} |", ours_and_paper(u), ours_and_paper(a), ours_and_paper(b), gap.map_or("—".into(), |g| format!("{g:+.1}")));
        }
        s
    }

    fn findings(&self, results: &[CellResult], noise: Noise) -> String {
        let mut s = String::new();
        let top = |table: &str, row: &str, col: &str| find(results, table, row, col).and_then(CellResult::main_top1);
        let batches = distinct(results, "batch-epochs", |r| &r.column);
        let epochs = distinct(results, "batch-epochs", |r| &r.row);
        if let (Some(small), Some(large)) = (batches.first(), batches.last()) {
            let gaps: Vec<(String, f64)> = epochs.iter().filter_map(|e| Some((e.clone(), top("batch-epochs", e, large)? - top("batch-epochs", e, small)?))).collect();
            if let (Some(first), Some(last)) = (gaps.first(), gaps.last()) {
                let text: Vec<String> = gaps.iter().map(|(e, g)| format!("{g:+.1} at {e}")).collect();
                let _ = writeln!(s, "- A bigger batch helps, most when training is short (paper Fig. 9): batch {large} − batch {small}: {}: {} at {}; the paper's gap shrinks with longer training, here it moves from {:+.1} to {:+.1}.", text.join(", "), noise.verdict(first.1), first.0, first.1, last.1);
            }
        }
        if let (Some(short), Some(long)) = (epochs.first(), epochs.last()) {
            let gains: Vec<f64> = batches.iter().filter_map(|b| Some(top("batch-epochs", long, b)? - top("batch-epochs", short, b)?)).collect();
            let wins = gains.iter().filter(|&&g| g > 0.0).count();
            let gain = mean(gains.iter().copied()).unwrap_or(0.0);
            let _ = writeln!(s, "- Longer training helps (paper Fig. 9): {long} beats {short} at {wins} of {} batch sizes, by {gain:+.1} on average: {}.", gains.len(), noise.verdict(gain));
        }
        let nets = distinct(results, "size", |r| &r.row);
        if let (Some(small), Some(big)) = (nets.first(), nets.iter().max_by_key(|n| find(results, "size", n, "SimCLR").map_or(0, |r| r.encoder_params))) {
            let gain = |col: &str| Some(top("size", big, col)? - top("size", small, col)?);
            if let (Some(u), Some(sup)) = (gain("SimCLR"), gain("supervised")) {
                let _ = writeln!(s, "- A bigger network helps SimCLR more than supervised training (paper Fig. 7): from {small} to {big}, SimCLR {u:+.1}, supervised {sup:+.1}: {}.", noise.verdict(u - sup));
            }
        }
        s
    }

    fn figures(&self, out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
        if results.iter().any(|r| r.table == "medium") {
            return medium_figures(out, results, frame);
        }
        let mut files = Vec::new();
        if !results.iter().any(|r| r.table == "batch-epochs" || r.table == "size") {
            return Ok(files);
        }
        let all: Vec<(String, Vec<Point>)> = distinct(results, "batch-epochs", |r| &r.row)
            .iter()
            .map(|e| (e.clone(), series(results, "batch-epochs", e, "h", &column)))
            .collect();
        let notes = ["batches above 256 in chunks of 256 (--micro-batch)".to_string()];
        lines(&out.join("batch-epochs.png"), "batch size and training length: linear top-1 %", "batch size", &all, frame, &notes)?;
        files.push("batch-epochs.png".into());
        let size = |col: &str, layer: &str| -> Vec<Point> {
            let cells = results.iter().filter(|r| r.table == "size" && r.column == col && r.top1.contains_key(layer));
            cells.map(|r| Point::of(r, r.encoder_params as f64 / 1e6, layer, Some(r.row.clone()))).collect()
        };
        let notes = ["each point is one encoder, named; the dashed line is the base encoder untrained".to_string()];
        let series = [("SimCLR (linear eval)".into(), size("SimCLR", "h")), ("supervised".into(), size("supervised", "supervised")), ("untrained (linear eval)".into(), size("untrained", "h"))];
        lines(&out.join("size.png"), "width and depth: top-1 % against encoder parameters", "encoder parameters (millions)", &series, frame, &notes)?;
        files.push("size.png".into());
        Ok(files)
    }
}

/// The medium preset's figures: top-1 against training epochs for each batch size (Fig. 9's
/// axes), and against the encoder's parameters for SimCLR, supervised training and the untrained
/// network (Fig. 7's), each point a cell's mean ± SD over seeds.
fn medium_figures(out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
    let cells = |ids: &[&str], layer: &str, x: &dyn Fn(&CellResult) -> f64, named: bool| -> Vec<Point> {
        let found = ids.iter().filter_map(|id| results.iter().find(|r| r.id == *id));
        found.map(|r| Point::of(r, x(r), layer, named.then(|| format!("width {}", r.config.model.width)))).collect()
    };
    let epochs = |r: &CellResult| r.config.optim.epochs as f64;
    let batch = |id: &str| results.iter().find(|r| r.id == id).map_or(0, |r| r.config.optim.batch_size);
    let length = [
        (format!("batch {}", batch("base")), cells(&["base", "epochs-x2"], "h", &epochs, false)),
        (format!("batch {}", batch("batch-x4")), cells(&["batch-x4"], "h", &epochs, false)),
    ];
    let notes = [format!("the same epochs at batch {} take a quarter of the steps; batches above {CHUNK} in chunks of {CHUNK} (--micro-batch)", batch("batch-x4"))];
    lines(&out.join("length-batch.png"), "training length and batch size: linear top-1 %", "training epochs", &length, frame, &notes)?;
    let params = |r: &CellResult| r.encoder_params as f64 / 1e6;
    let width = [
        ("SimCLR (linear eval)".to_string(), cells(&["base", "width-x2"], "h", &params, true)),
        ("supervised".to_string(), cells(&["supervised", "supervised-width-x2"], "supervised", &params, false)),
        ("untrained (linear eval)".to_string(), cells(&["random-init", "random-init-width-x2"], "h", &params, false)),
    ];
    let notes = ["ResNet-18 at two widths, named; the dashed line is the base encoder untrained".to_string()];
    lines(&out.join("width.png"), "width: top-1 % against encoder parameters", "encoder parameters (millions)", &width, frame, &notes)?;
    Ok(vec!["length-batch.png".into(), "width.png".into()])
}

/// The medium preset's key contrasts of §5.2, each one change from the shared settings: twice the
/// epochs, four times the batch (the same epochs, so a quarter of the steps, as the paper's Fig. 9
/// at a fixed epoch count), twice the width beside the untrained and the supervised network of each
/// width (the untrained baseline tells how much a wider h alone gives a linear classifier).
fn medium(base: &Config) -> Vec<Cell> {
    let mut cells = vec![cell("base".into(), "medium", "shared settings".into(), "SimCLR".into(), h(), base.clone(), None)];
    let mut longer = base.clone();
    longer.optim.epochs *= 2;
    cells.push(cell("epochs-x2".into(), "medium", format!("{} epochs", longer.optim.epochs), "SimCLR".into(), h(), longer, None));
    let mut bigger = base.clone();
    bigger.optim.batch_size *= 4;
    if bigger.optim.batch_size > CHUNK {
        bigger.optim.micro_batch = CHUNK;
    }
    cells.push(cell("batch-x4".into(), "medium", format!("batch {}", bigger.optim.batch_size), "SimCLR".into(), h(), bigger, None));
    let mut unaugmented = base.clone();
    unaugmented.augment.color_strength = 0.0;
    cells.push(cell("supervised".into(), "medium", "shared settings".into(), "supervised".into(), CellKind::Supervised, unaugmented.clone(), None));
    let mut wider = base.clone();
    wider.model.width *= 2.0;
    let name = format!("width {}", wider.model.width);
    cells.push(cell("width-x2".into(), "medium", name.clone(), "SimCLR".into(), h(), wider.clone(), None));
    cells.push(cell("random-init-width-x2".into(), "medium", name.clone(), "untrained".into(), CellKind::RandomInit, wider.clone(), None));
    unaugmented.model.width = wider.model.width;
    cells.push(cell("supervised-width-x2".into(), "medium", name, "supervised".into(), CellKind::Supervised, unaugmented, None));
    cells
}

/// Images a chunk of the batch-size cells' batches above it (`--micro-batch`): the paper's batches
/// with the memory of a batch of 256 (gradient caching; BN's statistics per chunk, an image's views
/// in different chunks).
const CHUNK: usize = 256;

/// §5.2: batch size × training epochs (Fig. 9), and wider and deeper encoders, each beside the
/// same network trained with labels for the same epochs (Fig. 7) and untrained (what its h gives a
/// linear classifier before any training): the small grid, or with `full` the paper's.
fn scale(full: bool, base: &Config) -> Vec<Cell> {
    let (batches, epochs, size_epochs): (&[usize], &[usize], usize) = match full {
        false => (&[64, 128, 256, 1024, 4096], &[5, 10, 20], 10),
        true => (&[256, 512, 1024, 2048, 4096, 8192], &[100, 200, 400, 800], 100),
    };
    let mut cells = Vec::new();
    for &e in epochs {
        for &b in batches {
            let mut cfg = base.clone();
            (cfg.optim.batch_size, cfg.optim.epochs) = (b, e);
            if b > CHUNK {
                cfg.optim.micro_batch = CHUNK;
            }
            cells.push(cell(format!("batch{b}-epochs{e}"), "batch-epochs", format!("{e} epochs"), b.to_string(), h(), cfg, None));
        }
    }
    let w = base.model.width;
    let sizes: Vec<(Arch, f32)> = match full {
        false => vec![(Arch::Resnet18, w), (Arch::Resnet18, 2.0 * w), (Arch::Resnet34, w), (Arch::Resnet50, w)],
        true => vec![(Arch::Resnet18, w), (Arch::Resnet34, w), (Arch::Resnet50, w), (Arch::Resnet50, 2.0 * w), (Arch::Resnet50, 4.0 * w)],
    };
    for (arch, width) in sizes {
        let mut cfg = base.clone();
        (cfg.model.arch, cfg.model.width, cfg.optim.epochs) = (arch, width, size_epochs);
        let name = format!("{arch:?}x{width}").to_lowercase();
        cells.push(cell(format!("{name}-simclr"), "size", name.clone(), "SimCLR".into(), h(), cfg.clone(), None));
        // Untrained, the training settings play no part: the base's, so that the base encoder's
        // is the study's random-init run.
        let mut untrained = base.clone();
        (untrained.model.arch, untrained.model.width) = (arch, width);
        cells.push(cell(format!("{name}-untrained"), "size", name.clone(), "untrained".into(), CellKind::RandomInit, untrained, None));
        cfg.augment.color_strength = 0.0;
        cells.push(cell(format!("{name}-supervised"), "size", name, "supervised".into(), CellKind::Supervised, cfg, None));
    }
    cells
}
