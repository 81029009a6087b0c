//! Optimisers over a Burn module: LARS (see [`crate::lars`]), SGD with Nesterov momentum and AdamW.
//!
//! One mechanism serves all three: a [`ModuleMapper`] walks the module, names each parameter by
//! its path (`encoder.blocks.3.conv1.weight`), and applies the update rule with the parameter's
//! state buffers. BN parameters (anything inside a `BatchNorm`) and biases are excluded from weight
//! decay — and, for LARS, from trust-ratio scaling — as the official code's
//! `exclude_from_weight_decay = ['batch_normalization', 'bias', 'head_supervised']`; the online
//! probe (path `probe`) is our `head_supervised`.
//!
//! State is keyed by parameter path, so it survives a save/load round trip (see
//! [`Optimizer::save`]) whatever the parameter ids.

use crate::lars::Lars;
use anyhow::{bail, Context, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// LARS with momentum (paper default for pretraining).
    Lars,
    /// SGD with Nesterov momentum, dampening 0.
    Sgd,
    /// Adam with decoupled weight decay.
    Adamw,
}

/// Update rule and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// LARS.
    Lars(Lars),
    /// SGD: `b ← m·b + g + λw; w ← w − η(g + λw + m·b)`.
    Sgd {
        /// Momentum m.
        momentum: f64,
        /// Weight decay λ (coupled, added to the gradient).
        weight_decay: f64,
    },
    /// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments.
    Adamw {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        epsilon: f64,
        /// Weight decay λ (decoupled: `w ← w − ηλw`).
        weight_decay: f64,
    },
}

impl Rule {
    /// The rule for `kind` with the run's momentum (β₁ for AdamW) and weight decay.
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Self {
        match kind {
            OptimizerKind::Lars => Rule::Lars(Lars { momentum, weight_decay, trust_coefficient: 0.001 }),
            OptimizerKind::Sgd => Rule::Sgd { momentum, weight_decay },
            OptimizerKind::Adamw => Rule::Adamw { beta1: momentum, beta2: 0.999, epsilon: 1e-8, weight_decay },
        }
    }

    fn buffers(&self) -> usize {
        match self {
            Rule::Adamw { .. } => 2,
            _ => 1,
        }
    }

    /// Updates `w` with gradient `g`; `state` holds this parameter's buffers, `t` is the 1-based
    /// update count, `decay` is false for excluded (BN, bias) parameters.
    fn apply<const D: usize>(
        &self,
        lr: f64,
        t: u64,
        w: Tensor<D>,
        g: Tensor<D>,
        state: &mut [Tensor<D>],
        decay: bool,
    ) -> Tensor<D> {
        match *self {
            Rule::Lars(lars) => {
                let (w, v) = lars.update(lr, w, g, state[0].clone(), decay);
                state[0] = v;
                w
            }
            Rule::Sgd { momentum, weight_decay } => {
                let g = if decay { g + w.clone().mul_scalar(weight_decay) } else { g };
                let b = state[0].clone().mul_scalar(momentum) + g.clone();
                state[0] = b.clone();
                w - (g + b.mul_scalar(momentum)).mul_scalar(lr)
            }
            Rule::Adamw { beta1, beta2, epsilon, weight_decay } => {
                let w = if decay { w.mul_scalar(1.0 - lr * weight_decay) } else { w };
                let m = state[0].clone().mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
                let v = state[1].clone().mul_scalar(beta2) + g.square().mul_scalar(1.0 - beta2);
                state[0] = m.clone();
                state[1] = v.clone();
                let m_hat = m.div_scalar(1.0 - beta1.powi(t as i32));
                let v_hat = v.div_scalar(1.0 - beta2.powi(t as i32));
                w - (m_hat / v_hat.sqrt().add_scalar(epsilon)).mul_scalar(lr)
            }
        }
    }
}

/// An optimiser with its per-parameter state.
pub struct Optimizer {
    rule: Rule,
    /// Buffers per parameter path, flattened.
    state: HashMap<String, Vec<Tensor<1>>>,
    /// Updates done so far.
    steps: u64,
}

impl Optimizer {
    /// A fresh optimiser (zero state).
    pub fn new(rule: Rule) -> Self {
        Self { rule, state: HashMap::new(), steps: 0 }
    }

