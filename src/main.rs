//! The `simclr` command line: a thin layer over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use simclr::commands::{EvalArgs, FeatureArgs, FinetuneOptimArgs, Solver, SplitArg, SubsetArgs};
use simclr::config::{AugmentArgs, Config, ConfigArgs, DataArgs, ModelArgs, RunArgs};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "simclr", version, about = "SimCLR contrastive self-supervised learning (Chen et al. 2020) in Rust")]
struct Cli {
    /// Hide the progress bars (also hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    quiet: bool,
    /// Compute device among the backends compiled in: auto, cpu, flex, tch-cpu, cuda[:N] (feature
    /// tch), vulkan[:N] (feature vulkan), wgpu[:N] (feature wgpu).
    #[arg(long, global = true, default_value = "auto")]
    device: String,
    /// Arithmetic of the encoder: f32 (the default), or bf16 (bfloat16 convolutions and
    /// activations, f32 accumulation, weights, head and loss, as under PyTorch's autocast; libtorch
    /// devices only; measured 1.5x faster than f32 on a GPU and 2.7x on a CPU with AMX, but slower
    /// than f32 on CPUs without AMX, where it warns at start-up).
    /// Pretraining records it in OUT/config.toml: --resume and --config reruns keep it unless given.
    #[arg(long, global = true, value_enum)]
    precision: Option<simclr::device::Precision>,
    /// Memory order of the activations: auto (channels-last on libtorch, which runs oneDNN's and
    /// cuDNN's NHWC convolutions; NCHW elsewhere), nchw, or channels-last (libtorch only).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    memory_format: simclr::device::MemoryFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain an encoder with the SimCLR objective.
    Pretrain {
        /// TOML config file (flags override its values).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Continue from the latest checkpoint in --out (its config.toml is used unless --config is
        /// given; where it is gone, the checkpoint's own). Without it, an --out holding a run is refused.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Linear evaluation: a logistic-regression classifier on frozen features.
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png) [default: runs/linear-eval]")))]
    LinearEval {
        /// Solver: lbfgs (to convergence, L2 chosen on held-out train) or sgd.
        #[arg(long, value_enum, default_value = "lbfgs")]
        solver: Solver,
        /// SGD solver: epochs over the cached features.
        #[arg(long, default_value_t = 30)]
        sgd_epochs: usize,
        /// SGD solver: peak learning rate.
        #[arg(long, default_value_t = 0.1)]
        sgd_lr: f64,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Weighted kNN classification on frozen features (cosine similarity).
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png) [default: runs/knn]")))]
    Knn {
        /// Neighbours that vote.
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// Temperature of the vote weights.
        #[arg(long, default_value_t = 0.1)]
        knn_temperature: f32,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Fine-tune the encoder and a new classifier on a fraction of the labels.
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png, the subset file) [default: runs/finetune]")))]
    Finetune {
        #[command(flatten)]
        subset: SubsetArgs,
        #[command(flatten)]
        eval: EvalArgs,
        #[command(flatten, next_help_heading = "Fine-tuning optimisation")]
        optim: FinetuneOptimArgs,
    },
    /// Write the representation of every image as features.npy (+ labels.npy, and index.npy: each
    /// row's image index), for `simclr search` and other tools.
    #[command(mut_arg("out", |a| a.help("Output folder (features.npy, labels.npy, index.npy, report.json) [default: runs/embed]")))]
    #[command(mut_arg("feature_cache", |a| a.hide(true)))]
    Embed {
        /// Which split to embed.
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// The nearest neighbours of a row or an image file among the embeddings `simclr embed` wrote,
    /// by cosine similarity: exact, or with an HNSW index saved beside them; labels and files beside
    /// each hit, and a PNG strip of the query and its hits.
    Search(simclr::search::SearchArgs),
    /// Import a ResNet encoder saved by PyTorch (torchvision names) as a checkpoint folder for
    /// --checkpoint; depth, width and stem are read from the weights.
    #[command(mut_arg("out", |a| a.help("Output folder, the checkpoint for --checkpoint [default: runs/imported]")))]
    #[command(mut_arg("zero_init_residual", |a| a.hide(true)))]
    Import {
        /// A file written by torch.save (state dict or a checkpoint holding one), or .safetensors.
        #[arg(long)]
        weights: PathBuf,
        /// Prefix of the encoder's keys, nested dictionaries joined by dots (e.g.
        /// `state_dict.backbone.`); found by itself when the file holds one ResNet.
        #[arg(long)]
        prefix: Option<String>,
        /// The head (drawn from --seed) and input size; --arch, --width and --stem, if given, must
        /// agree with the weights.
        #[command(flatten, next_help_heading = "Model")]
        model: ModelArgs,
        /// Seed of the head and output folder.
        #[command(flatten, next_help_heading = "Run")]
        run: RunArgs,
    },
    /// Render a PNG grid of augmented views of one image (paper Fig. 3/4).
    #[command(mut_arg("limit", |a| a.hide(true)), mut_arg("strict", |a| a.hide(true)), mut_arg("one_branch", |a| a.hide(true)))]
    Augment {
        /// An image file; without it, image --index of the dataset is used.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Index of the dataset image to show.
        #[arg(long, default_value_t = 0)]
        index: usize,
        /// Samples per row.
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Output PNG file.
        #[arg(long, default_value = "augment.png")]
        png: PathBuf,
        /// Side of the views in pixels (0: the image's longer side, at most 224, as `pretrain`).
        #[arg(long, default_value_t = 0)]
        image_size: usize,
        /// Seed of the views.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The dataset the image comes from (without --image).
        #[command(flatten, next_help_heading = "Data")]
        data: DataArgs,
        /// The augmentation, as for `pretrain`.
        #[command(flatten, next_help_heading = "Augmentation")]
        augment: AugmentArgs,
    },
    /// Throughput benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
        /// Also write the results as JSON to this file.
        #[arg(long, global = true)]
        json: Option<PathBuf>,
    },
    /// Write a checkpoint's network for other tools: `--format torchvision`, the encoder as a
    /// .safetensors with torchvision's ResNet names that torchvision.models.resnet18/50 loads with
    /// strict=True; `--format onnx`, the network up to --layer as ONNX (inference mode, dynamic batch).
    Export {
        /// Checkpoint folder, or a pretraining run's --out folder (its latest checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// What to write.
        #[arg(long, value_enum, default_value = "torchvision")]
        format: simclr::export::Format,
        /// Network output (onnx only): h (the encoder), z (encoder and head) or head:K.
        #[arg(long, default_value = "h")]
        layer: simclr::eval::Layer,
        /// Output file [default: encoder.safetensors, or encoder.onnx for --format onnx].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draw the training curves of one or more pretraining runs into one PNG (runs overlaid): loss,
    /// contrastive accuracy, learning rate, online-probe and kNN accuracy against the step.
    Plot {
        /// Pretraining --out folders (each holds metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG file.
        #[arg(long, default_value = "curves.png")]
        png: PathBuf,
    },
    /// Reproduce one of the paper's findings as a grid of pretraining + linear-evaluation cells:
    /// OUT/report.md (tables beside the paper's numbers, whether each direction holds), PNG
    /// figures, results.json; finished cells are kept, a killed cell resumes from its checkpoint.
    Ablate(simclr::ablate::AblateArgs),
    /// Pretrain on the built-in Fashion-MNIST subset, then compare a linear probe with random init.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Pretraining epochs over the 5,000 built-in images.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Augmentation views/s per core through the whole pipeline, 32 px and 224 px.
    Data {
        /// Seconds to spend on each size.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// One real pretraining epoch (or --max-steps), wall time split into data wait, step,
    /// checkpoint; e.g. `--dataset fashion-mnist --data /usr/share/datasets/fashion-mnist`.
    #[command(mut_arg("out", |a| a.help("Output folder, which must not hold a run [default: a scratch folder, removed afterwards]")), mut_arg("epochs", |a| a.hide(true)))]
    Epoch {
        /// Every setting of `pretrain`.
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Nearest-neighbour search on random vectors: query latency of the exact and the HNSW index,
    /// the HNSW build time and its recall@k against exact search.
    Search {
        /// Rows in the index.
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// Dimension of a row.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Draw the rows around this many random centres (0: i.i.d. uniform, the hardest case).
        #[arg(long, default_value_t = 0)]
        clusters: usize,
        /// Queries timed (random vectors, not rows of the index).
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Neighbours per query.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        hnsw: simclr::search::HnswParams,
    },
    /// Training-step images/s (forward + backward + optimiser) and peak memory.
    #[command(mut_arg("image_size", |a| a.help("Side of the random input images in pixels (0: 32) [default: 0]")))]
    Step {
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Images per batch (2 views each).
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Optimiser whose update is timed (at LR 0.1).
        #[arg(long, value_enum, default_value = "lars")]
        optimizer: simclr::optim::OptimizerKind,
        /// The network and its input size, as for `pretrain`.
        #[command(flatten, next_help_heading = "Model")]
        model: ModelArgs,
    },
}

fn write_json(file: Option<PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(f) = file {
        std::fs::write(&f, serde_json::to_string_pretty(value)?).map_err(|e| anyhow::anyhow!("--json {}: {e}", f.display()))?;
    }
    Ok(())
}

fn main() {
    simclr::malloc::keep_freed_memory();
    // The ranks of an `mpirun`/`srun` job (MPI is finalised when `session` drops, at the end).
    let session = simclr::distributed::init();
    // Rank 0 reports; the other ranks of a distributed run only warn.
    let level = if simclr::distributed::is_writer() { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| format!("{level},hnsw_rs=warn,anndists=warn").into()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let result = session.and_then(|session| match run(Cli::parse()) {
        Ok(()) => Ok(drop(session)),
        // A failed rank leaves without MPI_Finalize (which waits for every rank): its non-zero exit
        // makes the launcher stop the others.
        Err(e) => Err(e).inspect_err(|_| std::mem::forget(session)),
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            let world = simclr::distributed::world();
            match world.ranks() {
                1 => eprintln!("error: {e:#}"),
                ranks => eprintln!("error on rank {} of {ranks}: {e:#}", world.rank()),
            }
            1
        }
    };
    exit_now(code)
}

/// Ends the process with `code`, stdout and stderr flushed, without the static destructors of the
/// C++ libraries linked in: in a build with libtorch and a Vulkan backend, libtorch's destructors
/// ran while Mesa's lavapipe was still tearing down its shader compiler threads, and the process
/// crashed (SIGSEGV in `free`) after its work was done and reported — 2 exits in 8 on an error path
/// right after the first shaders were built. Everything of ours is written and closed by then.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `_exit` ends the process at once; nothing of this process runs after it.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    std::process::exit(code)
}

fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    simclr::progress::set_quiet(!progress);
    let device = simclr::device::parse(&cli.device)?;
    // Pretraining takes its precision from its config (recorded, for --resume); the rest from the flag.
    simclr::device::set_precision(cli.precision.unwrap_or_default(), &device)?;
    let memory_format = simclr::device::set_memory_format(cli.memory_format, &device)?;
    tracing::debug!("device {device:?}, precision {:?}, memory format {memory_format:?}", cli.precision);
    match cli.command {
        Command::Pretrain { config, resume, mut args } => {
            let out = args.run.out.clone().unwrap_or_else(|| Config::default().run.out);
            let file = match config {
                Some(file) => Some(file),
                None if resume => simclr::checkpoint::resume_config(&out)?,
                None => None,
            };
            args.run.precision = cli.precision;
            let cfg = Config::resolve(file.as_deref(), &args)?;
            simclr::interrupt::install()?;
            let done = simclr::pretrain::pretrain(&cfg, resume, &device, progress)?;
            if done.interrupted {
                let step = done.history.last().map_or(done.start_step, |m| m.step);
                eprintln!(
                    "interrupted after step {step}: checkpoint {}; continue with `simclr pretrain --resume --out {}`",
                    done.checkpoint.display(),
                    cfg.run.out.display()
                );
                std::process::exit(130);
            }
            if let Some(last) = done.history.last().filter(|_| simclr::distributed::is_writer()) {
                println!(
                    "pretrained {} steps: loss {:.4}, contrastive acc {:.3}; checkpoint {}; peak RSS {}",
                    last.step,
                    last.loss,
                    last.contrast_acc,
                    done.checkpoint.display(),
                    simclr::bench::peak_rss_mib().map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into())
                );
            }
        }
        Command::LinearEval { eval, features, solver, sgd_epochs, sgd_lr } => {
            let sgd = simclr::eval::linear::SgdProbe { epochs: sgd_epochs, lr: sgd_lr, ..Default::default() };
            println!("{}", simclr::commands::linear_eval(&eval, &features, solver, sgd, &device)?);
        }
        Command::Knn { eval, features, k, knn_temperature } => {
            let knn = simclr::eval::knn::Knn { k, temperature: knn_temperature };
            println!("{}", simclr::commands::knn(&eval, &features, knn, &device)?);
        }
        Command::Finetune { eval, subset, optim } => println!("{}", simclr::commands::finetune(&eval, &subset, &optim, &device)?),
        Command::Embed { eval, features, split } => println!("{}", simclr::commands::embed(&eval, &features, split, &device)?),
        Command::Search(args) => println!("{}", simclr::search::run(&args, &device)?),
        Command::Import { weights, prefix, model, run } => println!("{}", simclr::import::run(&weights, prefix.as_deref(), &model, &run, &device)?),
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
            println!("wrote {} (rows: original + crop, colour, blur, crop+colour, full pipeline, view pairs)", png.display());
        }
        Command::Bench { what: BenchCommand::Data { seconds }, json } => {
            let rows = simclr::bench::data(std::time::Duration::from_secs_f64(seconds));
            println!("{:>6}  {:<22} {:>14}", "size", "source", "views/s/core");
            for r in &rows {
                println!("{:>6}  {:<22} {:>14.0}", r.image_size, r.source, r.views_per_sec_per_core);
            }
            write_json(json, &rows)?;
        }
        Command::Bench { what: BenchCommand::Search { rows, dim, clusters, queries, k, hnsw }, json } => {
            let r = simclr::bench::search(rows, dim, clusters, queries, k, hnsw);
            println!("{} rows × {} dims ({} clusters), {} queries, k {}:", r.rows, r.dim, r.clusters, r.queries, r.k);
            println!("  exact, one query at a time   {:>9.3} ms/query", r.exact_ms_per_query);
            println!("  exact, all queries at once   {:>9.3} ms/query", r.exact_batched_ms_per_query);
            println!("  hnsw build                   {:>9.1} s", r.hnsw_build_s);
            println!("  hnsw, one query at a time    {:>9.3} ms/query   recall@{} {:.4}", r.hnsw_ms_per_query, r.k, r.hnsw_recall);
            write_json(json, &r)?;
        }
        Command::Bench { what: BenchCommand::Epoch { mut args }, json } => {
            args.run.precision = cli.precision;
            let mut cfg = Config::resolve(None, &args)?;
            // Without --out, a scratch folder of its own (removed afterwards): each bench is a new run.
            let scratch = args.run.out.is_none().then(tempfile::tempdir).transpose().context("cannot create a scratch folder for the bench run")?;
            if let Some(dir) = &scratch {
                cfg.run.out = dir.path().to_path_buf();
            }
            cfg.optim.epochs = 1;
            let done = simclr::pretrain::pretrain(&cfg, false, &device, progress)?;
            let t = &done.timing;
            let images = done.history.len() * cfg.optim.batch_size;
            println!("epoch of {} steps ({images} images, batch {}):", done.history.len(), cfg.optim.batch_size);
            println!("  wall        {:>9.1} s   {:.1} images/s", t.wall_s, images as f64 / t.wall_s);
            println!("  step        {:>9.1} s", t.step_s);
            println!("  data wait   {:>9.1} s", t.data_wait_s);
            println!("  checkpoint  {:>9.1} s", t.checkpoint_s);
            println!("  peak RSS    {}", simclr::bench::peak_rss_mib().map(|m| format!("{m:>9.0} MiB")).unwrap_or_else(|| "n/a".into()));
            write_json(json, &serde_json::json!({ "timing": t, "steps": done.history.len(), "batch_size": cfg.optim.batch_size, "peak_rss_mib": simclr::bench::peak_rss_mib() }))?;
        }
        Command::Bench { what: BenchCommand::Step { steps, warmup, batch_size, optimizer, model }, json } => {
            let optim = simclr::config::OptimSettings { batch_size, optimizer, ..Default::default() };
            let cfg = Config { model: model.resolve(), optim, ..Config::default() };
            let r = simclr::bench::step(&cfg, steps, warmup, &device)?;
            println!(
                "{} batch {} at {} px on {} ({:?}, {:?}): median step {:.3} s, {:.1} images/s, peak RSS {}",
                r.model,
                r.batch_size,
                r.image_size,
                r.device,
                r.precision,
                r.memory_format,
                r.median_step_s,
                r.images_per_sec,
                r.peak_rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into())
            );
            write_json(json, &r)?;
        }
        Command::Export { checkpoint, format, layer, out } => {
            let out = out.unwrap_or_else(|| format.default_out().into());
            println!("{}", simclr::export::run(&checkpoint, format, layer, &out)?)
        }
        Command::Plot { runs, png } => {
            let curves = runs.iter().map(|r| simclr::curves::RunCurves::read(r)).collect::<Result<Vec<_>>>()?;
            simclr::curves::plot(&curves, &png)?;
            println!("wrote {} ({} runs)", png.display(), curves.len());
        }
        Command::Ablate(args) => {
            simclr::interrupt::install()?;
            println!("{}", simclr::ablate::run(&args, cli.precision.unwrap_or_default(), &device, progress)?);
        }
        Command::Demo { out, epochs } => {
            let mut cfg = simclr::demo::demo_config(out, epochs);
            cfg.run.precision = cli.precision.unwrap_or_default();
            println!(
                "simclr demo: pretraining ResNet-18 (width {}) on the built-in 5,000 Fashion-MNIST images for {} epochs...",
                cfg.model.width, cfg.optim.epochs
            );
            let r = simclr::demo::run(&cfg, &device, progress)?;
            println!("linear probe test accuracy on 1,000 held-out images:");
            println!("  SimCLR-pretrained encoder:                   {:.2}%", 100.0 * r.pretrained);
            println!("  same network before pretraining (zero-γ):    {:.2}%  ({:+.2} points)", 100.0 * r.initial, 100.0 * (r.pretrained - r.initial));
            println!("  random init, default γ = 1 (strong baseline): {:.2}%  ({:+.2} points)", 100.0 * r.random, 100.0 * (r.pretrained - r.random));
        }
    }
    Ok(())
}
