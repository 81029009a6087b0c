//! The `simclr` command line over the library: the flags ([`args`]), what each command prints
//! ([`print`]), and here the dispatch from a parsed command line to the library's functions.
//! Process set-up (allocator, MPI, logging, exit) is `main.rs`'s.

mod args;
mod print;

pub use args::Cli;
use args::{BenchCommand, Command};
use anyhow::{Context, Result};
use simclr::config::{Config, ConfigArgs, RunArgs, RunSettings};
use simclr::device::{Compute, MemoryFormat, Precision};
use std::io::IsTerminal;
use std::path::PathBuf;

/// What the global flags set up once for every command.
struct Session {
    device: burn::tensor::Device,
    /// `--precision`, where given (pretraining keeps its recorded one otherwise).
    precision: Option<Precision>,
    /// `--memory-format`.
    memory_format: MemoryFormat,
    /// Whether progress bars are drawn.
    progress: bool,
}

impl Session {
    /// `run` with the global flags' arithmetic and memory order (for a network's [`Compute`]).
    fn run_args(&self, run: RunArgs) -> RunArgs {
        RunArgs { precision: self.precision.or(run.precision), memory_format: Some(self.memory_format), ..run }
    }

    /// The default run settings with the global flags' arithmetic and memory order.
    fn run_settings(&self) -> RunSettings {
        RunSettings { precision: self.precision.unwrap_or_default(), memory_format: self.memory_format, ..RunSettings::default() }
    }
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    simclr::progress::set_quiet(!progress);
    let device = simclr::device::parse(&cli.device)?;
    // The flags checked against the device once, before any work; each command's network takes
    // them through its run settings (pretraining keeps its recorded precision unless given).
    let compute = Compute::on(&device, cli.precision.unwrap_or_default(), cli.memory_format)?;
    tracing::debug!("device {device:?}, {compute:?}");
    let s = Session { device, precision: cli.precision, memory_format: cli.memory_format, progress };
    let device = &s.device;
    match cli.command {
        Command::Pretrain { config, recipe, resume, args } => pretrain(&s, config, recipe, resume, args),
        Command::Recipes => Ok(println!("{}", print::recipes())),
        Command::LinearEval { mut eval, features, solver, sgd_epochs, sgd_lr } => {
            eval.run = s.run_args(eval.run);
            let sgd = simclr::eval::linear::SgdProbe { epochs: sgd_epochs, lr: sgd_lr, ..Default::default() };
            let r = simclr::commands::linear_eval(&eval, &features, solver, sgd, device)?;
            Ok(println!("{}", print::classified(&r, &format!("linear-eval ({}, layer {}, {solver:?})", r.source(), r.metrics.layer))))
        }
        Command::Knn { mut eval, features, k, knn_temperature } => {
            eval.run = s.run_args(eval.run);
            let knn = simclr::eval::knn::Knn { k, temperature: knn_temperature };
            let r = simclr::commands::knn(&eval, &features, knn, device)?;
            Ok(println!("{}", print::classified(&r, &format!("knn ({}, layer {}, k {k})", r.source(), r.metrics.layer))))
        }
        Command::Finetune { mut eval, subset, optim } => {
            eval.run = s.run_args(eval.run);
            let r = simclr::commands::finetune(&eval, &subset, &optim, device)?;
            let line = print::classified(&r, &format!("finetune ({}, {} labelled images)", r.source(), r.metrics.extra.labelled_images));
            Ok(println!("{line}; the fine-tuned network: --checkpoint {}", r.out.display()))
        }
        Command::Distill { distill, data, run, optim } => {
            let r = simclr::commands::distill(&distill, &data, &s.run_args(run), &optim, device)?;
            let x = &r.metrics.extra;
            let line = print::classified(&r, &format!("distill ({}, {} images)", r.source(), x.images));
            let v = &x.vs_teacher;
            Ok(println!(
                "{line}; teacher top-1 {:.2}% (student − teacher {:+.2} points, McNemar p = {:.2e}), agreement {:.2}%; the student: --checkpoint {}",
                100.0 * x.teacher_top1, 100.0 * (v.top1_a - v.top1_b), v.p_value, 100.0 * x.teacher_agreement, r.out.display()
            ))
        }
        Command::Compare { a, b } => {
            let c = simclr::commands::compare(&a, &b)?;
            Ok(println!("{}", print::compared(&c, &a, &b)))
        }
        Command::Embed { mut eval, features, split, map } => {
            eval.run = s.run_args(eval.run);
            Ok(println!("{}", print::embedded(&simclr::commands::embed(&eval, &features, split, map.as_deref(), device)?)))
        }
        Command::PlotEmbeddings { dir, png } => {
            let rows = simclr::eval::map::plot_folder(&dir, &png)?;
            Ok(println!("map of {rows} rows of {}: {}", dir.display(), png.display()))
        }
        Command::Search(args) => Ok(println!("{}", print::found(&simclr::search::search(&args, device)?))),
        Command::Import { weights, prefix, ema, classifier_layer, model, run } => {
            let options = simclr::import::TfOptions { ema, classifier_layer };
            let (report, out) = simclr::import::run(&weights, prefix.as_deref(), options, &model, &run, device)?;
            Ok(println!("{}", print::imported(&report, &out)))
        }
        Command::Augment { image, index, samples, png, image_size, seed, data, augment } => {
            let cfg = Config { data: data.resolve(), augment: augment.resolve(), ..Config::default() };
            let img = match image {
                Some(file) => simclr::grid::load_file(&file)?,
                None => {
                    let ds = simclr::data::open(&cfg.source(), simclr::data::Split::Train)?;
                    if index >= ds.len() {
                        anyhow::bail!("--index {index}: the dataset has {} images", ds.len());
                    }
                    ds.image(index)?
                }
            };
            let size = if image_size > 0 { image_size } else { simclr::augment::default_view_side(img.height, img.width) };
            simclr::grid::write(&img, &cfg.augment(size), samples, seed, &png)?;
            Ok(println!("wrote {} (rows: original + crop, colour, blur, crop+colour, full pipeline, view pairs)", png.display()))
        }
        Command::Bench { what, json } => bench(&s, what, json),
        Command::Predict { checkpoint, images, top, class_names, json } => {
            let config = Config { run: s.run_settings(), ..Default::default() };
            let found = simclr::eval::predict::predict(&checkpoint, &images, top, class_names.as_deref(), &config, device)?;
            if let Some(file) = json {
                std::fs::write(&file, serde_json::to_string_pretty(&found)?).with_context(|| format!("--json {}: cannot write it", file.display()))?;
            }
            Ok(println!("{}", print::predicted(&found)))
        }
        Command::Export { checkpoint, format, layer, out } => {
            let out = out.unwrap_or_else(|| format.default_out().into());
            Ok(println!("{}", print::exported(&simclr::export::run(&checkpoint, format, layer, &out)?)))
        }
        Command::Plot { runs, png } => {
            let curves = runs.iter().map(|r| simclr::curves::RunCurves::read(r)).collect::<Result<Vec<_>>>()?;
            simclr::curves::plot(&curves, &png)?;
            Ok(println!("wrote {} ({} runs)", png.display(), curves.len()))
        }
        Command::Ablate(args) => {
            simclr::interrupt::install()?;
            let ablated = simclr::ablate::run(&args, s.precision.unwrap_or_default(), s.memory_format, device, s.progress)?;
            Ok(println!("{}", print::ablated(&ablated)))
        }
        Command::Demo { out, epochs } => {
            let mut cfg = simclr::demo::demo_config(out, epochs);
            cfg.run = RunSettings { out: cfg.run.out, ..s.run_settings() };
            println!(
                "simclr demo: pretraining ResNet-18 (width {}) on the built-in 5,000 Fashion-MNIST images for {} epochs...",
                cfg.model.width, cfg.optim.epochs
            );
            Ok(println!("{}", print::demo(&simclr::demo::run(&cfg, device, s.progress)?)))
        }
    }
}

