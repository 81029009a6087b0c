//! A study's outputs: `results.json` (every finished run: a cell at a seed), `report.md` (the
//! budget, the exact command, one table per figure of the paper with its numbers beside ours, mean
//! ± SD over seeds, and the verdicts: the paper's claims as declared contrasts, tested by a paired
//! bootstrap over seeds and test images) and PNG figures drawn with `plotters`.

use super::{Cell, CellKind, CellResult, Preset, Run, Study};
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
    let (shown, checks, noise) = shown(results, test_images);
    let figures = figures(out, study, &shown, &Frame::of(&shown, noise))?;
    let mut md = String::new();
    let _ = writeln!(md, "# `simclr ablate --study {}` ({:?} preset)\n", study.name(), preset);
    md += &budget(preset, cells, results, base);
    md += &tables(study, &shown);
    if shown.len() < cells.len() {
        let _ = writeln!(md, "**Partial: {} of {} cells finished; the verdicts below are on those only.**\n", shown.len(), cells.len());
    }
    md += &checks;
    md += &findings(study, &shown, noise);
    md += &contrasts(study, preset, results, &shown);
    for f in figures {
        let _ = writeln!(md, "![{f}]({f})\n");
    }
    std::fs::write(out.join("report.md"), md).with_context(|| format!("--out {}: cannot write report.md", out.display()))
}

/// The study's figures of `results` drawn again into `out` (`--redraw`); returns their file names.
pub fn redraw(out: &Path, study: Study, results: &[CellResult], test_images: usize) -> Result<Vec<String>> {
    let (shown, _, noise) = shown(results, test_images);
    figures(out, study, &shown, &Frame::of(&shown, noise))
}

/// What a report shows of `results`: a row per cell (failed trainings flagged), the training
/// checks' section, and the test split's noise.
fn shown(results: &[CellResult], test_images: usize) -> (Vec<CellResult>, String, Noise) {
    let mut shown = by_cell(results);
    let checks = check_training(&mut shown, results);
    let noise = Noise::of(&shown, test_images);
    (shown, checks, noise)
}

