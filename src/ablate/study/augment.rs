//! §3, the composition of augmentations: every transformation alone and every ordered pair on one
//! branch (Fig. 5), and the colour distortion strength (Table 1): cells, tables, findings, figures.

use super::Definition;
use crate::ablate::report::*;
use crate::ablate::studies::{cell, h};
use crate::ablate::{Cell, CellResult, Preset};
use crate::config::Config;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use crate::augment::ablation::{Transform, Transforms};

/// The study's definition.
pub(in crate::ablate) struct Augment;

impl Definition for Augment {
    fn cells(&self, _: Preset, base: &Config) -> Vec<Cell> {
        augment(base)
    }

    fn tables(&self, results: &[CellResult]) -> String {
        let mut s = String::new();
        s += "### Transformations on one branch (paper Fig. 5): row = first, column = second, diagonal = alone\n\n";
        s += &pairs_table(results, ours_and_paper, CellResult::main_top1);
        s += "\n### Contrastive accuracy of the last epoch (%), same layout: how easily each pair's task was solved\n\n";
        s += &pairs_table(results, |r| pct(r.and_then(|r| r.contrast_acc).map(|a| 100.0 * a)), |r| r.contrast_acc.map(|a| 100.0 * a));
        s += "\n### Colour distortion strength, crop + colour on both views (paper Table 1)\n\n| strength | top-1 (paper) |\n|---|---|\n";
        for r in results.iter().filter(|r| r.table == "strength") {
            let _ = writeln!(s, "| {} | {} |", r.column, ours_and_paper(Some(r)));
        }
        s
    }

    fn findings(&self, results: &[CellResult], noise: Noise) -> String {
        let mut s = String::new();
        let mut pairs: Vec<(String, f64)> = results
            .iter()
            .filter(|r| r.table == "pairs" && r.row != r.column)
            .filter_map(|r| Some((format!("{}→{}", r.row, r.column), r.main_top1()?)))
            .collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some((best, acc)) = pairs.first() {
            let rank = |name: &str| pairs.iter().position(|p| p.0 == name).map_or("—".into(), |i| format!("#{} ({:.1})", i + 1, pairs[i].1));
            let is_crop_colour = |name: &str| name == "crop→color" || name == "color→crop";
            let ours = pairs.iter().filter(|p| is_crop_colour(&p.0)).map(|p| p.1).reduce(f64::max);
            let others = pairs.iter().filter(|p| !is_crop_colour(&p.0)).map(|p| p.1).reduce(f64::max);
            let margin = ours.zip(others).map_or(0.0, |(a, b)| a - b);
            let _ = writeln!(
                s,
                "- Crop + colour is the best pair (paper: crop→colour 56.3, colour→crop 55.8, every other pair ≤ 46.2): {}. Best pair here {best} at {acc:.1}; crop→colour ranks {}, colour→crop {} of {} pairs (best crop + colour pair − best other pair: {margin:+.1}).",
                noise.verdict(margin),
                rank("crop→color"),
                rank("color→crop"),
                pairs.len()
            );
        }
        // The likely reason when crop + colour does not win: how far its task is from solved.
        let acc = |r: &&CellResult| r.contrast_acc.map(|a| 100.0 * a);
        let crop_colour: Vec<&CellResult> = results.iter().filter(|r| r.table == "pairs" && (r.id == "crop+color" || r.id == "color+crop")).collect();
        let others = mean(results.iter().filter(|r| r.table == "pairs" && r.row != r.column && !crop_colour.iter().any(|c| c.id == r.id)).filter_map(|r| acc(&r)));
        if let (Some(hard), Some(others)) = (mean(crop_colour.iter().filter_map(acc)), others) {
            let _ = writeln!(
                s,
                "- How hard each task was: the crop + colour pairs reach a contrastive accuracy of {hard:.1}% in their last epoch, the other pairs {others:.1}% on average. The paper's argument is that the easy tasks are solved by shortcuts (colour histograms) that teach little; where crop + colour is {}, its features cannot have paid off yet — the likely reason where its direction does not show here.",
                if hard < 0.5 * others { "far from solved" } else { "no harder" }
            );
        }
        let singles = mean(results.iter().filter(|r| r.table == "pairs" && r.row == r.column).filter_map(CellResult::main_top1));
        let composed = mean(pairs.iter().map(|p| p.1));
        if let (Some(a), Some(b)) = (singles, composed) {
            let _ = writeln!(s, "- Composing transformations helps (paper: no single transformation suffices): mean of the pairs {b:.1} vs of single transformations {a:.1}: {}.", noise.verdict(b - a));
        }
        let strength: Vec<(String, f64)> = results.iter().filter(|r| r.table == "strength").filter_map(|r| Some((r.column.clone(), r.main_top1()?))).collect();
        if strength.len() >= 2 {
            let (weak, strong) = (&strength[0], strength.iter().filter(|s| !s.0.contains("blur")).last().expect("a strength without blur"));
            let _ = writeln!(s, "- Stronger colour distortion helps SimCLR (paper: 59.6 at 1/8 → 63.2 at 1 → 64.5 with blur): {} at {} vs {} at {}: {}.", fmt1(weak.1), weak.0, fmt1(strong.1), strong.0, noise.verdict(strong.1 - weak.1));
        }
        s
    }

    fn figures(&self, out: &Path, results: &[CellResult]) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let grid: Vec<Vec<Option<f64>>> = Transform::ALL
            .iter()
            .map(|a| Transform::ALL.iter().map(|b| find(results, "pairs", a.name(), b.name()).and_then(CellResult::main_top1)).collect())
            .collect();
        let names: Vec<&str> = Transform::ALL.iter().map(|t| t.name()).collect();
        heatmap(&out.join("pairs.png"), "linear top-1 %, one branch transformed (row: 1st, column: 2nd)", &names, &grid)?;
        files.push("pairs.png".into());
        let strength = |blur: bool| -> Vec<(f64, f64)> {
            let cells = results.iter().filter(|r| r.table == "strength" && r.config.augment.blur == Some(blur));
            cells.filter_map(|r| Some((r.config.augment.color_strength as f64, r.main_top1()?))).collect()
        };
        lines(&out.join("strength.png"), "colour distortion strength", "strength s", &[("crop + colour".into(), strength(false)), ("crop + colour + blur".into(), strength(true))])?;
        files.push("strength.png".into());
        Ok(files)
    }
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

/// The 7 × 7 table of the pairs (row: first transformation, column: second) with a mean column:
/// `cell` writes an entry, `value` gives the number averaged.
fn pairs_table(results: &[CellResult], cell: impl Fn(Option<&CellResult>) -> String, value: impl Fn(&CellResult) -> Option<f64>) -> String {
    let mut s = String::from("| 1st \\ 2nd |");
    for t in Transform::ALL {
        let _ = write!(s, " {t} |");
    }
    s += " mean |\n|---|";
    s += &"---|".repeat(Transform::ALL.len() + 1);
    s += "\n";
    for a in Transform::ALL {
        let _ = write!(s, "| **{a}** |");
        let row: Vec<Option<&CellResult>> = Transform::ALL.iter().map(|b| find(results, "pairs", a.name(), b.name())).collect();
        for r in &row {
            let _ = write!(s, " {} |", cell(*r));
        }
        let _ = writeln!(s, " {} |", pct(mean(row.iter().filter_map(|r| r.and_then(&value)))));
    }
    s
}
