//! §4.2, the projection head: none, linear and nonlinear across output sizes, evaluated on h, the
//! hidden layer and z (Fig. 8): cells, tables, findings, figures.

use super::Definition;
use crate::ablate::report::*;
use crate::ablate::studies::{cell, h};
use crate::ablate::{Cell, CellKind, CellResult, Preset};
use crate::config::Config;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use crate::eval::Layer;
use crate::head::HeadMode;

/// The study's definition.
pub(in crate::ablate) struct Head;

impl Definition for Head {
    fn cells(&self, preset: Preset, base: &Config) -> Vec<Cell> {
        head(preset, base)
    }

    fn tables(&self, results: &[CellResult]) -> String {
        let mut s = String::new();
        s += "### Projection head (paper Fig. 8): top-1 of h, of the hidden layer (nonlinear) and of z\n\n| head | output dim | h | head:1 | z | steps |\n|---|---|---|---|---|---|\n";
        for r in results.iter().filter(|r| r.table == "head") {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", r.row, r.column, score(Some(r), "h"), score(Some(r), "head:1"), score(Some(r), "z"), r.steps);
        }
        s
    }

    fn findings(&self, results: &[CellResult], noise: Noise) -> String {
        let mut s = String::new();
        let best = |row: &str, layer: &str| results.iter().filter(|r| r.table == "head" && r.row == row).filter_map(|r| r.top1.get(layer).copied()).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let (Some(none), Some(lin), Some(non)) = (best("none", "h"), best("linear", "h"), best("nonlinear", "h")) {
            let _ = writeln!(s, "- A nonlinear head beats a linear one, evaluated on h (paper: by 3%): best over output sizes {non:.1} vs {lin:.1}: {}.", noise.verdict(non - lin));
            let _ = writeln!(s, "- A linear head beats no head (paper: the nonlinear head by > 10%): {lin:.1} vs {none:.1}: {}.", noise.verdict(lin - none));
        }
        for mode in ["linear", "nonlinear"] {
            let cells: Vec<&CellResult> = results.iter().filter(|r| r.table == "head" && r.row == mode).collect();
            let wins = cells.iter().filter(|r| r.top1.get("h").zip(r.top1.get("z")).is_some_and(|(h, z)| h > z)).count();
            if !cells.is_empty() {
                let gaps: Vec<String> = cells.iter().filter_map(|r| Some(format!("{:+.1} at {}", r.top1.get("h")? - r.top1.get("z")?, r.column))).collect();
                let gap = mean(cells.iter().filter_map(|r| Some(r.top1.get("h")? - r.top1.get("z")?))).unwrap_or(0.0);
                let _ = writeln!(s, "- h beats z with a {mode} head (paper: by >10% with the nonlinear head): in {wins} of {} output sizes (h − z: {}; mean {gap:+.1}): {}.", cells.len(), gaps.join(", "), noise.verdict(gap));
            }
        }
        s
    }

    fn claims(&self, preset: Preset) -> Vec<Claim> {
        let (linear, nonlinear) = match preset {
            Preset::Full => ("linear-2048", "nonlinear-2048"),
            Preset::Small | Preset::Medium => ("linear-128", "nonlinear-128"),
        };
        vec![
            Claim::better("A nonlinear head beats a linear one (evaluated on h)", "Fig. 8: by 3%", nonlinear, linear, "h"),
            Claim::better("A linear head beats no head (on h)", "Fig. 8: > 10% for the nonlinear head", linear, "none", "h"),
            Claim { text: "h beats z with the nonlinear head", paper: "Fig. 8: by > 10%", terms: vec![(nonlinear, "h", 1.0), (nonlinear, "z", -1.0)] },
            Claim { text: "h beats z with a linear head", paper: "Fig. 8: smaller gap", terms: vec![(linear, "h", 1.0), (linear, "z", -1.0)] },
        ]
    }

    fn figures(&self, out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let mut all = Vec::new();
        for (row, layer) in [("linear", "h"), ("linear", "z"), ("nonlinear", "h"), ("nonlinear", "z")] {
            all.push((format!("{row} head, {layer}"), series(results, "head", row, layer, &column)));
        }
        if let Some(none) = find(results, "head", "none", "-").filter(|r| r.main_top1().is_some()) {
            let xs: Vec<f64> = results.iter().filter(|r| r.table == "head").filter_map(column).collect();
            let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            if lo.is_finite() {
                all.push(("no head (h = z)".into(), vec![Point::of(none, lo, "h", None), Point::of(none, hi, "h", None)]));
            }
        }
        lines(&out.join("head.png"), "projection head: linear top-1 % against the output dimension", "projection output dimension", &all, frame, &[])?;
        files.push("head.png".into());
        Ok(files)
    }
}

/// §4.2: no head, a linear head and the nonlinear (2-layer MLP) head across output sizes (Fig. 8),
/// each evaluated on h, on z and (nonlinear) on the hidden layer.
fn head(preset: Preset, base: &Config) -> Vec<Cell> {
    let (dims, epochs): (&[usize], usize) = match preset {
        Preset::Small => (&[32, 128, 512], 15),
        Preset::Medium => (std::slice::from_ref(&base.model.proj_dim), base.optim.epochs),
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
