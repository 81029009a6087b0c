//! The `simclr` command line: a thin layer over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
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
