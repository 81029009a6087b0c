//! What each command prints on stdout, made from the typed results the library returns (the
//! files it wrote — report.json, import.json, --json — hold the same values in full).

use simclr::ablate::Ablated;
use simclr::bench::{DataRow, SearchBench, StepResult};
use simclr::commands::{ClassMetrics, EmbedMetrics};
use simclr::eval::report::Report;
use simclr::export::{Exported, Holds};
use simclr::import::ImportReport;
use simclr::search::{Asked, Entry, Found};
use std::fmt::Write as _;
use std::path::Path;

/// A classifier's line: `what`, then its test top-1 and top-5 (and training accuracy, where
/// it has one) in percent.
pub fn classified<E: serde::Serialize>(r: &Report<ClassMetrics<E>>, what: &str) -> String {
    let m = &r.metrics;
    let mut line = format!("{what}: top-1 {:.2}%, top-5 {:.2}%", 100.0 * m.top1, 100.0 * m.top5);
    if let Some(train) = m.train_top1 {
        let _ = write!(line, ", train {:.2}%", 100.0 * train);
    }
    line
}

/// `simclr compare`'s lines.
pub fn compared(c: &simclr::eval::paired::Paired, a: &std::path::Path, b: &std::path::Path) -> String {
    format!(
        "{}: top-1 {:.2}%\n{}: top-1 {:.2}%\ndifference {:+.2} points on {} test images; only the first right on {}, only the second on {}; McNemar exact p = {:.3e}",
        a.display(), 100.0 * c.top1_a, b.display(), 100.0 * c.top1_b, 100.0 * (c.top1_a - c.top1_b), c.images, c.only_a, c.only_b, c.p_value
    )
}

/// `simclr embed`'s line.
pub fn embedded(r: &Report<EmbedMetrics>) -> String {
    let m = &r.metrics;
    format!("embed ({}, layer {}): {} × {} features in {}", r.source(), m.layer, m.images, m.dim, r.out.join("features.npy").display())
}

/// One row of the embeddings: its number, label and file where known.
fn entry(e: &Entry) -> String {
    let mut s = format!("row {:>6}", e.row);
    if let Some(label) = e.label {
        let _ = write!(s, "  label {label:>3}");
    }
    if let Some(file) = &e.file {
        let _ = write!(s, "  {}", file.display());
    }
    s
}

/// `simclr search`: the query, then one line per neighbour, best first.
pub fn found(f: &Found) -> String {
    let mut out = match &f.query {
        Asked::Row(e) => format!("query: {}", entry(e)),
        Asked::Image(file) => format!("query: {}", file.display()),
    };
    for (rank, n) in f.neighbours.iter().enumerate() {
        let _ = write!(out, "\n{:>3}. cos {:+.4}  {}", rank + 1, n.similarity, entry(&n.entry));
    }
    if let Some(png) = &f.png {
        let _ = write!(out, "\nwrote {}", png.display());
    }
    out
}

/// `simclr import`'s line.
pub fn imported(r: &ImportReport, out: &Path) -> String {
    let shape = &r.shape;
    let mut what = format!("{:?} width {} ({:?} stem", shape.arch, shape.width, shape.stem);
    for (name, ratio) in [("sk_ratio", shape.sk_ratio), ("se_ratio", shape.se_ratio)] {
        if ratio > 0.0 {
            let _ = write!(what, ", {name} {ratio}");
        }
    }
    what.push(')');
    if let Some(h) = &r.head {
        let _ = write!(what, ", its {}-layer projection head (z of {})", h.layers, h.proj_dim);
    }
    if let (Some(c), Some(layer)) = (&r.classifier, r.classifier_layer) {
        let _ = write!(what, " and its {}-class classifier on layer {layer}", c.last().copied().unwrap_or(0));
    }
    let source = if r.prefix.is_empty() { String::new() } else { format!(", prefix {:?}", r.prefix) };
    format!(
        "imported {what} from a {} file ({} tensors{source}, {} ignored) into {}: use --checkpoint {}\ninput: {}",
        r.format,
        r.tensors_loaded,
        r.ignored.len(),
        out.display(),
        out.display(),
        r.input
    )
}

/// `simclr predict`'s lines: each image's classes, most probable first.
pub fn predicted(p: &simclr::eval::predict::Predictions) -> String {
    let mut out = format!("{} classes of {} (classifier on layer {}, {} px):", p.classes, p.checkpoint.display(), p.layer, p.image_size);
    for one in &p.predictions {
        let guesses: Vec<String> = one.top.iter().map(|g| format!("{} ({:.1}%)", g.name, 100.0 * g.probability)).collect();
        let _ = write!(out, "\n{}: {}", one.image.display(), guesses.join(", "));
    }
    out
}

/// `simclr export`'s line, with how to load the file.
pub fn exported(e: &Exported) -> String {
    let (dir, file) = (e.checkpoint.display(), e.file.display());
    match &e.holds {
        Holds::Onnx { layer, image_size: size, output } => format!(
            "exported the network up to {layer} of {dir} to {file} (ONNX opset 18, input \"input\" [N, 3, {size}, {size}] RGB in [0, 1], no mean/std normalisation; output \"{output}\")"
        ),
        Holds::Torchvision { arch, width, stem, tensors, .. } => format!(
            "exported the {} encoder (width {width}, {}) of {dir} as {tensors} tensors under torchvision's names into {file}; in PyTorch: {}",
            format!("{arch:?}").to_lowercase(),
            simclr::export::stem_layout(*stem),
            e.holds.pytorch_code(&e.file).unwrap_or_default()
        ),
    }
}

