//! §5.1, the NT-Xent temperature with and without ℓ2 normalisation (Table 5): cells, tables,
//! findings, figures.

use super::Definition;
use crate::ablate::report::*;
use crate::ablate::studies::{cell, h};
use crate::ablate::{Cell, CellResult, Preset};
use crate::config::Config;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// The study's definition.
pub(in crate::ablate) struct Temperature;

impl Definition for Temperature {
    fn cells(&self, preset: Preset, base: &Config) -> Vec<Cell> {
        temperature(preset, base)
    }

    fn tables(&self, results: &[CellResult]) -> String {
        let mut s = String::new();
        s += "### Temperature (paper Table 5): contrastive accuracy and entropy of the last epoch, linear top-1\n\n| z | τ | entropy | contrastive acc % | top-1 | paper: entropy / contrastive acc / top-1 |\n|---|---|---|---|---|---|\n";
        for r in results.iter().filter(|r| r.table == "temperature") {
            let paper = TABLE5.iter().find(|p| (p.0 == (r.row == "ℓ2-normalised")) && p.1.to_string() == r.column);
            let paper = paper.map_or("—".into(), |p| format!("{} / {} / {}", p.2, p.3, p.4));
            let top1 = if r.diverged.is_some() { "diverged".into() } else { score(Some(r), "h") };
            let _ = writeln!(s, "| {} | {} | {} | {} | {top1} | {paper} |", r.row, r.column, r.contrast_entropy.map_or("—".into(), |v| format!("{v:.2}")), pct(r.contrast_acc.map(|a| 100.0 * a)));
        }
        s
    }

    fn findings(&self, results: &[CellResult], noise: Noise) -> String {
        let mut s = String::new();
        let rows = |row: &str| -> Vec<(String, f64, Option<f64>)> {
            results.iter().filter(|r| r.table == "temperature" && r.row == row && r.diverged.is_none()).filter_map(|r| Some((r.column.clone(), r.main_top1()?, r.contrast_acc))).collect()
        };
        let best = |row: &str| rows(row).into_iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let normalised = rows("ℓ2-normalised");
        if let (Some((tau, acc, _)), true) = (best("ℓ2-normalised"), normalised.len() >= 3) {
            // Interior optimum: the best inner τ against the better end, positive when inside wins.
            let ends = normalised[0].1.max(normalised[normalised.len() - 1].1);
            let inner = normalised[1..normalised.len() - 1].iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
            let _ = writeln!(s, "- τ has an interior optimum with ℓ2 normalisation (paper: 0.1 at 64.4, with 0.05 at 59.7 and 1 at 58.0): here the best is τ {tau} at {acc:.1}, best inner τ − better end {:+.1}: {}.", inner - ends, noise.verdict(inner - ends));
        }
        if let (Some(n), Some(d)) = (best("ℓ2-normalised"), best("raw dot product")) {
            let _ = writeln!(s, "- ℓ2 normalisation helps (paper: 64.4 vs ≤ 57.2 without): best normalised {:.1} (τ {}) vs best raw dot product {:.1} (τ {}): {}.", n.1, n.0, d.1, d.0, noise.verdict(n.1 - d.1));
        }
        if let (Some(first), Some(last)) = (normalised.first(), normalised.last()) {
            if let (Some(a), Some(b)) = (first.2, last.2) {
                let _ = writeln!(s, "- Lower τ, higher contrastive accuracy (paper: 90.5% at 0.05, 59.1% at 1): {:.1}% at τ {} vs {:.1}% at τ {}: {}.", 100.0 * a, first.0, 100.0 * b, last.0, verdict(a > b));
            }
        }
        let diverged: Vec<&str> = results.iter().filter(|r| r.table == "temperature" && r.diverged.is_some()).map(|r| r.id.as_str()).collect();
        if !diverged.is_empty() {
            let _ = writeln!(s, "- Diverged (the loss became NaN or infinite): {}.", diverged.join(", "));
        }
        s
    }

    fn claims(&self, _: Preset) -> Vec<Claim> {
        vec![
            Claim::better("With ℓ2-normalised z, τ 0.1 beats τ 1", "Table 5: 64.4 vs 58.0", "l2-tau0.1", "l2-tau1", "h"),
            Claim::better("With ℓ2-normalised z, τ 0.1 beats τ 0.5", "Table 5: 64.4 vs 60.7", "l2-tau0.1", "l2-tau0.5", "h"),
            Claim::better("With ℓ2-normalised z, τ 0.5 beats τ 1", "Table 5: 60.7 vs 58.0", "l2-tau0.5", "l2-tau1", "h"),
        ]
    }

    fn figures(&self, out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let all: Vec<(String, Vec<Point>)> = ["ℓ2-normalised", "raw dot product"].iter().map(|row| (row.to_string(), series(results, "temperature", row, "h", &column))).collect();
        let diverged: Vec<String> = results.iter().filter(|r| r.table == "temperature" && r.diverged.is_some()).map(|r| format!("{} τ {}", r.row, r.column)).collect();
        let notes: Vec<String> = if diverged.is_empty() { Vec::new() } else { vec![format!("not drawn, diverged: {}", diverged.join(", "))] };
        lines(&out.join("temperature.png"), "temperature: linear top-1 %", "τ", &all, frame, &notes)?;
        files.push("temperature.png".into());
        Ok(files)
    }
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
    let grid: &[(bool, &[f32])] = match preset {
        Preset::Medium => &[(true, &[0.1, 0.5, 1.0])],
        Preset::Small | Preset::Full => &[(true, &[0.05, 0.1, 0.5, 1.0]), (false, &[0.05, 0.1, 0.5, 1.0, 10.0, 100.0])],
    };
    let mut cells = Vec::new();
    for &(norm, taus) in grid {
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
