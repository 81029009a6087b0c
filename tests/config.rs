//! Config sources, later wins: defaults → `--config FILE.toml` → flags; the saved TOML repeats a run.
//! The settings come in groups, one TOML section each, and every command's `--help` lists the flags
//! it reads, with the defaults it uses.

use clap::Parser;
use simclr::config::{Config, ConfigArgs, ModelSettings};
use simclr::resnet::Arch;
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ConfigArgs,
}

fn flags(argv: &[&str]) -> ConfigArgs {
    Cli::try_parse_from(std::iter::once("simclr").chain(argv.iter().copied())).unwrap().args
}

#[test]
fn flags_override_the_file_which_overrides_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    let toml = "[model]\narch = \"resnet50\"\n[optim]\ntemperature = 0.2\nlr = 1.5\n[data]\ndata = \"/from/file\"\n[augment]\nblur = false\n";
    std::fs::write(&file, toml).unwrap();
    let cfg = Config::resolve(Some(&file), &flags(&["--lr", "0.5", "--data", "/from/flag", "--crop-min-area", "0.2"])).unwrap();
    let mut expected = Config::default();
    expected.model.arch = Arch::Resnet50;
    (expected.optim.temperature, expected.optim.lr) = (0.2, 0.5);
    expected.data.data = Some(PathBuf::from("/from/flag"));
    (expected.augment.blur, expected.augment.crop_min_area) = (Some(false), 0.2);
    assert_eq!(cfg, expected);
}

#[test]
fn no_file_and_no_flags_give_the_defaults_and_unset_options_stay_unset() {
    let cfg = Config::resolve(None, &flags(&[])).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!((cfg.data.data, cfg.augment.blur, cfg.data.file_list, cfg.data.cache_dir), (None, None, None, None));
    assert_eq!((cfg.optim.temperature, cfg.augment.crop_min_area, cfg.optim.batch_size), (0.5, 0.08, 256));
}

#[test]
fn the_saved_toml_has_one_section_a_group_and_reads_back_as_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { model: ModelSettings { arch: Arch::Resnet34, width: 2.0, ..Default::default() }, ..Config::default() };
    cfg.data.data = Some(PathBuf::from("/data"));
    (cfg.augment.blur, cfg.data.cache_size, cfg.monitor.num_classes) = (Some(true), 256, 10);
    let text = cfg.to_toml();
    for section in ["[data]", "[model]", "[augment]", "[optim]", "[run]", "[monitor]"] {
        assert!(text.lines().any(|l| l == section), "{section} missing from\n{text}");
    }
    let file = dir.path().join("config.toml");
    std::fs::write(&file, text).unwrap();
    assert_eq!(Config::from_file(&file).unwrap(), cfg);
}

#[test]
fn a_setting_outside_its_section_or_unknown_is_an_error_naming_the_sections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    for text in ["lr = 1.0\n", "[optim]\nlearning_rate = 1.0\n", "[model]\nlr = 1.0\n"] {
        std::fs::write(&file, text).unwrap();
        let e = format!("{:#}", Config::from_file(&file).unwrap_err());
        assert!(e.contains("[optim]") && e.contains("run.toml"), "{text:?}: {e}");
    }
}

#[test]
fn a_bool_flag_takes_a_value_and_an_enum_flag_a_known_name() {
    assert_eq!(flags(&["--zero-init-residual", "false"]).model.zero_init_residual, Some(false));
    assert!(Cli::try_parse_from(["simclr", "--arch", "resnet7"]).is_err());
    assert!(Cli::try_parse_from(["simclr", "--num-classes", "10"]).is_ok(), "hidden, but still a flag");
}

/// The long flags `simclr ARGS --help` lists.
fn listed_flags(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // "--name <V>" or, with a short form, "-k, --name <V>".
    fn long(l: &str) -> Option<&str> {
        l.strip_prefix("--").or_else(|| l.strip_prefix('-').and_then(|l| l.split_once(", --")).map(|(_, long)| long))
    }
    text.lines().filter_map(|l| long(l.trim_start())).map(|l| l.split([' ', ',']).next().unwrap().to_string()).collect()
}

