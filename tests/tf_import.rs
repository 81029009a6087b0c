//! `simclr import` of TensorFlow checkpoints written by the official SimCLR code itself
//! (tests/fixtures/tf, made by scripts/make-tf-fixtures.py from google-research/simclr's
//! `resnet.py` and `model_util.py`: a narrow ResNet-50 plain (v1 style), with selective kernels,
//! and with squeeze-excitation, random weights and BN statistics): after import, our network
//! gives TensorFlow's h and every projection-head layer; damaged or lying files are refused.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use simclr::config::{ModelArgs, RunArgs};
use simclr::import::{import_tensorflow, TfOptions};
use simclr::resnet::{Arch, Padding, Stem};
use simclr::tfcheckpoint::Bundle;
use std::path::{Path, PathBuf};

fn device() -> burn::tensor::Device {
    simclr::default_device()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf").join(name)
}

fn expected(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap()
}

fn array(v: &serde_json::Value) -> (Vec<usize>, Vec<f32>) {
    let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    (shape, data)
}

fn assert_close(what: &str, got: Tensor<2>, want: &serde_json::Value) {
    let (shape, want) = array(want);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got = got.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale, "{what}[{i}]: ours {g}, TensorFlow {w}");
    }
}

/// Imports fixture `name` and compares h, each head layer and the supervised head's logits with
/// TensorFlow's.
fn check(name: &str, sk: f32, se: f32) {
    let want = expected(name);
    let layer = want["classifier_input"].as_u64().unwrap() as usize;
    let options = TfOptions { classifier_layer: layer, ..Default::default() };
    let (model, cfg, report) = import_tensorflow(&fixture(name).join("model.ckpt-1"), options, &ModelArgs::default(), &RunArgs::default(), &device()).unwrap();
    assert_eq!((cfg.model.arch, cfg.model.width, cfg.model.stem, cfg.model.padding), (Arch::Resnet50, 0.0625, Stem::Imagenet, Padding::Tensorflow));
    assert_eq!((cfg.model.sk_ratio, cfg.model.se_ratio, cfg.model.head_layers, cfg.model.proj_dim), (sk, se, 3, 16));
    assert_eq!((report.classifier, report.classifier_layer), (Some(vec![128, 10]), Some(layer)), "{name}: the supervised head");
    assert_eq!((cfg.monitor.num_classes, cfg.monitor.probe_layer), (10, layer));
    assert!(report.ignored.iter().all(|n| n == "global_step" || n.ends_with("Momentum")), "{:?}", report.ignored);
    let (shape, images) = array(&want["images"]);
    let images = Tensor::<4>::from_data(TensorData::new(images, [shape[0], shape[1], shape[2], shape[3]]), &device());
    let model = model.valid();
    let hiddens = model.forward(images);
    assert_close(&format!("{name} h"), hiddens[0].clone(), &want["h"]);
    assert_close(&format!("{name} logits"), model.probe_logits(&hiddens).unwrap(), &want["logits"]);
    for (k, layer) in want["head"].as_array().unwrap().iter().enumerate() {
        assert_close(&format!("{name} head layer {}", k + 1), hiddens[k + 1].clone(), layer);
    }
}

#[test]
fn a_v1_style_resnet50_gives_tensorflows_features_and_head() {
    check("v1", 0.0, 0.0);
}

#[test]
fn a_selective_kernel_resnet50_gives_tensorflows_features_and_head() {
    check("sk", 0.0625, 0.0);
}

#[test]
fn a_squeeze_excitation_resnet50_gives_tensorflows_features_and_head() {
    check("se", 0.0, 0.25);
}

#[test]
fn the_index_lists_every_variable_with_its_shape_and_type() {
    let bundle = Bundle::open(&fixture("v1").join("model.ckpt-1.index")).unwrap();
    let stem = &bundle.entries()["base_model/conv2d/kernel"];
    assert_eq!((stem.shape.as_slice(), stem.dtype_name().as_str()), ([7, 7, 3, 4].as_slice(), "float32"));
    assert_eq!(bundle.entries()["global_step"].dtype_name(), "int64");
    let err = bundle.read("global_step").unwrap_err().to_string();
    assert!(err.contains("global_step is int64"), "{err}");
    assert_eq!(bundle.read("base_model/conv2d/kernel").unwrap().shape().to_vec(), vec![7, 7, 3, 4]);
}

/// A copy of fixture `name` in a temporary folder, `edit` applied to its index and data bytes.
fn damaged(name: &str, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut index = std::fs::read(fixture(name).join("model.ckpt-1.index")).unwrap();
    let mut data = std::fs::read(fixture(name).join("model.ckpt-1.data-00000-of-00001")).unwrap();
    edit(&mut index, &mut data);
    std::fs::write(dir.path().join("model.ckpt-1.index"), index).unwrap();
    std::fs::write(dir.path().join("model.ckpt-1.data-00000-of-00001"), data).unwrap();
    let prefix = dir.path().join("model.ckpt-1");
    (dir, prefix)
}

