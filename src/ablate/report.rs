//! A study's outputs: `results.json` (every finished cell), `report.md` (the budget, the exact
//! command, one table per figure of the paper with its numbers beside ours, and whether each of the
//! paper's directions holds here) and PNG figures drawn with `plotters`.

use super::studies::TABLE5;
use super::{Cell, CellKind, CellResult, Preset, Study};
use crate::augment::ablation::Transform;
use crate::config::Config;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// Writes `OUT/results.json`, `OUT/report.md` and the study's figures for the cells finished so far.
/// `test_images` is the size of the test split, which sets how far apart two cells must be to differ.
pub fn write(out: &Path, study: Study, preset: Preset, cells: &[Cell], results: &[CellResult], base: &Config, test_images: usize) -> Result<()> {
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(out.join("results.json"), json).with_context(|| format!("--out {}: cannot write results.json", out.display()))?;
    let figures = figures(out, study, results)?;
    let mut md = String::new();
    let _ = writeln!(md, "# `simclr ablate --study {}` ({:?} preset)\n", study.name(), preset);
    md += &budget(preset, cells, results, base);
    md += &tables(study, results);
    if results.len() < cells.len() {
        let _ = writeln!(md, "**Partial: {} of {} cells finished; the verdicts below are on those only.**\n", results.len(), cells.len());
    }
    md += &findings(study, results, Noise::of(results, test_images));
    for f in figures {
        let _ = writeln!(md, "![{f}]({f})\n");
    }
    std::fs::write(out.join("report.md"), md).with_context(|| format!("--out {}: cannot write report.md", out.display()))
}

/// What `--list` prints: the cells and their settings, and what the preset costs.
pub fn listing(study: Study, preset: Preset, cells: &[Cell], base: &Config) -> String {
    let mut s = format!("study {} ({preset:?} preset), {} cells:\n", study.name(), cells.len());
    for c in cells {
        let _ = writeln!(s, "  {:<22} {:<13} row {:<16} column {:<12} {}", c.id, c.table, c.row, c.column, settings(&c.config, &c.kind));
    }
    s + &budget(preset, cells, &[], base)
}

/// One line of a cell's settings that differ between cells.
fn settings(c: &Config, kind: &CellKind) -> String {
    let what = match kind {
        CellKind::Contrastive(layers) => format!("SimCLR, linear eval of {}", layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("/")),
        CellKind::Supervised => "supervised".into(),
        CellKind::RandomInit => "no training, linear eval of h".into(),
    };
    let one_branch = c.augment.one_branch.as_ref().map(|t| format!(", one branch: {t}")).unwrap_or_default();
    format!(
        "{what}: {:?}x{} {}px, batch {}, {} epochs, τ {}{}, colour {}{one_branch}, head {:?}/{}",
        c.model.arch,
        c.model.width,
        c.model.image_size,
        c.optim.batch_size,
        c.optim.epochs,
        c.optim.temperature,
        if c.optim.l2_normalize { "" } else { " (no ℓ2 norm)" },
        c.augment.color_strength,
        c.model.head,
        c.model.proj_dim
    )
}