/// `simclr ablate`: the listing, or what ran and where the report is.
pub fn ablated(a: &Ablated) -> String {
    match a {
        Ablated::Listed(listing) => listing.trim_end().to_string(),
        Ablated::Ran { study, ran, kept, seconds, report } => {
            format!("ablate {}: {ran} runs trained in {:.1} min, {kept} found finished; report {}", study.name(), seconds / 60.0, report.display())
        }
        Ablated::Redrawn { study, figures } => {
            let names: Vec<String> = figures.iter().map(|f| f.display().to_string()).collect();
            format!("ablate {}: figures drawn again from results.json: {}", study.name(), names.join(", "))
        }
    }
}

/// `simclr demo`'s comparison.
pub fn demo(r: &simclr::demo::DemoResult) -> String {
    [
        "linear probe test accuracy on 1,000 held-out images:".to_string(),
        format!("  SimCLR-pretrained encoder:                   {:.2}%", 100.0 * r.pretrained),
        format!("  same network before pretraining (zero-γ):    {:.2}%  ({:+.2} points)", 100.0 * r.initial, 100.0 * (r.pretrained - r.initial)),
        format!("  random init, default γ = 1 (strong baseline): {:.2}%  ({:+.2} points)", 100.0 * r.random, 100.0 * (r.pretrained - r.random)),
    ]
    .join("\n")
}

/// Peak resident memory, or `n/a` where the system does not say.
fn peak_rss(width: usize) -> String {
    simclr::bench::peak_rss_mib().map(|m| format!("{m:>width$.0} MiB")).unwrap_or_else(|| "n/a".into())
}

/// `simclr pretrain`'s closing line (none when no step ran in this invocation).
pub fn pretrained(done: &simclr::pretrain::Pretrained) -> Option<String> {
    let last = done.history.last()?;
    Some(format!(
        "pretrained {} steps: loss {:.4}, contrastive acc {:.3}; checkpoint {}; peak RSS {}",
        last.step,
        last.loss,
        last.contrast_acc,
        done.checkpoint.display(),
        peak_rss(0)
    ))
}

/// `simclr bench data`'s table.
pub fn bench_data(rows: &[DataRow]) -> String {
    let mut s = format!("{:>6}  {:<22} {:>14}", "size", "source", "views/s/core");
    for r in rows {
        let _ = write!(s, "\n{:>6}  {:<22} {:>14.0}", r.image_size, r.source, r.views_per_sec_per_core);
    }
    s
}

/// `simclr bench search`'s table.
pub fn bench_search(r: &SearchBench) -> String {
    [
        format!("{} rows × {} dims ({} clusters), {} queries, k {}:", r.rows, r.dim, r.clusters, r.queries, r.k),
        format!("  exact, one query at a time   {:>9.3} ms/query", r.exact_ms_per_query),
        format!("  exact, all queries at once   {:>9.3} ms/query", r.exact_batched_ms_per_query),
        format!("  hnsw build                   {:>9.1} s", r.hnsw_build_s),
        format!("  hnsw, one query at a time    {:>9.3} ms/query   recall@{} {:.4}", r.hnsw_ms_per_query, r.k, r.hnsw_recall),
    ]
    .join("\n")
}

/// `simclr bench epoch`'s breakdown of the wall time.
pub fn bench_epoch(done: &simclr::pretrain::Pretrained, batch_size: usize) -> String {
    let t = &done.timing;
    let images = done.history.len() * batch_size;
    [
        format!("epoch of {} steps ({images} images, batch {batch_size}):", done.history.len()),
        format!("  wall        {:>9.1} s   {:.1} images/s", t.wall_s, images as f64 / t.wall_s),
        format!("  step        {:>9.1} s", t.step_s),
        format!("  data wait   {:>9.1} s", t.data_wait_s),
        format!("  checkpoint  {:>9.1} s", t.checkpoint_s),
        format!("  peak RSS    {}", peak_rss(9)),
    ]
    .join("\n")
}

/// `simclr bench step`'s line.
pub fn bench_step(r: &StepResult) -> String {
    format!(
        "{} batch {}{} at {} px on {} ({:?}, {:?}): median step {:.3} s, {:.1} images/s, peak RSS {}",
        r.model,
        r.batch_size,
        if r.micro_batch > 0 { format!(" in chunks of {}", r.micro_batch) } else { String::new() },
        r.image_size,
        r.device,
        r.precision,
        r.memory_format,
        r.median_step_s,
        r.images_per_sec,
        r.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into())
    )
}

/// `simclr recipes`: each recipe's name, what it trains, its source and its settings.
pub fn recipes() -> String {
    let each = simclr::config::recipe::RECIPES.iter().map(|r| format!("{}\n  {}\n  source: {}\n  settings:{}", r.name, r.what, r.source, r.settings.trim_end().replace('\n', "\n    ")));
    let mut text: Vec<String> = each.collect();
    text.push("use: simclr pretrain --recipe NAME --dataset ... --data ... (flags and --config override the recipe)".into());
    text.join("\n\n")
}
