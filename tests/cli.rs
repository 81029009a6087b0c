//! The binary's handling of bad input: a one-line error naming the value and the fix, exit code ≠ 0.

use std::process::Command;

fn simclr(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn unknown_arch_is_rejected() {
    let (code, err) = simclr(&["pretrain", "--arch", "resnet19"]);
    assert_ne!(code, 0);
    assert!(err.contains("resnet19") && err.contains("resnet18"), "{err}");
}

#[test]
fn bad_values_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--batch-size", "1"], "--batch-size 1"),
        (vec!["--temperature", "0"], "--temperature 0"),
        (vec!["--crop-min-area", "1.5"], "--crop-min-area 1.5"),
        (vec!["--dataset", "fashion-mnist", "--data", "/nonexistent"], "/nonexistent"),
        (vec!["--dataset", "fashion-mnist"], "--data"),
    ] {
        let mut all = vec!["pretrain", "--out", out, "--quiet"];
        all.extend(&args);
        let (code, err) = simclr(&all);
        assert_ne!(code, 0, "{args:?}");
        let lines: Vec<_> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(out).join("checkpoints").exists());
}

#[test]
fn unwritable_output_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("run");
    let (code, err) = simclr(&["pretrain", "--out", out.to_str().unwrap(), "--max-steps", "1", "--quiet"]);
    assert_ne!(code, 0);
    assert!(err.contains("--out") && err.contains("writable"), "{err}");
}

#[test]
fn config_file_with_an_unknown_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[optim]\nbatch_size = 64\nlearning_rat = 0.1\n").unwrap();
    let (code, err) = simclr(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("c.toml") && err.contains("learning_rat"), "{err}");
}

#[test]
fn device_names_are_checked() {
    use simclr::device::parse;
    let err = |spec: &str| parse(spec).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err("gpu").contains("unknown device") && err("gpu").contains("vulkan"), "{}", err("gpu"));
    assert!(err("cuda:x").contains("must be a number"), "{}", err("cuda:x"));
    assert!(parse("auto").is_ok());
    // `cpu` is flex, else libtorch's CPU; a build with GPU backends only (as CI's wgpu suite) has none.
    if cfg!(any(feature = "flex", feature = "tch")) {
        assert!(parse(" CPU ").is_ok());
    } else {
        assert!(err("cpu").contains("--features flex"), "{}", err("cpu"));
    }
    #[cfg(feature = "flex")]
    {
        assert_eq!(parse("cpu").unwrap(), burn::tensor::Device::flex());
        assert!(err("flex:1").contains("takes no index"), "{}", err("flex:1"));
    }
    #[cfg(not(feature = "tch"))]
    assert!(err("cuda:0").contains("--features tch"), "{}", err("cuda:0"));
    #[cfg(not(feature = "vulkan"))]
    assert!(err("vulkan:0").contains("--features vulkan"), "{}", err("vulkan:0"));
    let (code, stderr) = simclr(&["--device", "tpu", "bench", "data", "--seconds", "0.1"]);
    assert_ne!(code, 0);
    assert!(stderr.lines().any(|l| l.starts_with("error: --device tpu: unknown device")), "{stderr}");
    // bfloat16 convolutions are libtorch's: on flex the flag is refused before any work.
    #[cfg(feature = "flex")]
    {
        let (code, stderr) = simclr(&["--device", "flex", "--precision", "bf16", "bench", "data", "--seconds", "0.1"]);
        assert_ne!(code, 0);
        assert!(stderr.lines().any(|l| l.starts_with("error: --precision bf16: only libtorch devices")), "{stderr}");
    }
    // On libtorch's CPU it runs, with a warning exactly where the CPU lacks AMX (bf16 is slower there).
    #[cfg(feature = "tch")]
    {
        let (code, stderr) = simclr(&["--device", "tch-cpu", "--precision", "bf16", "bench", "data", "--seconds", "0.1"]);
        assert_eq!(code, 0, "{stderr}");
        let amx = std::fs::read_to_string("/proc/cpuinfo").unwrap().split_whitespace().any(|f| f == "amx_bf16");
        assert_eq!(stderr.contains("--precision bf16 on a CPU without AMX"), !amx, "{stderr}");
    }
}

#[test]
#[cfg(feature = "flex")]
fn resume_keeps_the_recorded_precision() {
    // A run recorded as bf16 resumes in bf16 unless --precision says otherwise: on flex, which
    // has no bf16, that is the bf16 error, naming the flag.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.toml"), "[run]\nprecision = \"bf16\"\n[optim]\nmax_steps = 1\n").unwrap();
    let (code, err) = simclr(&["--device", "flex", "pretrain", "--resume", "--out", out.to_str().unwrap(), "--quiet"]);
    assert_ne!(code, 0);
    assert!(err.contains("--precision bf16"), "{err}");
}

/// The library builds without the command line (`--no-default-features --features flex`): outside
/// the binary's own files (`src/main.rs`, `src/cli/`), every use of clap is a derive or attribute
/// behind `cfg_attr(feature = "cli", …)`.
#[test]
fn the_library_uses_clap_only_behind_the_cli_feature() {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let binary = |p: &std::path::Path| p == src.join("main.rs") || p.starts_with(src.join("cli"));
    let mut bare = Vec::new();
    for file in files.iter().filter(|f| !binary(f)) {
        for (n, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap();
            let clap_attribute = ["#[arg(", "#[command(", "#[value(", "#[group("].iter().any(|a| code.contains(a));
            if (code.contains("clap") || clap_attribute) && !code.contains("cfg_attr(feature = \"cli\"") {
                bare.push(format!("{}:{}: {}", file.strip_prefix(&src).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    assert!(bare.is_empty(), "clap outside `cfg_attr(feature = \"cli\", …)`:\n{}", bare.join("\n"));
}
