//! Checkpoints: `OUT/checkpoints/step-NNNNNNNN/` holding
//!
//! - `model.safetensors` — encoder and head weights plus BN running statistics, readable by any
//!   safetensors tool (keys such as `encoder.blocks.0.conv1.weight`, `encoder.bn1.running_mean`);
//! - `optimizer.safetensors` — the optimiser's buffers, keyed by parameter path;
//! - `state.json` — step, epoch and seed (the data order and every augmentation are pure functions
//!   of seed, epoch and image index, so this *is* the RNG state);
//! - `config.toml` — the resolved run config.
//!
//! Writing is atomic: everything goes into a hidden temporary folder which is renamed into place
//! only when complete, then the `latest` pointer is replaced by rename. A crash leaves the previous
//! checkpoint intact.

use crate::config::Config;
use crate::model::SimClr;
use crate::optim::Optimizer;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the run is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: usize,
    /// Epoch the next step belongs to.
    pub epoch: usize,
    /// Seed of the run.
    pub seed: u64,
}

/// The folder holding a run's checkpoints.
pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Writes a checkpoint atomically and keeps only the newest `keep`. Returns its folder.
pub fn save(out: &Path, cfg: &Config, model: &SimClr, optim: &Optimizer, state: &TrainState) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    std::fs::create_dir_all(&root).with_context(|| format!("--out {}: cannot create the checkpoint folder", out.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    save_model(model, &tmp.join("model.safetensors"))?;
    optim.save(&tmp.join("optimizer.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    std::fs::write(tmp.join("config.toml"), cfg.to_toml())?;
    let dst = root.join(&name);
    if dst.exists() {
        std::fs::remove_dir_all(&dst)?;
    }
    std::fs::rename(&tmp, &dst).with_context(|| format!("cannot move the checkpoint into {}", dst.display()))?;
    let pointer_tmp = root.join(".latest.tmp");
    std::fs::write(&pointer_tmp, &name)?;
    std::fs::rename(&pointer_tmp, root.join("latest"))?;
    prune(&root, cfg.monitor.keep_checkpoints)?;
    Ok(dst)
}

/// Deletes all but the newest `keep` checkpoint folders.
fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(keep);
    for old in &dirs[..excess] {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}

/// The newest complete checkpoint under `out`, if any.
pub fn latest(out: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(out);
    let pointer = root.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer)?;
    let dir = root.join(name.trim());
    if !dir.join("state.json").exists() {
        bail!("{}: points to {}, which is incomplete; delete the pointer to start over", pointer.display(), dir.display());
    }
    Ok(Some(dir))
}

/// Resolves a `--checkpoint` argument: a checkpoint folder, or a run folder (its latest checkpoint).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("model.safetensors").exists() {
        return Ok(path.to_path_buf());
    }
    latest(path)?.with_context(|| format!("{}: no checkpoint here (expected model.safetensors or checkpoints/latest)", path.display()))
}

/// Reads a checkpoint's training state.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let text = std::fs::read_to_string(dir.join("state.json")).with_context(|| format!("{}: no state.json", dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}/state.json is corrupt", dir.display()))
}

/// Reads the config stored with a checkpoint.
pub fn read_config(dir: &Path) -> Result<Config> {
    Config::from_file(&dir.join("config.toml"))
}

/// Saves the model's weights and BN statistics as safetensors. (`valid()` first folds the running
/// statistics' pending update from the last training step in, which a plain visit would miss.)
pub fn save_model(model: &SimClr, file: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(file);
    model.valid().save_into(&mut store).map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))
}

/// Loads weights saved by [`save_model`] into `model` (which must have the same shape).
pub fn load_model(model: SimClr, file: &Path) -> Result<SimClr> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    load_model_bytes(model, bytes, file)
}

/// [`load_model`] from the file's bytes, already read (`file` names it in errors): lets a caller
/// that also hashes the checkpoint read it once.
pub fn load_model_bytes(mut model: SimClr, bytes: Vec<u8>, file: &Path) -> Result<SimClr> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = model.load_from(&mut store).map_err(|e| {
        anyhow::anyhow!("{}: cannot load ({e}); was it written for another --arch/--width/--head?", file.display())
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        bail!(
            "{}: does not match the model (missing {:?}, unexpected {:?}, errors {:?}); was it written for another --arch/--width/--head?",
            file.display(),
            result.missing.iter().take(3).collect::<Vec<_>>(),
            result.unused.iter().take(3).collect::<Vec<_>>(),
            result.errors.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(model)
}