/// `simclr pretrain`: exits with 130 when stopped by Ctrl-C (its checkpoint written).
fn pretrain(s: &Session, config: Option<PathBuf>, recipe: Option<String>, resume: bool, mut args: ConfigArgs) -> Result<()> {
    let recipe = recipe.map(|name| simclr::config::recipe::Recipe::named(&name)).transpose()?;
    let out = args.run.out.clone().unwrap_or_else(|| Config::default().run.out);
    let file = match config {
        Some(file) => Some(file),
        None if resume => simclr::checkpoint::resume_config(&out)?,
        None => None,
    };
    args.run = s.run_args(args.run);
    let cfg = Config::resolve_recipe(recipe, file.as_deref(), &args)?;
    simclr::interrupt::install()?;
    let done = simclr::pretrain::pretrain(&cfg, resume, &s.device, s.progress)?;
    if done.interrupted {
        let step = done.history.last().map_or(done.start_step, |m| m.step);
        eprintln!(
            "interrupted after step {step}: checkpoint {}; continue with `simclr pretrain --resume --out {}`",
            done.checkpoint.display(),
            cfg.run.out.display()
        );
        std::process::exit(130);
    }
    if simclr::distributed::is_writer() {
        if let Some(line) = print::pretrained(&done) {
            println!("{line}");
        }
    }
    Ok(())
}

