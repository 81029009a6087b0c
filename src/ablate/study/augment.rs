//! §3, the composition of augmentations: every transformation alone and every ordered pair on one
//! branch (Fig. 5), and the colour distortion strength (Table 1): cells, tables, findings, figures.

use super::Definition;
use crate::ablate::report::*;
use crate::ablate::studies::{cell, h};
use crate::ablate::{Cell, CellKind, CellResult, Preset};
use crate::config::Config;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use crate::augment::ablation::{Transform, Transforms};

/// The study's definition.
pub(in crate::ablate) struct Augment;

impl Definition for Augment {
    fn cells(&self, preset: Preset, base: &Config) -> Vec<Cell> {
        match preset {
            Preset::Medium => medium(base),
            Preset::Small | Preset::Full => augment(base),
        }
    }

    fn tables(&self, results: &[CellResult]) -> String {
        let mut s = String::new();
        let acc = |r: Option<&CellResult>| pct(r.and_then(|r| r.contrast_acc).map(|a| 100.0 * a));
        if results.iter().any(|r| r.table == "pairs" && r.row != r.column) {
            s += "### Transformations on one branch (paper Fig. 5): row = first, column = second, diagonal = alone\n\n";
            s += &pairs_table(results, ours_and_paper, CellResult::main_top1);
            s += "\n### Contrastive accuracy of the last epoch (%), same layout: how easily each pair's task was solved\n\n";
            s += &pairs_table(results, acc, |r| r.contrast_acc.map(|a| 100.0 * a));
        } else if results.iter().any(|r| r.table == "pairs") {
            s += "### Transformations on one branch (paper Fig. 5; the other branch only resized)\n\n| transformations | top-1 (paper) | contrastive acc % |\n|---|---|---|\n";
            for r in results.iter().filter(|r| r.table == "pairs") {
                let _ = writeln!(s, "| {} | {} | {} |", r.id.replace('+', " → "), ours_and_paper(Some(r)), acc(Some(r)));
            }
        }
        s += "\n### Colour distortion strength, crop + colour on both views (paper Table 1)\n\n| strength | SimCLR (paper) | contrastive acc % | supervised (paper) |\n|---|---|---|---|\n";
        for column in distinct(results, "strength", |r| &r.column) {
            let (simclr, supervised) = (find(results, "strength", "SimCLR", &column), find(results, "strength", "supervised", &column));
            let _ = writeln!(s, "| {column} | {} | {} | {} |", ours_and_paper(simclr), acc(simclr), ours_and_paper(supervised));
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
        let strength: Vec<(String, f64)> = results.iter().filter(|r| r.table == "strength" && r.row == "SimCLR").filter_map(|r| Some((r.column.clone(), r.main_top1()?))).collect();
        if strength.len() >= 2 {
            let (weak, strong) = (&strength[0], strength.iter().filter(|s| !s.0.contains("blur")).last().expect("a strength without blur"));
            let _ = writeln!(s, "- Stronger colour distortion helps SimCLR (paper: 59.6 at 1/8 → 63.2 at 1 → 64.5 with blur): {} at {} vs {} at {}: {}.", fmt1(weak.1), weak.0, fmt1(strong.1), strong.0, noise.verdict(strong.1 - weak.1));
        }
        s
    }

    fn claims(&self, preset: Preset) -> Vec<Claim> {
        let mut claims = vec![
            Claim::better("Crop then colour (one branch) beats crop alone", "Fig. 5: 56.3 vs 33.1", "crop+color", "crop", "h"),
            Claim::better("Crop then colour (one branch) beats colour alone", "Fig. 5: 56.3 vs 25.6", "crop+color", "color", "h"),
        ];
        match preset {
            Preset::Medium => claims.extend([
                Claim::better("Colour distortion helps SimCLR (both views, with crop)", "Table 1: crop alone is Fig. 5's 33.1; strength 1/2: 62.6", "strength-0.5", "strength-0", "h"),
                Claim::better("Stronger colour distortion helps SimCLR", "Table 1: 62.6 at 1/2, 63.2 at 1", "strength-1", "strength-0.5", "h"),
                Claim::better("Stronger colour distortion does not help supervised training (strength 0 at least as good as 1)", "Table 1: 77.0 at 1/8, 75.7 at 1", "supervised-strength-0", "supervised-strength-1", "supervised"),
                Claim::gains_more(
                    "Colour distortion helps SimCLR more than supervised training: (SimCLR 1 − 0) − (supervised 1 − 0)",
                    "Table 1, 1/8 → 1: SimCLR +3.6, supervised −1.3",
                    ("strength-1", "strength-0", "h"),
                    ("supervised-strength-1", "supervised-strength-0", "supervised"),
                ),
            ]),
            Preset::Small | Preset::Full => claims.push(Claim::better("Stronger colour distortion helps SimCLR", "Table 1: 59.6 at 1/8, 63.2 at 1", "strength-1", "strength-0.125", "h")),
        }
        claims
    }

    fn figures(&self, out: &Path, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let grid: Vec<Vec<Option<f64>>> = Transform::ALL
            .iter()
            .map(|a| Transform::ALL.iter().map(|b| find(results, "pairs", a.name(), b.name()).and_then(CellResult::main_top1)).collect())
            .collect();
        let names: Vec<&str> = Transform::ALL.iter().map(|t| t.name()).collect();
        if results.iter().any(|r| r.table == "pairs" && r.row != r.column) {
            heatmap(&out.join("pairs.png"), "linear top-1 %, one branch transformed (row: 1st, column: 2nd)", &names, &grid)?;
            files.push("pairs.png".into());
        }
        let strength = |row: &str, blur: bool| -> Vec<Point> {
            let cells = results.iter().filter(|r| r.table == "strength" && r.row == row && r.config.augment.blur == Some(blur));
            cells.filter(|r| r.config.augment.color_strength > 0.0).filter_map(|r| Some(Point::of(r, r.config.augment.color_strength as f64, r.main_score()?, None))).collect()
        };
        let series = [("SimCLR, crop + colour".into(), strength("SimCLR", false)), ("SimCLR, crop + colour + blur".into(), strength("SimCLR", true)), ("supervised, crop + colour".into(), strength("supervised", false))];
        let notes: Vec<String> = results.iter().filter(|r| r.table == "strength" && r.config.augment.color_strength == 0.0).map(|r| format!("{} at strength 0 (off the log axis): {}", r.row, score(Some(r), r.main_score().unwrap_or("h")))).collect();
        lines(&out.join("strength.png"), "colour distortion strength", "strength s", &series, frame, &notes)?;
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

/// Paper Table 1, supervised row: (strength, ImageNet top-1 %) of a ResNet-50 trained with labels
/// on views colour-distorted at that strength.
pub const TABLE1_SUPERVISED: [(f32, f64); 4] = [(0.125, 77.0), (0.25, 76.7), (0.5, 76.5), (1.0, 75.7)];

/// The medium preset's key contrasts of §3: crop alone, colour alone and crop then colour on one
/// branch (Fig. 5's protocol), and the two-branch pipeline at colour strength 0, ½ and 1 beside
/// supervised training on views distorted at the same strengths (Table 1).
fn medium(base: &Config) -> Vec<Cell> {
    let mut cells = Vec::new();
    for list in [vec![Transform::Crop], vec![Transform::Color], vec![Transform::Crop, Transform::Color]] {
        let index = |t: Transform| Transform::ALL.iter().position(|&a| a == t).expect("every transformation is in ALL");
        let (i, j) = (index(list[0]), index(list[list.len() - 1]));
        let mut cfg = base.clone();
        cfg.augment.one_branch = Some(Transforms(list.clone()));
        let (first, second) = (list[0].to_string(), list[list.len() - 1].to_string());
        cells.push(cell(Transforms(list).to_string().replace(',', "+"), "pairs", first, second, h(), cfg, Some(FIG5[i][j])));
    }
    for strength in [0.0f32, 0.5, 1.0] {
        let mut cfg = base.clone();
        (cfg.augment.color_strength, cfg.augment.blur) = (strength, Some(false));
        let paper = |table: &[(f32, f64)]| table.iter().find(|t| t.0 == strength).map(|t| t.1);
        let simclr = TABLE1.iter().filter(|t| !t.2).map(|t| (t.1, t.3)).collect::<Vec<_>>();
        cells.push(cell(format!("strength-{strength}"), "strength", "SimCLR".into(), strength.to_string(), h(), cfg.clone(), paper(&simclr)));
        cells.push(cell(format!("supervised-strength-{strength}"), "strength", "supervised".into(), strength.to_string(), CellKind::Supervised, cfg, paper(&TABLE1_SUPERVISED)));
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