fn import_error(prefix: &Path) -> String {
    format!("{:#}", import_tensorflow(prefix, Default::default(), &ModelArgs::default(), &RunArgs::default(), &device()).unwrap_err())
}

#[test]
fn a_damaged_byte_is_refused_naming_the_tensor_or_the_block() {
    // A byte of the stem's kernel: its tensor CRC fails, named.
    let bundle = Bundle::open(&fixture("se").join("model.ckpt-1")).unwrap();
    let values = bundle.read("base_model/conv2d/kernel").unwrap().try_into_vec::<f32>().unwrap();
    let raw = std::fs::read(fixture("se").join("model.ckpt-1.data-00000-of-00001")).unwrap();
    let first = values[0].to_le_bytes();
    let at = raw.windows(4).position(|w| w == first).unwrap();
    let (_dir, prefix) = damaged("se", |_, data| data[at] ^= 0x40);
    let err = import_error(&prefix);
    assert!(err.contains("variable base_model/conv2d/kernel fails its CRC32C check"), "{err}");

    // A byte inside the index's first data block: the block's CRC fails, named.
    let (_dir, prefix) = damaged("se", |index, _| index[20] ^= 0x01);
    let err = import_error(&prefix);
    assert!(err.contains("data block 0") && err.contains("CRC32C"), "{err}");

    // The footer's magic.
    let (_dir, prefix) = damaged("se", |index, _| *index.last_mut().unwrap() ^= 0xff);
    assert!(import_error(&prefix).contains("magic"));

    // A truncated data file: the variables past its end are refused by name, nothing read past it.
    let (_dir, prefix) = damaged("se", |_, data| data.truncate(data.len() / 2));
    let err = import_error(&prefix);
    assert!(err.contains("claims bytes") && err.contains("truncated"), "{err}");
}

#[test]
fn a_missing_extra_or_misshaped_variable_is_refused_naming_it() {
    use simclr::import::tensorflow::{infer_encoder, infer_head, network_variables};
    let bundle = Bundle::open(&fixture("sk").join("model.ckpt-1")).unwrap();
    let vars = network_variables(&bundle, false).unwrap();
    assert!(infer_encoder(&vars).is_ok());
    let mut missing = vars.clone();
    missing.remove("base_model/batch_normalization_7/moving_variance");
    let err = infer_encoder(&missing).unwrap_err();
    assert!(err.contains("base_model/batch_normalization_7/moving_variance (shape [16]) is missing"), "{err}");
    let mut extra = vars.clone();
    extra.insert("base_model/conv2d_999/kernel".into(), vec![1, 1, 4, 4]);
    let err = infer_encoder(&extra).unwrap_err();
    assert!(err.contains("base_model/conv2d_999/kernel is not a variable of this network"), "{err}");
    let mut misshaped = vars.clone();
    misshaped.insert("base_model/conv2d_5/kernel".into(), vec![3, 3, 4, 9]);
    let err = infer_encoder(&misshaped).unwrap_err();
    assert!(err.contains("base_model/conv2d_5/kernel has shape [3, 3, 4, 9], [3, 3, 4, 8] expected"), "{err}");
    let mut head = vars.clone();
    head.remove("head_contrastive/nl_1/batch_normalization/beta");
    let err = infer_head(&head, 128).unwrap_err();
    assert!(err.contains("head_contrastive/nl_1/batch_normalization/beta (shape [128]) is missing"), "{err}");
    let mut no_encoder = vars;
    no_encoder.remove("base_model/conv2d/kernel");
    assert!(infer_encoder(&no_encoder).unwrap_err().contains("no base_model/conv2d/kernel"));
}

#[test]
fn a_classifier_layer_that_does_not_fit_the_supervised_head_is_refused() {
    let import = |layer| {
        let options = TfOptions { classifier_layer: layer, ..Default::default() };
        format!("{:#}", import_tensorflow(&fixture("v1").join("model.ckpt-1"), options, &ModelArgs::default(), &RunArgs::default(), &device()).unwrap_err())
    };
    // z has 16 dimensions, the supervised head reads 128.
    let err = import(3);
    assert!(err.contains("--classifier-layer 3: that layer has 16 dimensions, but the supervised head reads 128"), "{err}");
    assert!(import(4).contains("--classifier-layer 4: the network has 3 head layers"));
}

#[test]
fn the_moving_averages_are_asked_for_by_name() {
    let err = format!("{:#}", import_tensorflow(&fixture("v1").join("model.ckpt-1"), TfOptions { ema: true, ..Default::default() }, &ModelArgs::default(), &RunArgs::default(), &device()).unwrap_err());
    assert!(err.contains("no moving averages"), "{err}");
}