/// The budget section: the command, the shared settings, the data, the time.
fn budget(preset: Preset, cells: &[Cell], results: &[CellResult], base: &Config) -> String {
    let mut s = String::from("## Budget\n\n");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(s, "Command: `simclr {}`\n", args.join(" "));
    let (d, m, o) = (&base.data, &base.model, &base.optim);
    let _ = writeln!(
        s,
        "Shared settings: {:?} width {} on {} px views, head {:?} ({} layers, z of {}), {:?} at base LR {} ({:?} scaling), batch {}, τ {}, warm-up {} epochs, weight decay {}, colour strength {}, seed {}, precision {:?}. Data: `--dataset {}`{}{}. Evaluation: linear, L-BFGS on frozen features of un-augmented images, L2 chosen on 10% of the training images, test top-1.\n",
        m.arch,
        m.width,
        m.image_size,
        m.head,
        m.head_layers,
        m.proj_dim,
        o.optimizer,
        o.lr,
        o.lr_scaling,
        o.batch_size,
        o.temperature,
        o.warmup_epochs,
        o.weight_decay,
        base.augment.color_strength,
        base.run.seed,
        base.run.precision,
        d.dataset.name(),
        d.data.as_ref().map(|p| format!(" `--data {}`", p.display())).unwrap_or_default(),
        if d.limit > 0 { format!(", the first {} training images", d.limit) } else { String::new() },
    );
    let epochs: usize = cells.iter().map(|c| c.config.optim.epochs).sum();
    let length = match cells.first().map(|c| c.config.optim.max_steps).filter(|&s| s > 0) {
        Some(steps) => format!("{steps} steps a cell"),
        None => format!("{epochs} training epochs in all"),
    };
    let _ = writeln!(s, "Cells: {} finished of {} ({length}; each cell's own settings are in `cells/ID/config.toml`).", results.len(), cells.len());
    if !results.is_empty() {
        let secs: f64 = results.iter().map(|r| r.seconds).sum();
        let _ = writeln!(s, "Time: {:.1} min for the cells run here ({:.0} s a cell on average; cells finished by an earlier invocation count their own time).", secs / 60.0, secs / results.len() as f64);
    }
    if preset == Preset::Full {
        let _ = writeln!(
            s,
            "\nThe full preset is the paper's setting on ImageNet (1.28 M training images): one 100-epoch ResNet-50 run at batch 4096 took ~1.5 h on 128 TPU v3 cores (paper §2.3), so this study is about {:.0} such runs (~{:.0} h there). Elsewhere, its time is {:.0} M images ÷ the training rate `simclr bench step --arch resnet50 --image-size 224 --batch-size 256` measures on the device (ranks of an `mpirun` job add up); on a 2-core CPU, where ResNet-50 at 224 px trains a few images a second, that is years.",
            epochs as f64 / 100.0,
            1.5 * epochs as f64 / 100.0,
            1.28 * epochs as f64
        );
    }
    s + "\n"
}

fn find<'a>(results: &'a [CellResult], table: &str, row: &str, column: &str) -> Option<&'a CellResult> {
    results.iter().find(|r| r.table == table && r.row == row && r.column == column)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.1}"))
}

/// One cell of a Markdown table: ours, and the paper's in brackets when it has one.
fn ours_and_paper(r: Option<&CellResult>) -> String {
    match r {
        None => "—".into(),
        Some(r) if r.diverged.is_some() => "diverged".into(),
        Some(r) => match r.paper {
            Some(p) => format!("{} ({p:.1})", pct(r.main_top1())),
            None => pct(r.main_top1()),
        },
    }
}