/// `simclr bench …`: the table or line of each benchmark, and `--json`.
fn bench(s: &Session, what: BenchCommand, json: Option<PathBuf>) -> Result<()> {
    match what {
        BenchCommand::Data { seconds } => {
            let rows = simclr::bench::data(std::time::Duration::from_secs_f64(seconds));
            println!("{}", print::bench_data(&rows));
            write_json(json, &rows)
        }
        BenchCommand::Search { rows, dim, clusters, queries, k, hnsw } => {
            let r = simclr::bench::search(rows, dim, clusters, queries, k, hnsw);
            println!("{}", print::bench_search(&r));
            write_json(json, &r)
        }
        BenchCommand::Epoch { mut args } => {
            args.run = s.run_args(args.run);
            let mut cfg = Config::resolve(None, &args)?;
            // Without --out, a scratch folder of its own (removed afterwards): each bench is a new run.
            let scratch = args.run.out.is_none().then(tempfile::tempdir).transpose().context("cannot create a scratch folder for the bench run")?;
            if let Some(dir) = &scratch {
                cfg.run.out = dir.path().to_path_buf();
            }
            cfg.optim.epochs = 1;
            let done = simclr::pretrain::pretrain(&cfg, false, &s.device, s.progress)?;
            println!("{}", print::bench_epoch(&done, cfg.optim.batch_size));
            let peak = simclr::bench::peak_rss_mib();
            write_json(json, &serde_json::json!({ "timing": done.timing, "steps": done.history.len(), "batch_size": cfg.optim.batch_size, "peak_rss_mib": peak }))
        }
        BenchCommand::Step { steps, warmup, batch_size, micro_batch, chunk_views, optimizer, model } => {
            let optim = simclr::config::OptimSettings { batch_size, micro_batch, chunk_views, optimizer, ..Default::default() };
            let cfg = Config { model: model.resolve(), optim, run: s.run_settings(), ..Config::default() };
            let r = simclr::bench::step(&cfg, steps, warmup, &s.device)?;
            println!("{}", print::bench_step(&r));
            write_json(json, &r)
        }
    }
}

/// Writes `value` as pretty JSON to `--json FILE`, where given.
fn write_json(file: Option<PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(f) = file {
        std::fs::write(&f, serde_json::to_string_pretty(value)?).map_err(|e| anyhow::anyhow!("--json {}: {e}", f.display()))?;
    }
    Ok(())
}
