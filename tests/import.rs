//! `simclr import`: torchvision-layout ResNets saved by PyTorch (tests/fixtures, written by
//! scripts/make-import-fixtures.py with random weights and BN statistics) give, after import, the
//! features h that PyTorch computed for them; bad weight files give errors that name the problem.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use simclr::config::{Config, ModelArgs, RunArgs};
use simclr::model::SimClr;
use simclr::import::{find_prefix, import, our_name, read_tensors, Target};
use simclr::resnet::{Arch, Stem};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn device() -> burn::tensor::Device {
    simclr::default_device()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// PyTorch's features for the fixture `name`, from expected.json.
fn expected(name: &str) -> Vec<f32> {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all[name]["h"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

/// The script's input: x[n, c, i, j] = 0.5 + 0.5 sin(0.001 · flat index), 2 × 3 × 64 × 64.
fn features(model: &SimClr) -> Vec<f32> {
    let n = 2 * 3 * 64 * 64;
    let x: Vec<f32> = (0..n).map(|i| (0.5 + 0.5 * (0.001 * i as f64).sin()) as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 64, 64]), &device());
    let h = model.valid().encoder.forward(x);
    h.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "feature {i}: ours {g}, PyTorch {w}");
    }
}

/// Imports fixture `name` and checks what was read against what the script wrote.
fn check_fixture(name: &str, shape: (Arch, f32), prefix: &str, loaded: usize, ignored: [&str; 2]) {
    let (model, cfg, report) = import(&fixture(&format!("{name}.pth")), None, &ModelArgs::default(), &RunArgs::default(), &device()).unwrap();
    assert_eq!((cfg.model.arch, cfg.model.width, cfg.model.stem), (shape.0, shape.1, Stem::Imagenet));
    assert_eq!(report.prefix, prefix);
    assert_eq!(report.tensors_loaded, loaded);
    assert_eq!(report.ignored, ignored);
    assert_close(&features(&model), &expected(name));
}

#[test]
fn resnet18_saved_by_pytorch_gives_pytorchs_features() {
    // conv1 + bn1 (4) + 8 blocks × (2 convs + 2 BNs × 4) + 3 shortcuts × (conv + BN × 4).
    let loaded = 1 + 4 + 8 * 10 + 3 * 5;
    check_fixture("resnet18-w0.125", (Arch::Resnet18, 0.125), "state_dict.", loaded, ["state_dict.fc.bias", "state_dict.fc.weight"]);
}

#[test]
fn resnet50_backbone_under_a_nested_prefix_gives_pytorchs_features() {
    let loaded = 1 + 4 + 16 * 15 + 4 * 5;
    let ignored = ["state_dict.projector.0.bias", "state_dict.projector.0.weight"];
    check_fixture("resnet50-w0.0625", (Arch::Resnet50, 0.0625), "state_dict.backbone.", loaded, ignored);
}

#[test]
fn the_import_command_writes_a_checkpoint_that_evaluation_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported");
    let run = RunArgs { out: Some(out.clone()), seed: Some(3), ..Default::default() };
    let (imported, folder) = simclr::import::run(&fixture("resnet18-w0.125.pth"), None, Default::default(), &ModelArgs::default(), &run, &device()).unwrap();
    assert!(imported.shape.arch == simclr::resnet::Arch::Resnet18 && folder == out, "{imported:?} in {}", folder.display());
    assert!(out.join("import.json").exists() && !out.join(".model.safetensors.tmp").exists());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("import.json")).unwrap()).unwrap();
    // `sha256sum tests/fixtures/resnet18-w0.125.pth`
    assert_eq!(report["weights_sha256"], "392e572af31eb5ad098ef7e6d96b0dd5182dd9ac56738694f4d8a9cf8317f92c");
    let loaded = simclr::eval::load(Some(&out), &Config::default(), 64, &device()).unwrap();
    assert_eq!((loaded.config.model.arch, loaded.config.model.width, loaded.config.run.seed), (Arch::Resnet18, 0.125, 3));
    assert_eq!(loaded.config.run.out, out, "the written config names its own folder");
    let written = std::fs::read(out.join("model.safetensors")).unwrap();
    let hex: String = <sha2::Sha256 as sha2::Digest>::digest(&written).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(loaded.checkpoint_sha256.as_deref(), Some(hex.as_str()));
    assert_close(&features(&loaded.model), &expected("resnet18-w0.125"));
}

/// The resnet18 fixture's tensors, renamed by `rename` (None drops one), as a safetensors file.
fn safetensors_variant(dir: &Path, rename: impl Fn(&str) -> Option<String>) -> PathBuf {
    let tensors: BTreeMap<String, TensorData> = read_tensors(&fixture("resnet18-w0.125.pth")).unwrap();
    let views: Vec<_> = tensors
        .iter()
        .filter_map(|(k, v)| rename(k).map(|name| (name, v)))
        .map(|(name, v)| (name, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, v.shape().to_vec(), v.as_bytes()).unwrap()))
        .collect();
    let file = dir.join(format!("w{}.safetensors", std::fs::read_dir(dir).unwrap().count()));
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();
    file
}