fn tables(study: Study, results: &[CellResult]) -> String {
    let mut s = String::from("## Results\n\nTest top-1 % of the linear classifier on h; the paper's ImageNet number in brackets where it prints one.\n\n");
    if let Some(base) = find(results, "baseline", "random init", "-").and_then(CellResult::main_top1) {
        let _ = writeln!(s, "What pretraining has to beat: the same evaluation of the untrained network (torchvision's random initialisation) gives **{base:.1}**.\n");
    }
    match study {
        Study::Augment => {
            s += "### Transformations on one branch (paper Fig. 5): row = first, column = second, diagonal = alone\n\n";
            s += &pairs_table(results, ours_and_paper, CellResult::main_top1);
            s += "\n### Contrastive accuracy of the last epoch (%), same layout: how easily each pair's task was solved\n\n";
            s += &pairs_table(results, |r| pct(r.and_then(|r| r.contrast_acc).map(|a| 100.0 * a)), |r| r.contrast_acc.map(|a| 100.0 * a));
            s += "\n### Colour distortion strength, crop + colour on both views (paper Table 1)\n\n| strength | top-1 (paper) |\n|---|---|\n";
            for r in results.iter().filter(|r| r.table == "strength") {
                let _ = writeln!(s, "| {} | {} |", r.column, ours_and_paper(Some(r)));
            }
        }
        Study::Head => {
            s += "### Projection head (paper Fig. 8): top-1 of h, of the hidden layer (nonlinear) and of z\n\n| head | output dim | h | head:1 | z | steps |\n|---|---|---|---|---|---|\n";
            for r in results.iter().filter(|r| r.table == "head") {
                let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", r.row, r.column, pct(r.top1.get("h").copied()), pct(r.top1.get("head:1").copied()), pct(r.top1.get("z").copied()), r.steps);
            }
        }
        Study::Temperature => {
            s += "### Temperature (paper Table 5): contrastive accuracy and entropy of the last epoch, linear top-1\n\n| z | τ | entropy | contrastive acc % | top-1 | paper: entropy / contrastive acc / top-1 |\n|---|---|---|---|---|---|\n";
            for r in results.iter().filter(|r| r.table == "temperature") {
                let paper = TABLE5.iter().find(|p| (p.0 == (r.row == "ℓ2-normalised")) && p.1.to_string() == r.column);
                let paper = paper.map_or("—".into(), |p| format!("{} / {} / {}", p.2, p.3, p.4));
                let top1 = if r.diverged.is_some() { "diverged".into() } else { pct(r.main_top1()) };
                let _ = writeln!(s, "| {} | {} | {} | {} | {top1} | {paper} |", r.row, r.column, r.contrast_entropy.map_or("—".into(), |v| format!("{v:.2}")), pct(r.contrast_acc.map(|a| 100.0 * a)));
            }
        }
        Study::Scale => {
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
            s += "\n### Width and depth, SimCLR (linear eval) beside supervised training for the same epochs (paper Fig. 7)\n\n| encoder | trainable parameters | SimCLR | supervised | gap |\n|---|---|---|---|---|\n";
            for net in distinct(results, "size", |r| &r.row) {
                let (a, b) = (find(results, "size", &net, "SimCLR"), find(results, "size", &net, "supervised"));
                let gap = a.and_then(CellResult::main_top1).zip(b.and_then(CellResult::main_top1)).map(|(x, y)| x - y);
                let params = a.or(b).map_or("—".into(), |r| format!("{:.2} M", r.encoder_params as f64 / 1e6));
                let _ = writeln!(s, "| {net} | {params} | {} | {} | {} |", ours_and_paper(a), ours_and_paper(b), gap.map_or("—".into(), |g| format!("{g:+.1}")));
            }
        }
    }
    s + "\n"
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

fn distinct(results: &[CellResult], table: &str, key: impl Fn(&CellResult) -> &String) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in results.iter().filter(|r| r.table == table) {
        if !seen.contains(key(r)) {
            seen.push(key(r).clone());
        }
    }
    seen
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// How far apart two test accuracies must be before a verdict is drawn: twice the standard error of
/// the difference of two accuracies near the cells' mean `p`, each measured on the `n` test images
/// (2·√2·√(p(1 − p)/n), in points; about 95% for sampling noise alone — seed noise adds to it).
#[derive(Clone, Copy)]
struct Noise(f64);

impl Noise {
    fn of(results: &[CellResult], n: usize) -> Noise {
        let p = mean(results.iter().filter_map(CellResult::main_top1)).unwrap_or(50.0) / 100.0;
        Noise(100.0 * 2.0 * std::f64::consts::SQRT_2 * (p * (1.0 - p) / n.max(1) as f64).sqrt())
    }

    /// The verdict on a claim whose margin here is `diff` points (positive: the paper's direction).
    fn verdict(self, diff: f64) -> String {
        match diff {
            d if d > self.0 => "**holds here**".into(),
            d if d < -self.0 => "**does not hold here**".into(),
            _ => format!("**too close to call here** (within ±{:.1} points)", self.0),
        }
    }
}

fn verdict(holds: bool) -> &'static str {
    if holds {
        "**holds here**"
    } else {
        "**does not hold here**"
    }
}

