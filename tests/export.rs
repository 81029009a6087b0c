//! `simclr export --format torchvision`: PyTorch's own file comes back out unchanged (import, then
//! export), export then import gives the same network, and PyTorch loads the export with
//! `strict=True` into a torchvision-layout ResNet and computes our features (when python3 with torch
//! is installed, as `.ci/run` installs it).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::small;
use simclr::config::{ModelArgs, RunArgs};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The tensors of a safetensors file by name, as `f32` values (integers included).
fn tensors(file: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let values = match t.dtype() {
                safetensors::Dtype::F32 => t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                safetensors::Dtype::I64 => t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
                other => panic!("{name}: unexpected {other:?}"),
            };
            (name, values)
        })
        .collect()
}

fn export(checkpoint: &Path, out: &Path) -> String {
    simclr::export::run(checkpoint, simclr::export::Format::Torchvision, out).unwrap()
}

#[test]
fn pytorchs_file_comes_back_out_unchanged() {
    // Imported from PyTorch, exported again: every encoder tensor of the original, bit for bit,
    // under its own name, plus one num_batches_tracked per BN (torchvision has them; we keep 0).
    let dir = tempfile::tempdir().unwrap();
    let imported = dir.path().join("imported");
    let run = RunArgs { out: Some(imported.clone()), ..Default::default() };
    simclr::import::run(&fixture("resnet18-w0.125.pth"), None, &ModelArgs::default(), &run, &simclr::default_device()).unwrap();
    let out = dir.path().join("encoder.safetensors");
    let line = export(&imported, &out);
    assert!(line.contains("resnet18") && line.contains("strict=True"), "{line}");
    let exported = tensors(&out);
    let original = simclr::import::read_tensors(&fixture("resnet18-w0.125.pth")).unwrap();
    let mut compared = 0;
    for (name, t) in &original {
        let Some(tv) = name.strip_prefix("state_dict.").filter(|n| !n.starts_with("fc.")) else { continue };
        let ours = exported.get(tv).unwrap_or_else(|| panic!("{tv} missing from the export"));
        assert_eq!(ours, &t.try_to_vec::<f32>().unwrap(), "{tv}");
        compared += 1;
    }
    // conv1 + bn1 (4) + 8 blocks × (2 convs + 2 BNs × 4) + 3 shortcuts × (conv + BN × 4).
    assert_eq!(compared, 1 + 4 + 8 * 10 + 3 * 5);
    let counters = exported.keys().filter(|k| k.ends_with("num_batches_tracked")).count();
    assert_eq!(counters, 1 + 8 * 2 + 3);
    assert_eq!(exported.len(), compared + counters, "nothing else: no head, no classifier");
}

/// `h` of the network in `checkpoint` for the fixture script's input (N = 2, 3 × size × size).
fn our_features(checkpoint: &Path, size: usize) -> Vec<f32> {
    let device = simclr::default_device();
    let loaded = simclr::eval::load(Some(checkpoint), &simclr::config::Config::default(), size, &device).unwrap();
    let x: Vec<f32> = (0..2 * 3 * size * size).map(|i| (0.5 + 0.5 * (0.001 * i as f64).sin()) as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, size, size]), &device);
    loaded.model.forward(x).swap_remove(0).into_data().try_to_vec::<f32>().unwrap()
}

/// Equal within `tolerance`, relative to values over 1.
fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{what}, feature {i}: {g} vs {w}");
    }
}

#[test]
fn export_then_import_is_the_same_network_and_pytorch_loads_it_strictly() {
    // A pretrained CIFAR-stem network (a few steps, so BN statistics are not the initial ones).
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut cfg = small(&run);
    (cfg.optim.max_steps, cfg.model.zero_init_residual) = (3, false);
    simclr::pretrain::pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    let out = dir.path().join("encoder.safetensors");
    let line = export(&run, &out);
    assert!(line.contains("cifar") && line.contains("model.maxpool = nn.Identity()"), "{line}");

    let back = dir.path().join("back");
    let runs = RunArgs { out: Some(back.clone()), ..Default::default() };
    let model = ModelArgs { image_size: Some(16), ..Default::default() };
    simclr::import::run(&out, None, &model, &runs, &simclr::default_device()).unwrap();
    let ours = our_features(&run, 16);
    assert_close(&our_features(&back, 16), &ours, 1e-6, "export → import");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-torchvision-export.py");
    if Command::new("python3").args(["-c", "import torch"]).output().map_or(true, |o| !o.status.success()) {
        eprintln!("skipped the PyTorch check: python3 with torch is not installed (`pip install torch`)");
        return;
    }
    let py = Command::new("python3").arg(&script).arg(&out).arg("16").output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let theirs: Vec<f32> = serde_json::from_slice(&py.stdout).unwrap();
    assert_close(&ours, &theirs, 1e-4, "PyTorch on the export");
}

#[test]
fn a_damaged_or_missing_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = format!("{:#}", simclr::export::run(dir.path(), simclr::export::Format::Torchvision, &dir.path().join("x.safetensors")).unwrap_err());
    assert!(e.contains("no checkpoint here"), "{e}");
}
