//! The `simclr` command line: a thin layer over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use simclr::commands::{EvalArgs, Solver, SplitArg, SubsetArgs};
use simclr::config::{Config, ConfigArgs};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "simclr", version, about = "SimCLR contrastive self-supervised learning (Chen et al. 2020) in Rust")]
struct Cli {
    /// Hide the progress bar.
    #[arg(long, global = true)]
    quiet: bool,
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
        /// Continue from the latest checkpoint in --out (its config.toml is used unless --config is given).
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Linear evaluation: a logistic-regression classifier on frozen features.
    LinearEval {
        #[command(flatten)]
        eval: EvalArgs,
        /// Solver: lbfgs (to convergence, L2 chosen on held-out train) or sgd.
        #[arg(long, value_enum, default_value = "lbfgs")]
        solver: Solver,
        /// SGD solver: epochs over the cached features.
        #[arg(long, default_value_t = 30)]
        sgd_epochs: usize,
        /// SGD solver: peak learning rate.
        #[arg(long, default_value_t = 0.1)]
        sgd_lr: f64,
    },
    /// Weighted kNN classification on frozen features (cosine similarity).
    Knn {
        #[command(flatten)]
        eval: EvalArgs,
        /// Neighbours that vote.
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// Temperature of the vote weights.
        #[arg(long, default_value_t = 0.1)]
        knn_temperature: f32,
    },
    /// Fine-tune the encoder and a new classifier on a fraction of the labels.
    Finetune {
        #[command(flatten)]
        eval: EvalArgs,
        #[command(flatten)]
        subset: SubsetArgs,
    },
    /// Write the representation of every image as features.npy (+ labels.npy).
    Embed {
        #[command(flatten)]
        eval: EvalArgs,
        /// Which split to embed.
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
    },
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

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    let device = simclr::default_device();
    match cli.command {
        Command::Pretrain { config, resume, args } => {
            let out = args.out.clone().unwrap_or_else(|| Config::default().out);
            let saved = out.join("config.toml");
            let file = config.or_else(|| (resume && saved.exists()).then_some(saved));
            let cfg = Config::resolve(file.as_deref(), &args)?;
            let done = simclr::pretrain::pretrain(&cfg, resume, &device, progress)?;
            if let Some(last) = done.history.last() {
                println!(
                    "pretrained {} steps: loss {:.4}, contrastive acc {:.3}; checkpoint {}",
                    last.step,
                    last.loss,
                    last.contrast_acc,
                    done.checkpoint.display()
                );
            }
        }
        Command::LinearEval { eval, solver, sgd_epochs, sgd_lr } => {
            let sgd = simclr::linear::SgdProbe { epochs: sgd_epochs, lr: sgd_lr, ..Default::default() };
            println!("{}", simclr::commands::linear_eval(&eval, solver, sgd, &device)?);
        }
        Command::Knn { eval, k, knn_temperature } => {
            let knn = simclr::knn::Knn { k, temperature: knn_temperature };
            println!("{}", simclr::commands::knn(&eval, knn, &device)?);
        }
        Command::Finetune { eval, subset } => println!("{}", simclr::commands::finetune(&eval, &subset, &device)?),
        Command::Embed { eval, split } => println!("{}", simclr::commands::embed(&eval, split, &device)?),
        Command::Demo { out, epochs } => {
            let cfg = simclr::demo::demo_config(out, epochs);
            println!(
                "simclr demo: pretraining ResNet-18 (width {}) on the built-in 5,000 Fashion-MNIST images for {} epochs...",
                cfg.width, cfg.epochs
            );
            let r = simclr::demo::run(&cfg, &device, progress)?;
            println!("linear probe test accuracy on 1,000 held-out images:");
            println!("  SimCLR-pretrained encoder: {:.2}%", 100.0 * r.pretrained);
            println!("  random-init encoder:       {:.2}%", 100.0 * r.random);
            println!("  gain from pretraining:     {:+.2} points", 100.0 * (r.pretrained - r.random));
        }
    }
    Ok(())
}
