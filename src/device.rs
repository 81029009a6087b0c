//! Choosing the compute device at run time among the backends compiled in (`--device`).
//!
//! Backends are cargo features: `flex` (pure-Rust CPU, the default), `tch` (libtorch CPU and
//! CUDA), `vulkan` and `wgpu` (pure-Rust GPU through CubeCL). The model code is the same on all of
//! them; only the [`Device`] differs. How the network computes there — the convolutions'
//! precision and memory order, the ranks of sync BN — is one value, [`Compute`]
//! ([`crate::ops::compute`]), which the model carries and hands to its kernels.

use anyhow::{bail, Result};
use burn::tensor::Device;
pub use crate::ops::compute::{Compute, MemoryFormat, Precision};

/// The device names `--device` accepts, with the cargo feature each needs.
pub const DEVICE_HELP: &str =
    "auto (the first compiled-in backend, or BURN_DEVICE), cpu (flex, else libtorch CPU), \
flex, tch-cpu, cuda[:N] (feature tch), vulkan[:N] (feature vulkan), wgpu[:N] (feature wgpu)";

/// Parses a `--device` value (`auto`, `cpu`, `flex`, `tch-cpu`, `cuda:0`, `vulkan:0`, `wgpu`, ...)
/// into a device of a backend compiled into this build; a backend that is not compiled in is an
/// error naming the cargo feature to build with.
pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (name, index) = match spec.split_once(':') {
        Some((name, index)) => {
            let Ok(index) = index.parse::<usize>() else {
                bail!("--device {spec}: the index after ':' must be a number, e.g. cuda:0");
            };
            (name, Some(index))
        }
        None => (spec.as_str(), None),
    };
    let missing = |feature: &str| -> Result<Device> {
        bail!("--device {spec} needs the `{feature}` backend, which this build does not have: rebuild with `cargo build --release --features {feature}`")
    };
    let no_index = |device: Device| -> Result<Device> {
        if index.is_some() {
            bail!("--device {spec}: `{name}` takes no index");
        }
        Ok(device)
    };
    // `cpu` is flex where compiled in, else libtorch's CPU device.
    let name = match name {
        "cpu" if cfg!(feature = "flex") || !cfg!(feature = "tch") => "flex",
        "cpu" | "libtorch" => "tch-cpu",
        other => other,
    };
    match name {
        "auto" => no_index(crate::default_device()),
        "flex" => {
            #[cfg(feature = "flex")]
            return no_index(Device::flex());
            #[cfg(not(feature = "flex"))]
            return missing("flex");
        }
        "tch-cpu" => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return no_index(Device::libtorch());
            #[cfg(not(feature = "tch"))]
            return missing("tch");
        }
        "cuda" => {
            #[cfg(feature = "tch")]
            {
                let (index, count) = (index.unwrap_or(0), tch::Cuda::device_count().max(0) as usize);
                if index >= count {
                    bail!("--device {spec}: libtorch sees {count} CUDA device(s); check the NVIDIA driver and that the Python torch is a CUDA build, or use --device cpu");
                }
                #[allow(deprecated)]
                return Ok(Device::libtorch_cuda(index));
            }
            #[cfg(not(feature = "tch"))]
            return missing("tch");
        }
        "vulkan" => {
            #[cfg(feature = "vulkan")]
            return Ok(Device::vulkan(gpu_kind(index)));
            #[cfg(not(feature = "vulkan"))]
            return missing("vulkan");
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(gpu_kind(index)));
            #[cfg(not(feature = "wgpu"))]
            return missing("wgpu");
        }
        _ => bail!("--device {spec}: unknown device; use one of {DEVICE_HELP}"),
    }
}

/// The backend of `device` as `BURN_DEVICE` names it: `flex`, `tch` (libtorch) or `wgpu` (the
/// CubeCL runtimes, Vulkan included).
pub fn backend_name(device: &Device) -> &'static str {
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => "flex",
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) => "tch",
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        DispatchDevice::Cube(_) => "wgpu",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// `vulkan:N` / `wgpu:N` is the N-th discrete GPU; without an index, the adapter wgpu prefers.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn gpu_kind(index: Option<usize>) -> burn::tensor::DeviceKind {
    index.map_or(
        burn::tensor::DeviceKind::DefaultDevice,
        burn::tensor::DeviceKind::DiscreteGpu,
    )
}