/// What `--list` prints: the cells and their settings, the runs they make, and what the preset
/// costs.
pub fn listing(study: Study, preset: Preset, cells: &[Cell], runs: &[Run], base: &Config) -> String {
    let mut s = format!("study {} ({preset:?} preset), {} cells:\n", study.name(), cells.len());
    for c in cells {
        let _ = writeln!(s, "  {:<22} {:<13} row {:<16} column {:<12} {}", c.id, c.table, c.row, c.column, settings(&c.config, &c.kind));
    }
    let seeds = seeds(runs.iter().map(|r| r.cell.config.run.seed));
    let _ = writeln!(s, "{} runs: the cells at seed{} {}", runs.len(), if seeds.len() > 1 { "s" } else { "" }, seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
    for r in runs.iter().filter(|r| !r.same_as.is_empty() && r.cell.config.run.seed == seeds[0]) {
        let _ = writeln!(s, "  one run for {} and {} (identical settings)", r.cell.id, r.same_as.join(", "));
    }
    s += "claims tested (the verdicts, declared before the runs; contrast = Σ weight × top-1):\n";
    for claim in study.definition().claims(preset) {
        let terms: Vec<String> = claim.terms.iter().map(|(id, score, w)| format!("{}{id}:{score}", if *w < 0.0 { "− " } else { "+ " })).collect();
        let _ = writeln!(s, "  {}: {}", claim.text, terms.join(" "));
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
    let chunks = match c.optim.micro_batch {
        0 => String::new(),
        m => format!(" in chunks of {m}"),
    };
    format!(
        "{what}: {:?}x{} {}px, batch {}{chunks}, {} epochs, τ {}{}, colour {}{one_branch}, head {:?}/{}",
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

/// The drawn test split of `data` (`--test-fraction`), if any: its k-fold rotation over the
/// seeds and which folds `results` tested.
fn folds(data: &crate::config::DataSettings, results: &[CellResult]) -> String {
    if data.test_fraction == 0.0 {
        return String::new();
    }
    let k = crate::data::HoldOut::folds(data.test_fraction);
    let mut tested: Vec<usize> = results.iter().map(|r| r.config.data.test_fold).collect();
    (tested.sort_unstable(), tested.dedup());
    let so_far = match tested.len() {
        0 => String::new(),
        n if n == k => "; every fold tested, so every image once".to_string(),
        _ => format!("; folds tested: {}", tested.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    format!(
        ", a test split of {} of each class drawn with split seed {} (`--test-fraction`): {k} disjoint folds, seed S holding out fold S mod {k} ({k} consecutive seeds test every image once{so_far})",
        data.test_fraction, data.split_seed
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
        "Shared settings: {:?} width {} on {} px views, head {:?} ({} layers, z of {}), {:?} at base LR {} ({:?} scaling), batch {}, τ {}, warm-up {} epochs, weight decay {}, colour strength {}, smallest crop {} of the image, seed(s) {}, precision {:?}. Data: `--dataset {}`{}{}{}. Evaluation: linear, L-BFGS on frozen features of un-augmented images, L2 chosen on 10% of the training images, test top-1.\n",
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
        base.augment.crop_min_area,
        if results.is_empty() { base.run.seed.to_string() } else { seeds(results.iter().map(|r| r.config.run.seed)).iter().map(u64::to_string).collect::<Vec<_>>().join(", ") },
        base.run.precision,
        d.dataset.name(),
        d.data.as_ref().map(|p| format!(" `--data {}`", p.display())).unwrap_or_default(),
        if d.limit > 0 { format!(", the first {} training images", d.limit) } else { String::new() },
        folds(d, results),
    );
    let epochs: usize = cells.iter().map(|c| c.config.optim.epochs).sum();
    let length = match cells.first().map(|c| c.config.optim.max_steps).filter(|&s| s > 0) {
        Some(steps) => format!("{steps} steps a cell"),
        None => format!("{epochs} training epochs a seed"),
    };
    let finished = cells.iter().filter(|c| results.iter().any(|r| r.id == c.id)).count();
    let _ = writeln!(s, "Cells: {finished} finished of {} ({length}; each run's own settings are in `cells/ID/seed-S/config.toml`, and in `results.json`).", cells.len());
    let mut made_by: Vec<String> = results.iter().map(|r| format!("commit {} on {}", r.commit.as_deref().unwrap_or("unrecorded"), r.backend.as_deref().unwrap_or("an unrecorded backend"))).collect();
    made_by.sort();
    made_by.dedup();
    if !made_by.is_empty() {
        let _ = writeln!(s, "Made by: {} ({} runs).", made_by.join("; "), results.len());
    }
    if !results.is_empty() {
        let secs: f64 = results.iter().map(|r| r.seconds).sum();
        let _ = writeln!(s, "Time: {:.1} min for the runs reported here ({:.0} s a run on average; each run counts the time of the invocation that finished it).", secs / 60.0, secs / results.len() as f64);
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

pub(crate) fn find<'a>(results: &'a [CellResult], table: &str, row: &str, column: &str) -> Option<&'a CellResult> {
    results.iter().find(|r| r.table == table && r.row == row && r.column == column)
}

pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.1}"))
}

/// One cell of a Markdown table: ours, and the paper's in brackets when it has one.
pub(crate) fn ours_and_paper(r: Option<&CellResult>) -> String {
    let Some(r) = r else { return "—".into() };
    if r.diverged.is_some() {
        return "diverged".into();
    }
    let ours = score(Some(r), r.main_score().unwrap_or("h"));
    match (&r.failed, r.paper) {
        (Some(_), _) => format!("{ours} (did not train)"),
        (None, Some(p)) => format!("{ours} ({p:.1})"),
        (None, None) => ours,
    }
}

fn tables(study: Study, results: &[CellResult]) -> String {
    let mut s = String::from("## Results\n\nTest top-1 % of the linear classifier on h; the paper's ImageNet number in brackets where it prints one.\n\n");
    if let Some(base) = find(results, "baseline", "random init", "-").and_then(CellResult::main_top1) {
        let _ = writeln!(s, "What pretraining has to beat: the same evaluation of the untrained network (torchvision's random initialisation) gives **{base:.1}**.\n");
    }
    s += &study.definition().tables(results);
    s + "\n"
}

pub(crate) fn distinct(results: &[CellResult], table: &str, key: impl Fn(&CellResult) -> &String) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in results.iter().filter(|r| r.table == table) {
        if !seen.contains(key(r)) {
            seen.push(key(r).clone());
        }
    }
    seen
}

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// How far apart two test accuracies must be before a verdict is drawn: twice the standard error of
/// the difference of two accuracies near the cells' mean `p`, each measured on the `n` test images
/// (2·√2·√(p(1 − p)/n), in points; about 95% for sampling noise alone — seed noise adds to it).
#[derive(Clone, Copy)]
pub(crate) struct Noise(pub(crate) f64);

impl Noise {
    pub(crate) fn of(results: &[CellResult], n: usize) -> Noise {
        let p = mean(results.iter().filter_map(CellResult::main_top1)).unwrap_or(50.0) / 100.0;
        Noise(100.0 * 2.0 * std::f64::consts::SQRT_2 * (p * (1.0 - p) / n.max(1) as f64).sqrt())
    }

    /// How a margin of `diff` points (positive: the paper's direction) compares with the noise:
    /// a description, not a test (the declared contrasts are the verdicts).
    pub(crate) fn verdict(self, diff: f64) -> String {
        match diff {
            d if d > self.0 => format!("in the paper's direction, beyond ±{:.1}", self.0),
            d if d < -self.0 => format!("against the paper's direction, beyond ±{:.1}", self.0),
            _ => format!("within ±{:.1}", self.0),
        }
    }
}

pub(crate) fn verdict(holds: bool) -> &'static str {
    if holds {
        "in the paper's direction"
    } else {
        "against the paper's direction"
    }
}

/// Whether each of the paper's directions holds in these results, with the numbers.
fn findings(study: Study, results: &[CellResult], noise: Noise) -> String {
    let mut s = String::from("## Reading the tables\n\n");
    let _ = writeln!(s, "A description of the tables, not a test: where a line compares the best of several cells, it is a maximum over cells, and ±{:.1} points is only twice the standard error of a difference from the size of the test split (seed noise comes on top). The verdicts are the declared contrasts below, where the study has them.\n", noise.0);
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
    s += &study.definition().findings(results, noise);
    s + "\n"
}

pub(crate) fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

/// Draws the study's figures into `out`; returns their file names.
fn figures(out: &Path, study: Study, results: &[CellResult], frame: &Frame) -> Result<Vec<String>> {
    crate::curves::register_font();
    study.definition().figures(out, results, frame)
}

/// The points of the cells of `table`'s `row`: x from each cell by `x`, the mean top-1 of `layer`
/// and its SD over seeds.
pub(crate) fn series(results: &[CellResult], table: &str, row: &str, layer: &str, x: &dyn Fn(&CellResult) -> Option<f64>) -> Vec<Point> {
    results.iter().filter(|r| r.table == table && r.row == row).filter_map(|r| Some(Point::of(r, x(r)?, layer, None))).collect()
}

/// A cell's column as a number (an output size, a τ, a batch size).
pub(crate) fn column(r: &CellResult) -> Option<f64> {
    r.column.parse::<f64>().ok()
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a figure: {e:?}")
}

fn save(file: &Path, (w, h): (u32, u32), buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer holds w × h RGB pixels");
    img.save(file).with_context(|| format!("{}: cannot write the PNG", file.display()))
}

/// A square heat map of `values[row][column]` (missing cells blank) with the numbers written in,
/// a last column of row means, and a colour bar from the lowest to the highest value.
pub(crate) fn heatmap(file: &Path, title: &str, names: &[&str], values: &[Vec<Option<f64>>]) -> Result<()> {
    const CELL: i32 = 64;
    const BAR: i32 = 90;
    let n = names.len() as i32;
    let (left, top) = (90, 60);
    let size = ((left + (n + 1) * CELL + 20 + BAR) as u32, (top + n * CELL + 20) as u32);
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
        if lo.is_finite() {
            // The colour bar: the highest value at the top.
            let (x, height) = (left + (n + 1) * CELL + 24, n * CELL);
            for k in 0..height {
                let v = hi - (hi - lo) * k as f64 / (height - 1).max(1) as f64;
                root.draw(&Rectangle::new([(x, top + k), (x + 18, top + k + 1)], shade(v).filled())).map_err(draw_error)?;
            }
            root.draw(&Rectangle::new([(x, top), (x + 18, top + height)], RGBColor(160, 160, 160))).map_err(draw_error)?;
            root.draw_text(&format!("{hi:.1}"), &font.color(&BLACK), (x + 22, top)).map_err(draw_error)?;
            root.draw_text(&format!("{lo:.1}"), &font.color(&BLACK), (x + 22, top + height - 14)).map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    save(file, size, buf)
}

/// A point of a line plot: x, the (mean) top-1, its SD over seeds when there were several, and
/// an optional name written beside it.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub sd: Option<f64>,
    pub name: Option<String>,
}

impl Point {
    /// The point of cell `r` at `x`: its top-1 of `layer` and SD.
    pub fn of(r: &CellResult, x: f64, layer: &str, name: Option<String>) -> Point {
        Point { x, y: r.top1.get(layer).copied().unwrap_or(f64::NAN), sd: r.top1_sd.get(layer).copied(), name }
    }
}

/// What every line plot of a report shows besides its lines: the untrained network's top-1 (a
/// dashed line), and the noise of a single run's accuracy (error bars of ±2 standard errors of
/// the test split, where a point has no SD over seeds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub untrained: Option<f64>,
    pub two_se: f64,
}

impl Frame {
    pub fn of(results: &[CellResult], noise: Noise) -> Frame {
        let untrained = find(results, "baseline", "random init", "-").and_then(CellResult::main_top1);
        Frame { untrained, two_se: noise.0 / std::f64::consts::SQRT_2 }
    }
}

/// Lines of points (x > 0, on a log scale), one per named series, with error bars (± SD over
/// seeds, or ±2 SE of the test split for one run), the untrained network's line, the legend
/// beside the plot (never over the data) and `notes` under it.
pub(crate) fn lines(file: &Path, title: &str, x_desc: &str, series: &[(String, Vec<Point>)], frame: &Frame, notes: &[String]) -> Result<()> {
    let size = (960u32, 460u32);
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (plot, legend) = root.split_horizontally(700);
        let points = || series.iter().flat_map(|(_, s)| s.iter()).filter(|p| p.y.is_finite() && p.x > 0.0);
        let err = |p: &Point| p.sd.unwrap_or(frame.two_se);
        let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.x), hi.max(p.x)));
        let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.y - err(p)), hi.max(p.y + err(p))));
        let (y0, y1) = frame.untrained.map_or((y0, y1), |u| (y0.min(u), y1.max(u)));
        // The series side by side around each x, so that points at one x and their bars do not
        // hide each other: wide apart when every point is at one x (a study at one size).
        let single = x0.is_finite() && x0 == x1;
        let spread = if single { 1.2f64 } else { 1.03 };
        let dodge = |i: usize| if series.len() > 1 { spread.powf(2.0 * i as f64 / (series.len() - 1) as f64 - 1.0) } else { 1.0 };
        let (x0, x1) = if x0.is_finite() { (x0 / 1.3, x1 * 1.3) } else { (1.0, 10.0) };
        let (y0, y1) = if y0.is_finite() { (y0 - 1.0, y1 + 1.0) } else { (0.0, 100.0) };
        let mut chart = ChartBuilder::on(&plot)
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
            // Each x of the data is written under the plot area below, so the axis names none
            // (a decade's label would repeat one).
            .x_label_formatter(&|_| String::new())
            .max_light_lines(1)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_error)?;
        let grey = RGBColor(110, 110, 110);
        if let Some(u) = frame.untrained {
            chart.draw_series(DashedLineSeries::new(vec![(x0, u), (x1, u)], 8, 5, grey.stroke_width(2))).map_err(draw_error)?;
        }
        let mut keys: Vec<(String, RGBAColor, bool)> = Vec::new();
        for (i, (name, s)) in series.iter().enumerate() {
            let mut s: Vec<Point> = s.iter().filter(|p| p.y.is_finite() && p.x > 0.0).map(|p| Point { x: p.x * dodge(i), ..p.clone() }).collect();
            if s.is_empty() {
                continue;
            }
            let colour = Palette99::pick(i).to_rgba();
            s.sort_by(|a, b| a.x.total_cmp(&b.x));
            chart.draw_series(LineSeries::new(s.iter().map(|p| (p.x, p.y)), colour.stroke_width(2))).map_err(draw_error)?;
            // Error bars: the vertical span and its caps (the x axis is logarithmic).
            for p in &s {
                let (lo, hi, l, r) = (p.y - err(p), p.y + err(p), p.x / 1.025, p.x * 1.025);
                let bar = [vec![(p.x, lo), (p.x, hi)], vec![(l, lo), (r, lo)], vec![(l, hi), (r, hi)]];
                chart.draw_series(bar.into_iter().map(|path| PathElement::new(path, colour.stroke_width(1)))).map_err(draw_error)?;
            }
            chart.draw_series(s.iter().map(|p| Circle::new((p.x, p.y), 4, colour.filled()))).map_err(draw_error)?;
            let named = s.iter().filter_map(|p| Some((p.x, p.y, p.name.as_ref()?)));
            // Each name up and to the right of its point, clear of the point and its bar.
            let label = |(x, y, n): (f64, f64, &String)| EmptyElement::at((x, y)) + Text::new(n.clone(), (8, -16), ("sans-serif", 12).into_font().color(&BLACK));
            chart.draw_series(named.map(label)).map_err(draw_error)?;
            keys.push((name.clone(), colour, false));
        }
        if frame.untrained.is_some() {
            keys.push(("untrained network".into(), grey.to_rgba(), true));
        }
        // Each x of the data, written under the plot area (the log axis would label decades).
        let mut xs: Vec<f64> = points().map(|p| p.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        chart.draw_series(xs.iter().map(|&x| Text::new(short(x), (x, y0 + 0.02 * (y1 - y0)), ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90))))).map_err(draw_error)?;
        // The legend, beside the plot.
        let font = ("sans-serif", 13).into_font();
        let mut y = 50;
        for (name, colour, dashed) in &keys {
            let style = colour.stroke_width(2);
            if *dashed {
                legend.draw(&PathElement::new(vec![(8, y + 7), (16, y + 7)], style)).map_err(draw_error)?;
                legend.draw(&PathElement::new(vec![(22, y + 7), (30, y + 7)], style)).map_err(draw_error)?;
            } else {
                legend.draw(&PathElement::new(vec![(8, y + 7), (30, y + 7)], style)).map_err(draw_error)?;
            }
            legend.draw_text(name, &font.color(&BLACK), (38, y)).map_err(draw_error)?;
            y += 22;
        }
        let bars = if points().any(|p| p.sd.is_some()) { "bars: ± SD over seeds".to_string() } else { format!("bars: ±{:.1} (2 SE of the test split, one run)", frame.two_se) };
        for line in std::iter::once(&bars).chain(notes) {
            y += 8;
            for chunk in wrap(line, 34) {
                legend.draw_text(&chunk, &font.color(&RGBColor(60, 60, 60)), (8, y)).map_err(draw_error)?;
                y += 18;
            }
        }
        root.present().map_err(draw_error)?;
    }
    save(file, size, buf)
}