/// Whether each of the paper's directions holds in these results, with the numbers.
fn findings(study: Study, results: &[CellResult], noise: Noise) -> String {
    let mut s = String::from("## The paper's findings at this scale\n\n");
    let _ = writeln!(s, "Test accuracies closer than ±{:.1} points are not told apart: that is twice the standard error of the difference of two cells' accuracies from the size of the test split alone; training with another seed moves a cell further.\n", noise.0);
    let top = |table: &str, row: &str, col: &str| find(results, table, row, col).and_then(CellResult::main_top1);
    if let Some(base) = top("baseline", "random init", "-") {
        let trained: Vec<f64> = results.iter().filter(|r| !matches!(r.table.as_str(), "baseline") && r.top1.contains_key("h")).filter_map(|r| r.top1.get("h").copied()).collect();
        if let (Some(best), Some(avg)) = (trained.iter().copied().reduce(f64::max), mean(trained.iter().copied())) {
            let beat = trained.iter().filter(|&&v| v > base).count();
            let _ = writeln!(
                s,
                "- How much the cells learnt: h of {beat} of {} pretrained networks beats the untrained network's {base:.1}; the best by {:+.1} points, the mean cell by {:+.1}. Where these margins are a few points, pretraining has learnt little at this budget and differences between cells of a point or two are within seed noise: the verdicts below are then weak evidence either way.",
                trained.len(),
                best - base,
                avg - base
            );
        }
    }
    match study {
        Study::Augment => {
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
        }
        Study::Head => {
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
        }
        Study::Temperature => {
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
        }
        Study::Scale => {
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
        }
    }
    s + "\n"
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

/// Draws the study's figures into `out`; returns their file names.
fn figures(out: &Path, study: Study, results: &[CellResult]) -> Result<Vec<String>> {
    crate::curves::register_font();
    let series = |table: &str, row: &str, layer: &str, x: &dyn Fn(&CellResult) -> Option<f64>| -> Vec<(f64, f64)> {
        results.iter().filter(|r| r.table == table && r.row == row).filter_map(|r| Some((x(r)?, *r.top1.get(layer)?))).collect()
    };
    let column = |r: &CellResult| r.column.parse::<f64>().ok();
    let mut files = Vec::new();
    match study {
        Study::Augment => {
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
        }
        Study::Head => {
            let mut all = Vec::new();
            for (row, layer) in [("linear", "h"), ("linear", "z"), ("nonlinear", "h"), ("nonlinear", "z")] {
                all.push((format!("{row} head, {layer}"), series("head", row, layer, &column)));
            }
            if let Some(none) = find(results, "head", "none", "-").and_then(CellResult::main_top1) {
                let xs: Vec<f64> = results.iter().filter(|r| r.table == "head").filter_map(column).collect();
                let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                if lo.is_finite() {
                    all.push(("no head (h = z)".into(), vec![(lo, none), (hi, none)]));
                }
            }
            lines(&out.join("head.png"), "projection head: linear top-1 % against the output dimension", "projection output dimension", &all)?;
            files.push("head.png".into());
        }
        Study::Temperature => {
            let all: Vec<(String, Vec<(f64, f64)>)> = ["ℓ2-normalised", "raw dot product"].iter().map(|row| (row.to_string(), series("temperature", row, "h", &column))).collect();
            lines(&out.join("temperature.png"), "temperature: linear top-1 %", "τ", &all)?;
            files.push("temperature.png".into());
        }
        Study::Scale => {
            let all: Vec<(String, Vec<(f64, f64)>)> = distinct(results, "batch-epochs", |r| &r.row)
                .iter()
                .map(|e| (e.clone(), series("batch-epochs", e, "h", &column)))
                .collect();
            lines(&out.join("batch-epochs.png"), "batch size and training length: linear top-1 %", "batch size", &all)?;
            files.push("batch-epochs.png".into());
            let size = |col: &str, layer: &str| -> Vec<(f64, f64)> {
                results.iter().filter(|r| r.table == "size" && r.column == col).filter_map(|r| Some((r.encoder_params as f64 / 1e6, *r.top1.get(layer)?))).collect()
            };
            lines(&out.join("size.png"), "width and depth: top-1 % against encoder parameters", "encoder parameters (millions)", &[("SimCLR (linear eval)".into(), size("SimCLR", "h")), ("supervised".into(), size("supervised", "supervised"))])?;
            files.push("size.png".into());
        }
    }
    Ok(files)
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a figure: {e:?}")
}

fn save(file: &Path, (w, h): (u32, u32), buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer holds w × h RGB pixels");
    img.save(file).with_context(|| format!("{}: cannot write the PNG", file.display()))
}

/// A square heat map of `values[row][column]` (missing cells blank) with the numbers written in,
/// and a last column of row means.
fn heatmap(file: &Path, title: &str, names: &[&str], values: &[Vec<Option<f64>>]) -> Result<()> {
    const CELL: i32 = 64;
    let n = names.len() as i32;
    let (left, top) = (90, 60);
    let size = ((left + (n + 1) * CELL + 20) as u32, (top + n * CELL + 20) as u32);
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let font = ("sans-serif", 15).into_font();
        root.draw_text(title, &("sans-serif", 16).into_font().color(&BLACK), (10, 8)).map_err(draw_error)?;
        let known: Vec<f64> = values.iter().flatten().flatten().copied().collect();
        let (lo, hi) = known.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let shade = |v: f64| {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
            RGBColor((255.0 - 200.0 * t) as u8, (255.0 - 120.0 * t) as u8, 255)
        };
        for (i, name) in names.iter().enumerate() {
            let i = i as i32;
            root.draw_text(name, &font.color(&BLACK), (left + i * CELL + 8, top - 20)).map_err(draw_error)?;
            root.draw_text(name, &font.color(&BLACK), (10, top + i * CELL + CELL / 2 - 8)).map_err(draw_error)?;
        }
        root.draw_text("mean", &font.color(&BLACK), (left + n * CELL + 8, top - 20)).map_err(draw_error)?;
        for (r, row) in values.iter().enumerate() {
            let cells: Vec<Option<f64>> = row.iter().copied().chain([mean(row.iter().flatten().copied())]).collect();
            for (c, v) in cells.into_iter().enumerate() {
                let (x, y) = (left + c as i32 * CELL, top + r as i32 * CELL);
                let fill = v.map_or(RGBColor(240, 240, 240), shade);
                root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], fill.filled())).map_err(draw_error)?;
                root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], RGBColor(160, 160, 160))).map_err(draw_error)?;
                if let Some(v) = v {
                    root.draw_text(&format!("{v:.1}"), &("sans-serif", 16).into_font().color(&BLACK), (x + 14, y + CELL / 2 - 8)).map_err(draw_error)?;
                }
            }
        }
        root.present().map_err(draw_error)?;
    }
    save(file, size, buf)
}

