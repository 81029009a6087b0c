//! Training curves as a picture (what TensorBoard's scalars show first): loss, contrastive
//! accuracy, learning rate, and online-probe and kNN accuracy against the step, read from one or
//! more runs' `metrics.jsonl` and drawn with `plotters` into a PNG. Pretraining refreshes
//! `OUT/curves.png` at every epoch end ([`crate::monitor::CurvesPlot`]); `simclr plot RUN...`
//! overlays several runs.

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// One series of one run: `(step, value)` points.
type Series = Vec<(f64, f64)>;

/// The curves of one run, read from its `metrics.jsonl`.
#[derive(Clone, Debug, Default)]
pub struct RunCurves {
    /// The run's name in the legend (its folder's name).
    pub name: String,
    /// NT-Xent loss per step.
    pub loss: Series,
    /// Official contrastive accuracy per step.
    pub contrast_acc: Series,
    /// Learning rate per step.
    pub lr: Series,
    /// Online-probe batch accuracy per step (labelled data only).
    pub probe_acc: Series,
    /// kNN-monitor top-1 at the epoch ends it ran.
    pub knn_top1: Series,
}

impl RunCurves {
    /// Reads `run/metrics.jsonl` (a pretraining run's `--out` folder). Lines that are not JSON
    /// objects with a `step` are an error naming the line.
    pub fn read(run: &Path) -> Result<Self> {
        let file = run.join("metrics.jsonl");
        let bytes = crate::files::read(&file, crate::files::ARRAY)
            .with_context(|| format!("{}: cannot read; give a pretraining run's --out folder", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let name = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run.display().to_string());
        let mut curves = RunCurves { name, ..Default::default() };
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", file.display(), n + 1))?;
            let Some(step) = row["step"].as_f64() else { bail!("{} line {}: no \"step\"", file.display(), n + 1) };
            for (key, series) in [
                ("loss", &mut curves.loss),
                ("contrast_acc", &mut curves.contrast_acc),
                ("lr", &mut curves.lr),
                ("probe_acc", &mut curves.probe_acc),
                ("knn_top1", &mut curves.knn_top1),
            ] {
                if let Some(v) = row[key].as_f64() {
                    series.push((step, v));
                }
            }
        }
        Ok(curves)
    }
}

/// Registers the embedded DejaVu Sans as plotters' "sans-serif" (plotters draws no text without it).
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans is a valid font"));
    });
}

const PANEL: (u32, u32) = (560, 360);

/// Draws the runs' curves into `file` (PNG): four panels — loss, contrastive accuracy, learning
/// rate, and probe (solid) / kNN (dots) accuracy — one colour per run.
pub fn plot(runs: &[RunCurves], file: &Path) -> Result<()> {
    register_font();
    let (w, h) = (2 * PANEL.0, 2 * PANEL.1);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let panels = root.split_evenly((2, 2));
        let pick = |f: fn(&RunCurves) -> &Series| runs.iter().map(|r| vec![(f(r), false)]).collect::<Vec<_>>();
        panel(&panels[0], "NT-Xent loss", runs, &pick(|r| &r.loss))?;
        panel(&panels[1], "contrastive accuracy", runs, &pick(|r| &r.contrast_acc))?;
        panel(&panels[2], "learning rate", runs, &pick(|r| &r.lr))?;
        let accuracy: Vec<_> = runs.iter().map(|r| vec![(&r.probe_acc, false), (&r.knn_top1, true)]).collect();
        panel(&panels[3], "online probe (line), kNN top-1 (dots)", runs, &accuracy)?;
        root.present().map_err(draw_error)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("the buffer holds w × h RGB pixels");
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    }
    img.save(file).with_context(|| format!("{}: cannot write the PNG", file.display()))
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the curves: {e:?}")
}

/// One panel: for each run, its series (`true`: drawn as dots, else as a line).
fn panel(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>, title: &str, runs: &[RunCurves], series: &[Vec<(&Series, bool)>]) -> Result<()> {
    let points = || series.iter().flatten().flat_map(|(s, _)| s.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if lo.is_finite() { (lo, if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) };
    let pad = 0.05 * (hi - lo);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
        .map_err(draw_error)?;
    chart.configure_mesh().x_desc("step").label_style(("sans-serif", 12)).draw().map_err(draw_error)?;
    for (i, (run, parts)) in runs.iter().zip(series).enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let mut labelled = false;
        for (s, dots) in parts {
            if s.is_empty() {
                continue;
            }
            let drawn = if *dots {
                chart.draw_series(s.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(draw_error)?
            } else {
                chart.draw_series(LineSeries::new(s.iter().copied(), colour.stroke_width(1))).map_err(draw_error)?
            };
            if !labelled && runs.len() > 1 {
                drawn.label(run.name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
                labelled = true;
            }
        }
    }
    if runs.len() > 1 {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(draw_error)?;
    }
    Ok(())
}
