//! Config sources, later wins: defaults → `--config FILE.toml` → flags; the saved TOML repeats a run.

use clap::Parser;
use simclr::config::{Config, ConfigArgs};
use simclr::resnet::Arch;
use std::path::PathBuf;

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
    std::fs::write(&file, "arch = \"resnet50\"\ntemperature = 0.2\nlr = 1.5\ndata = \"/from/file\"\nblur = false\n").unwrap();
    let cfg = Config::resolve(Some(&file), &flags(&["--lr", "0.5", "--data", "/from/flag", "--crop-min-area", "0.2"])).unwrap();
    let expected = Config {
        arch: Arch::Resnet50,
        temperature: 0.2,
        lr: 0.5,
        data: Some(PathBuf::from("/from/flag")),
        blur: Some(false),
        crop_min_area: 0.2,
        ..Config::default()
    };
    assert_eq!(cfg, expected);
}

#[test]
fn no_file_and_no_flags_give_the_defaults_and_unset_options_stay_unset() {
    let cfg = Config::resolve(None, &flags(&[])).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!((cfg.data, cfg.blur, cfg.file_list, cfg.cache_dir), (None, None, None, None));
    assert_eq!((cfg.temperature, cfg.crop_min_area, cfg.batch_size), (0.5, 0.08, 256));
}

#[test]
fn the_saved_toml_reads_back_as_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        arch: Arch::Resnet34,
        width: 2.0,
        data: Some(PathBuf::from("/data")),
        blur: Some(true),
        cache_size: 256,
        num_classes: 10,
        ..Config::default()
    };
    let file = dir.path().join("config.toml");
    std::fs::write(&file, cfg.to_toml()).unwrap();
    assert_eq!(Config::from_file(&file).unwrap(), cfg);
}

#[test]
fn a_bool_flag_takes_a_value_and_an_enum_flag_a_known_name() {
    assert_eq!(flags(&["--zero-init-residual", "false"]).zero_init_residual, Some(false));
    assert!(Cli::try_parse_from(["simclr", "--arch", "resnet7"]).is_err());
    assert!(Cli::try_parse_from(["simclr", "--num-classes", "10"]).is_ok(), "hidden, but still a flag");
}