fn import_error(file: &Path, prefix: Option<&str>, model: &ModelArgs) -> String {
    format!("{:#}", import(file, prefix, model, &RunArgs::default(), &device()).err().expect("the import should fail"))
}

#[test]
fn safetensors_input_and_bad_weight_files() {
    let dir = tempfile::tempdir().unwrap();
    let none = ModelArgs::default();
    // DataParallel's `module.` prefix, in a safetensors file: the same network.
    let module = |k: &str| Some(k.replace("state_dict.", "module."));
    let good = safetensors_variant(dir.path(), module);
    let (model, _, report) = import(&good, None, &none, &RunArgs::default(), &device()).unwrap();
    assert_eq!(report.prefix, "module.");
    assert_close(&features(&model), &expected("resnet18-w0.125"));

    let missing = safetensors_variant(dir.path(), |k| (!k.ends_with("layer3.0.downsample.1.running_var")).then(|| module(k).unwrap()));
    let e = import_error(&missing, None, &none);
    assert!(e.contains("missing") && e.contains("blocks.4.Basic.shortcut.bn.running_var"), "{e}");

    let extra = safetensors_variant(dir.path(), |k| Some(module(k).unwrap().replace("layer1.0.bn2", "layer1.0.se")));
    let e = import_error(&extra, None, &none);
    assert!(e.contains("not part of a torchvision Resnet18") && e.contains("module.layer1.0.se.bias"), "{e}");

    let e = import_error(&good, None, &ModelArgs { arch: Some(Arch::Resnet34), ..Default::default() });
    assert!(e.contains("--arch disagrees") && e.contains("Resnet18"), "{e}");
    let e = import_error(&good, None, &ModelArgs { stem: Some(Stem::Cifar), ..Default::default() });
    assert!(e.contains("--stem disagrees"), "{e}");

    let e = import_error(&good, Some("backbone."), &none);
    assert!(e.contains("--prefix \"backbone.\"") && e.contains("--prefix \"module.\""), "{e}");

    let head_only = safetensors_variant(dir.path(), |k| k.contains("fc.").then(|| k.to_string()));
    let e = import_error(&head_only, None, &none);
    assert!(e.contains("no torchvision-layout ResNet") && e.contains("state_dict.fc.bias"), "{e}");

    let e = import_error(&dir.path().join("nothing.pth"), None, &none);
    assert!(e.contains("nothing.pth: no such file"), "{e}");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a pickle").unwrap();
    let e = import_error(&junk, None, &none);
    assert!(e.contains("junk.pth: cannot read it as a PyTorch file"), "{e}");
}

#[test]
fn torchvision_names_map_to_ours() {
    let ours = |s: &str| Target::Ours(s.to_string());
    assert_eq!(our_name("conv1.weight", Arch::Resnet18), ours("encoder.conv1.weight"));
    assert_eq!(our_name("bn1.bias", Arch::Resnet18), ours("encoder.bn1.beta"));
    assert_eq!(our_name("layer2.0.downsample.1.weight", Arch::Resnet18), ours("encoder.blocks.2.Basic.shortcut.bn.gamma"));
    assert_eq!(our_name("layer2.0.downsample.0.weight", Arch::Resnet34), ours("encoder.blocks.3.Basic.shortcut.conv.weight"));
    assert_eq!(our_name("layer4.2.conv3.weight", Arch::Resnet50), ours("encoder.blocks.15.Bottleneck.conv3.weight"));
    assert_eq!(our_name("layer3.22.bn3.running_var", Arch::Resnet101), ours("encoder.blocks.29.Bottleneck.bn3.running_var"));
    assert_eq!(our_name("fc.weight", Arch::Resnet50), Target::Classifier);
    for unknown in ["layer1.0.conv3.weight", "layer1.2.conv1.weight", "layer5.0.conv1.weight", "layer1.0.shortcut.conv.weight", "conv2.weight", "layer1.0.conv1.bias"] {
        assert_eq!(our_name(unknown, Arch::Resnet18), Target::Unknown, "{unknown}");
    }
    assert_eq!(find_prefix(&["a.conv1.weight", "a.layer1.0.conv1.weight", "b.fc.weight"]), Ok("a.".to_string()));
    let two = find_prefix(&["a.conv1.weight", "a.layer1.0.conv1.weight", "conv1.weight", "layer1.0.conv1.weight"]).unwrap_err();
    assert!(two.contains("2 ResNets") && two.contains("--prefix"), "{two}");
}
