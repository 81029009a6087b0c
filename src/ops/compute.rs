//! How the network's kernels compute, as one value the model carries ([`Compute`]): the
//! convolutions' arithmetic ([`Precision`]) and memory order ([`MemoryFormat`]), checked against
//! the device, and the ranks whose batch statistics training-mode BN shares.

use anyhow::{bail, Result};
use burn::tensor::Device;
#[cfg(feature = "tch")]
use super::libtorch::is_libtorch;

/// Arithmetic of the encoder's convolutions (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` throughout.
    #[default]
    F32,
    /// Mixed precision as PyTorch's autocast does it: convolutions on `bfloat16` operands with
    /// `f32` accumulation, channels-last (the layout of oneDNN's AMX / AVX-512-BF16 kernels and of
    /// cuDNN), and the encoder's activations `bfloat16` from there to the pooling (BN with `f32`
    /// statistics and parameters, ReLU, residual sums); h, the head, the loss, the weights and
    /// the optimiser stay `f32`. libtorch devices only.
    Bf16,
}

/// Memory order of the encoder's activations on libtorch and flex (`--memory-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// The faster one for the device: channels-last on libtorch (CPU and CUDA), NCHW elsewhere.
    #[default]
    Auto,
    /// `[N, C, H, W]` in memory order (Burn's own layout).
    Nchw,
    /// `[N, H, W, C]` in memory (PyTorch's `channels_last`), converted once at the stem: on
    /// libtorch oneDNN's and cuDNN's NHWC kernels; on flex ([`crate::ops::order`]) the direct
    /// convolutions read and write it without transposes, the residual end takes it as it is.
    /// libtorch and flex (`f32`) only.
    ChannelsLast,
}

/// How the network computes on its device, built once from the run's settings, carried by the
/// model ([`crate::model::SimClr::with_compute`]) and handed by its layers to their kernels: the
/// convolutions' arithmetic and memory order, and the ranks whose batch statistics training-mode
/// BN shares. The default is what a network computes before any setting: `f32`, `auto` memory
/// order, each rank's BN alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compute {
    /// Arithmetic of the encoder's convolutions (`bf16`: libtorch only).
    pub precision: Precision,
    /// Memory order of the convolutions' inputs (channels-last: libtorch and flex only).
    pub memory_format: MemoryFormat,
    /// The ranks training-mode BN takes its statistics over (sync BN); `None`: this rank's alone.
    pub sync_bn: Option<&'static dyn crate::distributed::Collective>,
    /// Training-mode BN normalises with the batch statistics but leaves its running statistics as
    /// they are: the gradient cache's first forward ([`crate::train::cache`]), whose chunks the
    /// second forward normalises (and counts) again.
    pub freeze_running_stats: bool,
}

impl Compute {
    /// `precision` and `memory_format` checked against `device` (`bf16` is libtorch's,
    /// `channels-last` libtorch's and flex's: elsewhere an error naming the fix; `bf16` warns on a
    /// CPU without AMX), the memory format resolved (`auto`: channels-last on libtorch, NCHW
    /// elsewhere); no sync BN.
    pub fn on(device: &Device, precision: Precision, memory_format: MemoryFormat) -> Result<Self> {
        #[cfg(feature = "tch")]
        if is_libtorch(device) {
            if precision == Precision::Bf16 && super::libtorch::is_cpu(device) && !cpu_has_amx_bf16() {
                // Once a process: the command line checks its flags, then the command its network.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| tracing::warn!("--precision bf16 on a CPU without AMX (no amx_bf16 in /proc/cpuinfo): bfloat16 convolutions are emulated and slower than f32 here (measured 0.7-0.8x); use --precision f32"));
            }
            let memory_format = if memory_format == MemoryFormat::Nchw { MemoryFormat::Nchw } else { MemoryFormat::ChannelsLast };
            return Ok(Compute { precision, memory_format, ..Compute::default() });
        }
        if precision == Precision::Bf16 {
            bail!("--precision bf16: only libtorch devices compute convolutions in bfloat16, not {device:?}; use --device tch-cpu or cuda (feature tch), or --precision f32");
        }
        if memory_format == MemoryFormat::ChannelsLast && !is_flex(device) {
            bail!("--memory-format channels-last: only libtorch and flex devices keep activations channels-last, not {device:?}; use --device flex, tch-cpu or cuda (feature tch), or --memory-format auto");
        }
        let memory_format = if memory_format == MemoryFormat::ChannelsLast { MemoryFormat::ChannelsLast } else { MemoryFormat::Nchw };
        Ok(Compute { precision, memory_format, ..Compute::default() })
    }

    /// With training-mode BN's statistics over the ranks of `world` (sync BN) when `on` and it has
    /// several.
    pub fn with_sync_bn(self, on: bool, world: &'static dyn crate::distributed::Collective) -> Self {
        Compute { sync_bn: (on && world.ranks() > 1).then_some(world), ..self }
    }

    /// Whether libtorch's convolutions take `bfloat16` operands.
    pub fn bf16(&self) -> bool {
        self.precision == Precision::Bf16
    }

    /// Whether the convolutions on `device` take their input and hand on their output
    /// channels-last: under `channels-last`, and under `auto` except on flex (where NCHW is
    /// `auto`'s order).
    pub fn channels_last(&self, device: &Device) -> bool {
        match self.memory_format {
            MemoryFormat::Nchw => false,
            MemoryFormat::ChannelsLast => true,
            MemoryFormat::Auto => !is_flex(device),
        }
    }
}

/// Whether `device` is a flex device.
fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_)) {
        return true;
    }
    let _ = device;
    false
}

/// Whether this CPU has Intel AMX with bfloat16 tiles (the `amx_bf16` flag Linux lists), which
/// oneDNN's fast bfloat16 convolutions need; false where it cannot tell.
#[cfg(feature = "tch")]
fn cpu_has_amx_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| info.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "amx_bf16")))
}
