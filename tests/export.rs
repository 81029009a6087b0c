//! `simclr export --format torchvision`: PyTorch's own file comes back out unchanged (import, then
//! export), export then import gives the same network, and PyTorch loads the export with
//! `strict=True` into a torchvision-layout ResNet and computes our features (when python3 with torch
//! is installed, as `.ci/run` installs it). `--format onnx`: ONNX Runtime (when python3 has
//! `onnxruntime`, as `.ci/run` installs it) computes our h and z from the exported file at two batch
//! sizes; tract does the same in the crate `onnx-tract` (built once, in the flex suite).

mod common;
#[path = "common/exported.rs"]
mod exported;

use exported::{assert_close, check_onnx_exports, our_output, pretrained};
use simclr::config::{ModelArgs, RunArgs};
use simclr::eval::Layer;
use simclr::export::Format;
use simclr::resnet::Arch;
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

/// The torchvision export of `checkpoint` into `out`, and the PyTorch code that loads it.
fn export(checkpoint: &Path, out: &Path) -> String {
    simclr::export::run(checkpoint, Format::Torchvision, Layer::H, out).unwrap().holds.pytorch_code(out).unwrap()
}

#[test]
fn pytorchs_file_comes_back_out_unchanged() {
    // Imported from PyTorch, exported again: every encoder tensor of the original, bit for bit,
    // under its own name, plus one num_batches_tracked per BN (torchvision has them; we keep 0).
    let dir = tempfile::tempdir().unwrap();
    let imported = dir.path().join("imported");
    let run = RunArgs { out: Some(imported.clone()), ..Default::default() };
    simclr::import::run(&fixture("resnet18-w0.125.pth"), None, Default::default(), &ModelArgs::default(), &run, &simclr::default_device()).unwrap();
    let out = dir.path().join("encoder.safetensors");
    let line = export(&imported, &out);
    assert!(line.contains("torchvision.models.resnet18()") && line.contains("strict=True"), "{line}");
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
    our_output(checkpoint, size, 2, 0)
}

#[test]
fn export_then_import_is_the_same_network_and_pytorch_loads_it_strictly() {
    for arch in [Arch::Resnet18, Arch::Resnet50] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        pretrained(&run, arch, 16, false);
        let out = dir.path().join("encoder.safetensors");
        let line = export(&run, &out);
        // The CIFAR stem: a 3×3 stride-1 conv1 and no max-pool.
        assert!(line.contains(", 3, 1, 1, bias=False)") && line.contains("model.maxpool = nn.Identity()"), "{line}");

        let back = dir.path().join("back");
        let runs = RunArgs { out: Some(back.clone()), ..Default::default() };
        let model = ModelArgs { image_size: Some(16), ..Default::default() };
        simclr::import::run(&out, None, Default::default(), &model, &runs, &simclr::default_device()).unwrap();
        let ours = our_features(&run, 16);
        assert_close(&our_features(&back, 16), &ours, 1e-6, &format!("{arch:?} export → import"));

        if let Some(theirs) = python("torch", "check-torchvision-export.py", &[out.as_os_str(), "16".as_ref()]) {
            assert_close(&ours, &theirs, 1e-4, &format!("PyTorch on the {arch:?} export"));
        }
    }
}

/// What `scripts/SCRIPT ARGS` prints (a JSON list of numbers), or `None` with a message when
/// python3 cannot import `module`.
fn python(module: &str, script: &str, args: &[&std::ffi::OsStr]) -> Option<Vec<f32>> {
    if Command::new("python3").args(["-c", &format!("import {module}")]).output().map_or(true, |o| !o.status.success()) {
        eprintln!("skipped the {module} check: python3 cannot import {module} (`pip install {module}`)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script);
    let py = Command::new("python3").arg(&script).args(args).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    Some(serde_json::from_slice(&py.stdout).unwrap())
}

#[test]
fn the_onnx_export_computes_our_h_and_z_in_onnx_runtime() {
    check_onnx_exports(|file, run, size, index, what| {
        // Two batch sizes through one file: the batch axis is dynamic.
        for n in [1, 3] {
            let ours = our_output(run, size, n, index);
            let (size, batch) = (size.to_string(), n.to_string());
            if let Some(theirs) = python("onnxruntime", "check-onnx-export.py", &[file.as_os_str(), size.as_ref(), batch.as_ref()]) {
                assert_close(&theirs, &ours, 1e-4, &format!("ONNX Runtime, {what}, batch {n}"));
            }
        }
    });
}

#[test]
fn a_network_imported_from_tensorflow_exports_for_pytorch_with_its_padding() {
    let dir = tempfile::tempdir().unwrap();
    let tf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf");
    let import = |name: &str| {
        let out = dir.path().join(name);
        let runs = RunArgs { out: Some(out.clone()), ..Default::default() };
        simclr::import::run(&tf.join(name).join("model.ckpt-1"), None, Default::default(), &ModelArgs::default(), &runs, &simclr::default_device()).unwrap();
        out
    };
    // 36 px: the max-pool's input is 18 px, which TensorFlow pads at the bottom/right only.
    let v1 = import("v1");
    let file = dir.path().join("v1.safetensors");
    let line = export(&v1, &file);
    assert!(line.contains("model.maxpool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2))"), "{line}");
    if let Some(theirs) = python("torch", "check-torchvision-export.py", &[file.as_os_str(), "36".as_ref()]) {
        assert_close(&our_features(&v1, 36), &theirs, 1e-4, "PyTorch on the export of a TensorFlow ResNet-50");
    }
    let sk = import("sk");
    let e = format!("{:#}", simclr::export::run(&sk, Format::Torchvision, Layer::H, &dir.path().join("sk.safetensors")).unwrap_err());
    assert!(e.contains("selective kernels") && e.contains("--format onnx"), "{e}");
}

#[test]
fn export_refuses_what_its_format_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    pretrained(&run, Arch::Resnet18, 16, false);
    let e = format!("{:#}", simclr::export::run(&run, Format::Torchvision, Layer::Z, &dir.path().join("x")).unwrap_err());
    assert!(e.contains("--layer z") && e.contains("--format onnx"), "{e}");
    let e = format!("{:#}", simclr::export::run(&run, Format::Onnx, Layer::Head(7), &dir.path().join("x")).unwrap_err());
    assert!(e.contains("head:7") && e.contains("only 2 layers"), "{e}");
    assert!(!dir.path().join("x").exists(), "nothing written");
}

#[test]
fn a_damaged_or_missing_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = format!("{:#}", simclr::export::run(dir.path(), Format::Torchvision, Layer::H, &dir.path().join("x.safetensors")).unwrap_err());
    assert!(e.contains("no checkpoint here"), "{e}");
}
