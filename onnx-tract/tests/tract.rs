//! `simclr export --format onnx`: tract (a Rust ONNX runtime that is not ours) computes our h and z
//! from the exported file at two batch sizes through one file (the batch axis is dynamic), for
//! ResNet-18 with the CIFAR stem at 16 px and ResNet-50 with ImageNet's (max-pool) at 40 px.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/exported.rs"]
mod exported;

use exported::{assert_close, check_onnx_exports, input, our_output};
use std::path::Path;

/// The ONNX model in `file` run by tract on [`input`]`(n, size)`.
fn tract_output(file: &Path, size: usize, n: usize) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_path(file)
        .and_then(|m| m.with_input_fact(0, f32::fact([n, 3, size, size]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load {}: {e:?}", file.display()));
    let x = tract_ndarray::Array4::from_shape_vec((n, 3, size, size), input(n, size)).unwrap();
    let out = model.run(tvec!(Tensor::from(x).into())).unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn the_onnx_export_computes_our_h_and_z_in_tract() {
    check_onnx_exports(|file, run, size, index, what| {
        for n in [1, 3] {
            assert_close(&tract_output(file, size, n), &our_output(run, size, n, index), 1e-4, &format!("tract, {what}, batch {n}"));
        }
    });
}