    /// Number of updates done.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update with learning rate `lr` to every parameter of `module` that has a gradient.
    /// On libtorch, SGD and LARS update all parameters in one fused call per weight-decay group
    /// ([`crate::ops::optimizer`]) instead of operation by operation and parameter by parameter.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.steps += 1;
        let fused = fused_batches(&self.rule, &module);
        let mut mapper = UpdateMapper { opt: self, lr, grads, path: Vec::new(), bn_depth: 0, fused };
        let module = module.map(&mut mapper);
        #[cfg(feature = "tch")]
        if let Some(batches) = mapper.fused {
            for (decay, batch) in [false, true].into_iter().zip(batches) {
                batch.update(self.rule, lr, decay);
            }
        }
        module
    }

    /// Writes the state as safetensors (`{path}.{buffer}` keys, flat f32) with the step count.
    pub fn save(&self, file: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, (Vec<u8>, usize)> = BTreeMap::new();
        for (path, buffers) in &self.state {
            for (i, b) in buffers.iter().enumerate() {
                let values = crate::floats(b.clone());
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                tensors.insert(format!("{path}.{i}"), (bytes, values.len()));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(k, (bytes, n))| Ok((k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*n], bytes)?)))
            .collect::<Result<_, safetensors::SafeTensorError>>()?;
        let meta = HashMap::from([("steps".to_string(), self.steps.to_string())]);
        safetensors::serialize_to_file(views, Some(meta), file).with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    /// Reads state written by [`Optimizer::save`] onto `device`, for the parameters of `module`:
    /// each state's tensors must be those of `rule` (as many, each the size of its parameter, finite)
    /// and name a parameter of `module`; anything else is an error naming the tensor.
    pub fn load<M: Module>(rule: Rule, file: &Path, module: &M, device: &Device) -> Result<Self> {
        let bytes = crate::files::read(file, crate::files::ARRAY).with_context(|| format!("reading {}", file.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).with_context(|| format!("{}: not a safetensors file", file.display()))?;
        let steps = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{}: no step count in the metadata", file.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut state: HashMap<String, Vec<Tensor<1>>> = HashMap::new();
        let mut names: Vec<_> = st.names().into_iter().map(str::to_string).collect();
        names.sort_by_key(|n| n.rsplit_once('.').map(|(p, i)| (p.to_string(), i.parse::<usize>().unwrap_or(0))));
        for name in names {
            let view = st.tensor(&name)?;
            let values: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            let n = values.len();
            let (path, _) = name.rsplit_once('.').context("malformed optimiser state key")?;
            if values.iter().any(|v| !v.is_finite()) {
                bail!("{}: {name} holds a NaN or an infinity", file.display());
            }
            state.entry(path.to_string()).or_default().push(Tensor::from_data(TensorData::new(values, [n]), device));
        }
        let sizes = parameter_sizes(module);
        for (path, buffers) in &state {
            let Some(&numel) = sizes.get(path) else { bail!("{}: state for {path}, which the model does not have", file.display()) };
            if buffers.len() != rule.buffers() || buffers.iter().any(|b| b.dims()[0] != numel) {
                bail!(
                    "{}: the state of {path} is {} tensors of {:?} values where this --optimizer needs {} of {numel}; was it written for another optimizer or model?",
                    file.display(),
                    buffers.len(),
                    buffers.iter().map(|b| b.dims()[0]).collect::<Vec<_>>(),
                    rule.buffers()
                );
            }
        }
        Ok(Self { rule, state, steps })
    }
}

/// The number of values of every float parameter of `module`, by path (the keys of the state).
fn parameter_sizes<M: Module>(module: &M) -> HashMap<String, usize> {
    struct Sizes {
        path: Vec<String>,
        sizes: HashMap<String, usize>,
    }
    impl burn::module::ModuleVisitor for Sizes {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.sizes.insert(self.path.join("."), param.shape().num_elements());
        }
    }
    let mut sizes = Sizes { path: Vec::new(), sizes: HashMap::new() };
    module.visit(&mut sizes);
    sizes.sizes
}

/// The parameters of a fused update, without weight decay and with, where it serves `rule` on
/// `module`'s device.
#[cfg(feature = "tch")]
type Batches = [crate::ops::optimizer::Batch; 2];
/// No fused update without libtorch.
#[cfg(not(feature = "tch"))]
type Batches = std::convert::Infallible;

fn fused_batches<M: Module>(rule: &Rule, module: &M) -> Option<Batches> {
    #[cfg(feature = "tch")]
    if module.devices().first().is_some_and(|device| crate::ops::optimizer::serves(rule, device)) {
        return Some(Default::default());
    }
    let _ = (rule, module);
    None
}

/// Walks a module and updates each parameter in place of the old one, or, with `fused`, gathers
/// the parameters for [`crate::ops::optimizer::Batch::update`] after the walk.
struct UpdateMapper<'a> {
    opt: &'a mut Optimizer,
    lr: f64,
    grads: GradientsParams,
    path: Vec<String>,
    bn_depth: usize,
    fused: Option<Batches>,
}

impl ModuleMapper for UpdateMapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        if container_type == "Struct:BatchNorm" {
            self.bn_depth += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.pop();
        if container_type == "Struct:BatchNorm" {
            self.bn_depth -= 1;
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let w = tensor.inner();
        let path = self.path.join(".");
        let decay = self.bn_depth == 0
            && self.path.last().map(String::as_str) != Some("bias")
            && !self.path.iter().any(|p| p == "probe");
        let dims = w.dims();
        let numel: usize = dims.iter().product();
        let rule = self.opt.rule;
        let flat = self
            .opt
            .state
            .remove(&path)
            .unwrap_or_else(|| (0..rule.buffers()).map(|_| Tensor::zeros([numel], &w.device())).collect());
        let updated = match &mut self.fused {
            #[cfg(feature = "tch")]
            Some(batches) => {
                // Updated in place after the walk: the module returned holds this storage.
                let w = crate::ops::optimizer::exclusive(w);
                batches[decay as usize].push(w.clone(), grad, flat[0].clone());
                self.opt.state.insert(path, flat);
                w
            }
            #[cfg(not(feature = "tch"))]
            Some(never) => match *never {},
            None => {
                let mut buffers: Vec<Tensor<D>> = flat.into_iter().map(|b| b.reshape(dims)).collect();
                let updated = rule.apply(self.lr, self.opt.steps, w, grad, &mut buffers, decay);
                self.opt.state.insert(path, buffers.into_iter().map(|b| b.reshape([numel])).collect());
                updated
            }
        };
        let mut updated = Tensor::from_inner(updated);
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