/// `text` in lines of at most about `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// `x` with at most three decimals and no trailing zeros.
fn short(x: f64) -> String {
    format!("{x:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The report's rows: one per cell, its scores averaged over the seeds it ran at (the standard
/// deviation and the seeds kept beside them); a cell at one seed is shown as stored.
pub fn by_cell(results: &[CellResult]) -> Vec<CellResult> {
    let mut rows: Vec<CellResult> = Vec::new();
    for r in results {
        if rows.iter().any(|row| row.id == r.id) {
            continue;
        }
        let runs: Vec<&CellResult> = results.iter().filter(|x| x.id == r.id).collect();
        let mut row = r.clone();
        if runs.len() > 1 {
            let avg = |f: &dyn Fn(&CellResult) -> Option<f64>| mean(runs.iter().filter_map(|x| f(x)));
            // A layer's mean and SD over the runs that have it (a diverged run has none).
            let mut layers: Vec<&String> = runs.iter().flat_map(|x| x.top1.keys()).collect();
            layers.sort();
            layers.dedup();
            for layer in layers {
                let v: Vec<f64> = runs.iter().filter_map(|x| x.top1.get(layer).copied()).collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                row.top1.insert(layer.clone(), m);
                row.top1_sd.insert(layer.clone(), (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt());
            }
            (row.contrast_acc, row.contrast_entropy, row.loss) = (avg(&|x| x.contrast_acc), avg(&|x| x.contrast_entropy), avg(&|x| x.loss));
            row.seconds = runs.iter().map(|x| x.seconds).sum();
            let diverged: Vec<String> = runs.iter().filter_map(|x| x.diverged.as_ref().map(|d| format!("seed {}: {d}", x.config.run.seed))).collect();
            row.diverged = (diverged.len() == runs.len()).then(|| diverged.join("; "));
        }
        rows.push(row);
    }
    rows
}

/// A cell's score on `layer`: the mean ± SD over seeds where it ran at several.
pub(crate) fn score(r: Option<&CellResult>, layer: &str) -> String {
    match r.and_then(|r| Some((r.top1.get(layer)?, r.top1_sd.get(layer)))) {
        None => "—".into(),
        Some((m, Some(sd))) => format!("{m:.1} ± {sd:.1}"),
        Some((m, None)) => format!("{m:.1}"),
    }
}

/// A claim of the paper, declared before the runs as a contrast of cells: `Σ weight · top-1`
/// over its terms (cell id, score), positive in the paper's direction.
pub(crate) struct Claim {
    /// The claim, in the paper's words.
    pub text: &'static str,
    /// The paper's numbers for it.
    pub paper: &'static str,
    /// (cell id, score name, weight).
    pub terms: Vec<(&'static str, &'static str, f64)>,
}

impl Claim {
    /// `a` better than `b` on `score`.
    pub fn better(text: &'static str, paper: &'static str, a: &'static str, b: &'static str, score: &'static str) -> Claim {
        Claim { text, paper, terms: vec![(a, score, 1.0), (b, score, -1.0)] }
    }

    /// A change gains more in one setting than in another: `(a − a₀) − (b − b₀)`, each pair
    /// (changed cell, unchanged cell, score).
    pub fn gains_more(text: &'static str, paper: &'static str, a: (&'static str, &'static str, &'static str), b: (&'static str, &'static str, &'static str)) -> Claim {
        Claim { text, paper, terms: vec![(a.0, a.2, 1.0), (a.1, a.2, -1.0), (b.0, b.2, -1.0), (b.1, b.2, 1.0)] }
    }
}

/// The distinct `seeds`, ascending.
pub(crate) fn seeds(seeds: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut seeds: Vec<u64> = seeds.into_iter().collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds
}

/// Whether each supervised cell trained at all: its top-1 against a linear classifier on the
/// untrained network of the same architecture, width and image size in the study (the floor any
/// trained network must clear), as a paired contrast over seeds and test images. A cell whose 95%
/// interval reaches 0 is marked `failed` in `rows` (its tables say "did not train", the claims
/// that use it are not tested). Returns the report's section, empty when no supervised cell ran.
pub fn check_training(rows: &mut [CellResult], results: &[CellResult]) -> String {
    let untrained = |r: &CellResult| {
        let m = &r.config.model;
        rows.iter().find(|u| u.trains == Some(super::Trains::Nothing) && u.config.model.arch == m.arch && u.config.model.width == m.width && u.config.model.image_size == m.image_size).map(|u| u.id.clone())
    };
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for r in rows.iter().filter(|r| r.trains == Some(super::Trains::Supervised) && r.diverged.is_none()) {
        let Some(floor) = untrained(r) else {
            lines.push(format!("- {}: not checked (the study has no untrained network of its architecture and width)", r.id));
            continue;
        };
        let line = match measure(&[(&r.id, "supervised", 1.0), (&floor, "h", -1.0)], results) {
            Err(why) => format!("not checked: {why}"),
            Ok((seeds, c)) if c.ci95.0 > 0.0 => format!("trained: {:+.2} over {floor} ({seeds} seed(s); 95% interval [{:+.2}, {:+.2}])", c.estimate, c.ci95.0, c.ci95.1),
            Ok((seeds, c)) => {
                let why = format!("{:+.2} over the untrained {floor} ({seeds} seed(s); 95% interval [{:+.2}, {:+.2}]), no better than random features", c.estimate, c.ci95.0, c.ci95.1);
                failed.push((r.id.clone(), why.clone()));
                format!("**did not train**: {why}; its comparisons are not evidence")
            }
        };
        lines.push(format!("- {}: {line}", r.id));
    }
    for (id, why) in failed {
        if let Some(row) = rows.iter_mut().find(|r| r.id == id) {
            row.failed = Some(why);
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    format!("## Training checks\n\nA supervised network that does not beat a linear classifier on the untrained network of the same architecture and width (paired bootstrap over seeds and test images) has not trained (too few steps, a bad learning rate); it is flagged, not reported as a finding.\n\n{}\n\n", lines.join("\n"))
}

/// The verdicts: each declared claim's contrast, tested over seeds and test images.
fn contrasts(study: Study, preset: Preset, results: &[CellResult], rows: &[CellResult]) -> String {
    let claims = study.definition().claims(preset);
    if claims.is_empty() {
        return String::new();
    }
    let mut s = String::from("## Verdicts: the paper's claims as contrasts declared before the runs\n\n");
    let _ = writeln!(s, "Each claim is one contrast of cells fixed in the code before any cell ran (`simclr ablate --study {} --list` names them), positive in the paper's direction, averaged over the seeds at which all its cells finished. The interval is the central 95% of {} bootstrap replicates that draw the seeds and the test images with replacement, the same images for every cell (paired; on a drawn test split, each seed's own fold): it counts seed noise and test-set noise. **Reproduced** when the interval lies above 0, **opposite** when below, **inconclusive** when it holds 0.\n", study.name(), crate::eval::paired::REPLICATES);
    s += "| claim | paper | ours: contrast (per seed) | 95% interval | p | verdict |\n|---|---|---|---|---|---|\n";
    for claim in &claims {
        let _ = writeln!(s, "| {} | {} | {} |", claim.text, claim.paper, tested(claim, results, rows));
    }
    s + "\n"
}

/// A claim's measured columns: the contrast, its interval, p and verdict; or why it is missing
/// (a term's cell not finished, diverged, or failed its training check in `rows`).
fn tested(claim: &Claim, results: &[CellResult], rows: &[CellResult]) -> String {
    let untrained: Vec<&str> = claim.terms.iter().map(|t| t.0).filter(|id| rows.iter().any(|r| r.id == *id && r.failed.is_some())).collect();
    if !untrained.is_empty() {
        return format!("not tested: {} did not train (Training checks) | | |", untrained.join(", "));
    }
    match measure(&claim.terms, results) {
        Err(why) => format!("not measured: {why} | | |"),
        Ok((seeds, c)) => {
            let per_seed: Vec<String> = c.per_seed.iter().map(|d| format!("{d:+.2}")).collect();
            let verdict = match c.ci95 {
                (lo, _) if lo > 0.0 => "**reproduced**",
                (_, hi) if hi < 0.0 => "**opposite**",
                _ => "**inconclusive**",
            };
            let p = if c.p_value * crate::eval::paired::REPLICATES as f64 <= 2.0 { format!("< {:.0e}", 2.0 / crate::eval::paired::REPLICATES as f64) } else { if c.p_value >= 0.01 { format!("{:.2}", c.p_value) } else { format!("{:.0e}", c.p_value) } };
            format!("{:+.2} ({}; {} seed{}) | [{:+.2}, {:+.2}] | {p} | {verdict}", c.estimate, per_seed.join(", "), seeds, if seeds > 1 { "s" } else { "" }, c.ci95.0, c.ci95.1)
        }
    }
}

/// The contrast `Σ weight · top-1` of `terms` (cell id, score, weight) over the seeds at which
/// every term's cell finished, paired over seeds and test images (`eval::paired::contrast_on`: the
/// runs of one seed share its test fold), and
/// the number of those seeds; or why it cannot be measured.
fn measure(terms: &[(&str, &str, f64)], results: &[CellResult]) -> std::result::Result<(usize, crate::eval::paired::Contrast), String> {
    let run = |id: &str, seed: u64| results.iter().find(|r| r.id == id && r.config.run.seed == seed);
    let mut seeds = seeds(results.iter().map(|r| r.config.run.seed));
    seeds.retain(|&seed| terms.iter().all(|(id, score, _)| run(id, seed).is_some_and(|r| r.hits.contains_key(*score))));
    if seeds.is_empty() {
        let missing: Vec<&str> = terms.iter().map(|t| t.0).filter(|id| !results.iter().any(|r| r.id == *id && r.diverged.is_none())).collect();
        return Err(if missing.is_empty() { "no seed at which every cell finished".into() } else { format!("{} not finished or diverged", missing.join(", ")) });
    }
    let hits: Vec<Vec<&[bool]>> = seeds.iter().map(|&seed| terms.iter().map(|(id, score, _)| run(id, seed).expect("kept above").hits[*score].0.as_slice()).collect()).collect();
    // The runs of one seed share its test fold (`Cell::at_seed`).
    let folds: Vec<usize> = seeds.iter().map(|&seed| run(terms[0].0, seed).expect("kept above").config.data.test_fold).collect();
    let weights: Vec<f64> = terms.iter().map(|t| t.2).collect();
    crate::eval::paired::contrast_on(&hits, &folds, &weights, 0).map(|c| (seeds.len(), c)).map_err(|e| e.to_string())
}