#[test]
fn a_folder_is_read_through_its_checkpoint_file_or_its_only_index() {
    use simclr::tfcheckpoint::resolve;
    // The fixture folders hold one checkpoint and no `checkpoint` file.
    assert_eq!(resolve(&fixture("sk")).unwrap(), fixture("sk").join("model.ckpt-1"));
    let (dir, prefix) = damaged("sk", |_, _| {});
    std::fs::write(dir.path().join("checkpoint"), "model_checkpoint_path: \"model.ckpt-1\"\nall_model_checkpoint_paths: \"model.ckpt-1\"\n").unwrap();
    assert_eq!(resolve(dir.path()).unwrap(), prefix);
    assert!(import_tensorflow(dir.path(), Default::default(), &ModelArgs::default(), &RunArgs::default(), &device()).is_ok());
    std::fs::write(dir.path().join("checkpoint"), "model_checkpoint_path: \"model.ckpt-250228\"\n").unwrap();
    let err = format!("{:#}", resolve(dir.path()).unwrap_err());
    assert!(err.contains("names model.ckpt-250228") && err.contains("missing"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert!(format!("{:#}", resolve(empty.path()).unwrap_err()).contains("no TensorFlow checkpoint in this folder"));
}

#[test]
fn predict_classifies_images_with_the_imported_supervised_head() {
    use simclr::eval::predict::predict;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sk");
    // 32 px: evaluation takes the whole image, so a 32 × 32 file reaches the network as it is.
    let model = ModelArgs { image_size: Some(32), ..Default::default() };
    let run = RunArgs { out: Some(out.clone()), ..Default::default() };
    let options = TfOptions { classifier_layer: 1, ..Default::default() };
    simclr::import::run(&fixture("sk"), None, options, &model, &run, &device()).unwrap();
    let images: Vec<PathBuf> = (0..2u32)
        .map(|k| {
            let file = dir.path().join(format!("{k}.png"));
            image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8 + k * 40) as u8, (y * 8) as u8, ((x ^ y) * 8) as u8])).save(&file).unwrap();
            file
        })
        .collect();
    let found = predict(&out, &images, 10, None, &simclr::config::Config::default(), &device()).unwrap();
    assert_eq!((found.classes, found.layer, found.image_size, found.predictions.len()), (10, 1, 32, 2));

    // The same images through the imported network directly: the softmax of the supervised head
    // on head layer 1, every class, most probable first, named by number.
    let (net, _, _) = import_tensorflow(&fixture("sk"), options, &model, &RunArgs::default(), &device()).unwrap();
    let net = net.valid();
    for (file, p) in images.iter().zip(&found.predictions) {
        let img = image::open(file).unwrap().to_rgb8();
        let pixels: Vec<f32> = (0..3).flat_map(|c| img.pixels().map(move |px| px.0[c] as f32 / 255.0)).collect();
        let logits = net.probe_logits(&net.forward(Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, 32, 32]), &device()))).unwrap();
        let want = burn::tensor::activation::softmax(logits, 1).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(p.top.len(), 10);
        assert!(p.top.windows(2).all(|w| w[0].probability >= w[1].probability), "{p:?}");
        for g in &p.top {
            assert!((g.probability - want[g.class]).abs() < 1e-5, "{}: class {} {} vs {}", file.display(), g.class, g.probability, want[g.class]);
            assert_eq!(g.name, format!("class {}", g.class));
        }
    }

    // Named classes; a wrong count of names, a missing image and a network without a classifier
    // are refused by name.
    let names = dir.path().join("names.txt");
    std::fs::write(&names, (0..10).map(|c| format!("kind {c}\n")).collect::<String>()).unwrap();
    let named = predict(&out, &images[..1], 1, Some(&names), &simclr::config::Config::default(), &device()).unwrap();
    assert_eq!(named.predictions[0].top[0].name, format!("kind {}", found.predictions[0].top[0].class));
    std::fs::write(&names, "a\nb\n").unwrap();
    let err = format!("{:#}", predict(&out, &images, 1, Some(&names), &simclr::config::Config::default(), &device()).unwrap_err());
    assert!(err.contains("2 names for a classifier of 10 classes"), "{err}");
    let err = format!("{:#}", predict(&out, &[dir.path().join("none.png")], 1, None, &simclr::config::Config::default(), &device()).unwrap_err());
    assert!(err.contains("none.png: no such image file"), "{err}");
    let plain = dir.path().join("plain");
    simclr::import::run(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet18-w0.125.pth"), None, Default::default(), &ModelArgs::default(), &RunArgs { out: Some(plain.clone()), ..Default::default() }, &device()).unwrap();
    let err = format!("{:#}", predict(&plain, &images, 1, None, &simclr::config::Config::default(), &device()).unwrap_err());
    assert!(err.contains("has no classifier"), "{err}");
}

#[test]
fn a_fifo_where_the_index_should_be_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("model.ckpt-9.index");
    assert!(std::process::Command::new("mkfifo").arg(&index).status().unwrap().success());
    let prefix = dir.path().join("model.ckpt-9");
    assert!(simclr::tfcheckpoint::is_checkpoint(&prefix), "the index exists: the TensorFlow reader says why it cannot read it");
    let err = import_error(&prefix);
    assert!(err.contains("a FIFO; only regular files are read"), "{err}");
}