/// Lines of `(x, top-1)` points (x > 0, on a log scale), one per named series.
fn lines(file: &Path, title: &str, x_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let size = (720u32, 440u32);
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let points = || series.iter().flat_map(|(_, s)| s.iter());
        let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let (x0, x1) = if x0.is_finite() && x0 > 0.0 { (x0 / 1.3, x1 * 1.3) } else { (1.0, 10.0) };
        let (y0, y1) = if y0.is_finite() { (y0 - 2.0, y1 + 2.0) } else { (0.0, 100.0) };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("top-1 %")
            .x_labels(6)
            .x_label_formatter(&|x| short(*x))
            .max_light_lines(1)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_error)?;
        for (i, (name, s)) in series.iter().enumerate().filter(|(_, (_, s))| !s.is_empty()) {
            let colour = Palette99::pick(i).to_rgba();
            let mut s = s.clone();
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(s.iter().copied(), colour.stroke_width(2)))
                .map_err(draw_error)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            chart.draw_series(s.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(draw_error)?;
        }
        // The log axis labels only decades: each x of the data is written under the plot area.
        let mut xs: Vec<f64> = points().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        chart.draw_series(xs.iter().map(|&x| Text::new(short(x), (x, y0 + 0.02 * (y1 - y0)), ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90))))).map_err(draw_error)?;
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    save(file, size, buf)
}

/// `x` with at most three decimals and no trailing zeros.
fn short(x: f64) -> String {
    format!("{x:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
}