#[test]
fn each_command_lists_only_the_flags_it_reads() {
    let global = ["quiet", "device", "precision", "memory-format", "help"];
    let data = ["dataset", "data", "limit", "file-list", "cache-size", "cache-dir", "coarse-labels", "strict", "test-fraction", "split-seed", "test-fold", "min-class-images"];
    let model = ["arch", "width", "stem", "zero-init-residual", "sk-ratio", "se-ratio", "padding", "image-size", "head", "head-layers", "proj-dim"];
    let optim = ["temperature", "l2-normalize", "batch-size", "epochs", "max-steps", "optimizer", "lr", "lr-scaling", "warmup-epochs", "weight-decay", "momentum", "sync-bn", "micro-batch", "chunk-views"];
    let network = ["checkpoint", "random-init", "seed", "out"];
    let features = ["layer", "feature-cache"];
    let classifier_optim = ["epochs", "batch-size", "lr", "lr-scaling", "optimizer", "momentum", "weight-decay", "crop-min-area"];
    let cases: Vec<(&[&str], Vec<&str>)> = vec![
        (&["knn"], [&network[..], &features, &data, &model, &["k", "knn-temperature"]].concat()),
        (&["linear-eval"], [&network[..], &features, &data, &model, &["solver", "sgd-epochs", "sgd-lr"]].concat()),
        (&["embed"], [&network[..], &["layer"], &data, &model, &["split", "map"]].concat()),
        (&["search"], vec!["embeddings", "query", "checkpoint", "k", "index", "max-connections", "ef-construction", "ef-search", "png", "json"]),
        (&["export"], vec!["checkpoint", "format", "layer", "out"]),
        (&["predict"], vec!["checkpoint", "top", "class-names", "json"]),
        (&["import"], [&["weights", "prefix", "ema", "classifier-layer", "seed", "out"][..], &model].concat().into_iter().filter(|f| !["zero-init-residual", "padding"].contains(f)).collect()),
        (&["finetune"], [&network[..], &data, &model, &["label-fraction", "subset", "from-head-layer"], &classifier_optim].concat()),
        (&["distill"], [&["teacher", "temperature", "label-weight", "subset", "arch", "width", "sk-ratio", "se-ratio", "resume", "seed", "out"][..], &data, &classifier_optim].concat()),
        (&["compare"], vec![]),
        (&["bench", "step"], [&model[..], &["steps", "warmup", "json", "batch-size", "micro-batch", "chunk-views", "optimizer"]].concat()),
    ];
    for (command, expected) in cases {
        let mut listed = listed_flags(command);
        listed.retain(|f| !global.contains(&f.as_str()));
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "simclr {command:?} --help");
    }
    let pretrain = listed_flags(&["pretrain"]);
    for flag in data.iter().chain(&model).chain(&optim).chain(&["color-strength", "knn-every", "tensorboard", "checkpoint-every", "seed", "out", "resume", "config"]) {
        assert!(pretrain.iter().any(|f| f == flag), "pretrain --help lacks --{flag}");
    }
}

#[test]
fn help_shows_the_defaults_each_command_uses() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--help").output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let pretrain = help(&["pretrain"]);
    for default in ["[default: 0.3]", "[default: 256]", "[default: lars]", "[default: runs/simclr]", "[default: builtin]"] {
        assert!(pretrain.contains(default), "pretrain --help lacks {default}");
    }
    let finetune = help(&["finetune"]);
    for default in ["[default: 0.05]", "[default: 64]", "[default: 30]", "[default: runs/finetune]"] {
        assert!(finetune.contains(default), "finetune --help lacks {default}");
    }
    assert!(help(&["knn"]).contains("[default: runs/knn]"));
    let distill = help(&["distill"]);
    for default in ["[default: 1]", "[default: 0]", "[default: sgd]", "[default: 0.08]", "[default: runs/distill]"] {
        assert!(distill.contains(default), "distill --help lacks {default}");
    }
}

#[test]
fn every_recipe_resolves_to_valid_settings_that_flags_override_and_the_config_names() {
    use simclr::config::recipe::{Recipe, RECIPES};
    assert!(RECIPES.len() >= 5);
    for recipe in RECIPES {
        let cfg = Config::resolve_recipe(Some(recipe), None, &flags(&[])).unwrap();
        cfg.validate().unwrap_or_else(|e| panic!("recipe {}: {e:#}", recipe.name));
        assert_eq!(cfg.run.recipe, recipe.name);
        assert!(cfg.to_toml().contains(&format!("recipe = \"{}\"", recipe.name)), "config.toml names {}", recipe.name);
        assert_ne!(cfg.optim, Config::default().optim, "{} sets the optimisation", recipe.name);
        let over = Config::resolve_recipe(Some(recipe), None, &flags(&["--lr", "0.25", "--batch-size", "64"])).unwrap();
        assert_eq!((over.optim.lr, over.optim.batch_size), (0.25, 64), "flags override {}", recipe.name);
        assert_eq!(over.optim.temperature, cfg.optim.temperature);
    }
    let official = Config::resolve_recipe(Some(Recipe::named("cifar10").unwrap()), None, &flags(&[])).unwrap();
    assert_eq!((official.optim.batch_size, official.optim.epochs, official.optim.lr, official.optim.weight_decay), (512, 1000, 1.0, 1e-6));
    assert_eq!((official.augment.color_strength, official.augment.blur, official.model.image_size), (0.5, Some(false), 32));
    let err = Recipe::named("cifar100").unwrap_err().to_string();
    assert!(err.contains("--recipe cifar100") && err.contains("lightly-cifar10"), "{err}");
}
