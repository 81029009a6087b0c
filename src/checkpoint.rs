//! Checkpoints: `OUT/checkpoints/step-NNNNNNNN/` holding
//!
//! - `model.safetensors` — encoder and head weights plus BN running statistics, readable by any
//!   safetensors tool (keys such as `encoder.blocks.0.conv1.weight`, `encoder.bn1.running_mean`);
//! - `optimizer.safetensors` — the optimiser's buffers, keyed by parameter path;
//! - `state.json` — step, epoch and seed (the data order and every augmentation are pure functions
//!   of seed, epoch and image index, so this *is* the RNG state);
//! - `config.toml` — the resolved run config;
//! - `manifest.json` — the size and SHA-256 of each of those files ([`crate::manifest`]), written
//!   last, after they are synced to disk.
//!
//! Writing is atomic: everything goes into a hidden temporary folder which is renamed into place
//! only when complete and sealed, then the `latest` pointer is replaced by rename. A crash, a full
//! disk or a failed write leaves the previous checkpoint intact. Weights that are not finite are
//! never written. Reading verifies the manifest first: `--resume` falls back to the newest intact
//! checkpoint with a warning, evaluation refuses a damaged one.

use crate::config::Config;
use crate::manifest::{self, Damaged};
use crate::model::SimClr;
use crate::optim::Optimizer;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The files of a checkpoint, all listed in its manifest.
pub const FILES: [&str; 4] = ["model.safetensors", "optimizer.safetensors", "state.json", "config.toml"];

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

/// Writes a checkpoint atomically and keeps only the newest `keep`. Returns its folder. Refuses
/// weights that are not finite (a diverged run), and on any failure removes what it began, so the
/// previous checkpoint stays the latest.
pub fn save(out: &Path, cfg: &Config, model: &SimClr, optim: &Optimizer, state: &TrainState) -> Result<PathBuf> {
    if let Some(name) = first_non_finite(model) {
        bail!("not writing the checkpoint of step {}: the weights are no longer finite ({name}); the run diverged, lower --lr", state.step);
    }
    let root = checkpoints_dir(out);
    std::fs::create_dir_all(&root).with_context(|| format!("--out {}: cannot create the checkpoint folder", out.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_files(&tmp, cfg, model, optim, state);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot write the checkpoint of step {} into {}; the previous checkpoint is kept", state.step, root.display())));
    }
    let dst = root.join(&name);
    if dst.exists() {
        std::fs::remove_dir_all(&dst).with_context(|| format!("cannot replace {}", dst.display()))?;
    }
    std::fs::rename(&tmp, &dst).with_context(|| format!("cannot move the checkpoint into {}", dst.display()))?;
    let pointer_tmp = root.join(".latest.tmp");
    std::fs::write(&pointer_tmp, &name)
        .and_then(|_| std::fs::rename(&pointer_tmp, root.join("latest")))
        .with_context(|| format!("cannot point {} at {name}", root.join("latest").display()))?;
    manifest::sync_dir(&root)?;
    prune(&root, cfg.monitor.keep_checkpoints, &dst)?;
    Ok(dst)
}

/// The checkpoint's files in the folder `dir` (created), sealed by their manifest.
fn write_files(dir: &Path, cfg: &Config, model: &SimClr, optim: &Optimizer, state: &TrainState) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_model(model, &dir.join("model.safetensors"))?;
    optim.save(&dir.join("optimizer.safetensors"))?;
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {}", dir.join(name).display()));
    write("state.json", serde_json::to_string_pretty(state)?)?;
    write("config.toml", cfg.to_toml())?;
    manifest::seal(dir, &FILES)
}

/// An error naming the first tensor of `tensors` (name, dtype, little-endian bytes) that holds a NaN
/// or an infinity, read from `source`: such a network scores as anything (a NaN compares false both
/// ways), so it is never evaluated, resumed or imported. Checked on the bytes, before any device sees them.
pub fn ensure_finite<'a>(tensors: impl IntoIterator<Item = (&'a str, burn::tensor::DType, &'a [u8])>, source: &str) -> Result<()> {
    use burn::tensor::DType;
    let finite = |dtype: DType, b: &[u8]| match dtype {
        DType::F64 => b.chunks_exact(8).all(|v| f64::from_le_bytes(v.try_into().expect("8 bytes")).is_finite()),
        DType::F32 => b.chunks_exact(4).all(|v| f32::from_le_bytes(v.try_into().expect("4 bytes")).is_finite()),
        // An all-ones exponent is an infinity or a NaN.
        DType::F16 => b.chunks_exact(2).all(|v| u16::from_le_bytes([v[0], v[1]]) & 0x7c00 != 0x7c00),
        DType::BF16 => b.chunks_exact(2).all(|v| u16::from_le_bytes([v[0], v[1]]) & 0x7f80 != 0x7f80),
        _ => true,
    };
    match tensors.into_iter().find(|&(_, dtype, bytes)| !finite(dtype, bytes)) {
        Some((name, ..)) => bail!("{source}: {name} holds a NaN or an infinity; these weights cannot be used (re-import them, or use another checkpoint)"),
        None => Ok(()),
    }
}

/// The path of the first parameter of `model` holding a NaN or an infinity, if any.
fn first_non_finite(model: &SimClr) -> Option<String> {
    struct Finite {
        path: Vec<String>,
        bad: Option<String>,
    }
    impl burn::module::ModuleVisitor for Finite {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            if self.bad.is_none() && !param.val().is_finite().all().into_scalar::<bool>() {
                self.bad = Some(self.path.join("."));
            }
        }
    }
    let mut finite = Finite { path: Vec::new(), bad: None };
    model.visit(&mut finite);
    finite.bad
}

/// The lock file that makes one process at a time the writer of a run folder.
pub const LOCK: &str = ".lock";

/// Takes the advisory lock (`flock`) of the run folder `out`, which must exist, and records this
/// process's id in it; held until the returned file is dropped. The kernel releases it when the
/// process ends, however it ends, so a killed run leaves no stale lock. A folder locked by another
/// process is an error naming that process.
pub fn lock_run(out: &Path) -> Result<std::fs::File> {
    use std::io::Write;
    let path = out.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("--out {}: cannot open the lock file {}", out.display(), path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "--out {}: another simclr process (pid {}) is writing into this folder; wait for it to finish, stop it, or choose another --out",
                out.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("--out {}: cannot lock {}", out.display(), path.display())),
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// What `out` holds of an earlier run, in words, if anything: its checkpoints or its metrics.
/// (A folder with only `config.toml`, a run stopped before its first step, holds nothing to lose.)
pub fn existing_run(out: &Path) -> Result<Option<String>> {
    if let Some(newest) = newest_first(out)?.first() {
        return Ok(Some(format!("the checkpoint {}", newest.display())));
    }
    let metrics = out.join("metrics.jsonl");
    match std::fs::metadata(&metrics) {
        Ok(m) if m.len() > 0 => Ok(Some(format!("{} of {} bytes", metrics.display(), m.len()))),
        _ => Ok(None),
    }
}

/// The config a `--resume` of the run in `out` starts from: `OUT/config.toml`, or where that is
/// gone, the one stored with its newest intact checkpoint; `None` for a folder without either.
pub fn resume_config(out: &Path) -> Result<Option<PathBuf>> {
    let saved = out.join("config.toml");
    if crate::files::is_regular(&saved) {
        return Ok(Some(saved));
    }
    let Some(Verified { dir, .. }) = latest_intact(out)? else { return Ok(None) };
    tracing::warn!("{}: missing; resuming with the config of {}", saved.display(), dir.display());
    Ok(Some(dir.join("config.toml")))
}

/// Checks that `cfg` can continue the checkpoint `dir`, trained with `saved`: the same network
/// (every `[model]` setting, the online probe and its classes) and the same optimiser, whose state
/// the checkpoint holds. Each difference is named with the checkpoint's value.
pub fn check_resumable(cfg: &Config, saved: &Config, dir: &Path) -> Result<()> {
    let flags = |c: &Config| -> Result<Vec<(String, serde_json::Value)>> {
        let serde_json::Value::Object(model) = serde_json::to_value(&c.model)? else { bail!("a model config is a table") };
        let mut all: Vec<(String, serde_json::Value)> = model.into_iter().map(|(k, v)| (format!("--{}", k.replace('_', "-")), v)).collect();
        all.push(("--optimizer".into(), serde_json::to_value(c.optim.optimizer)?));
        all.push(("--online-probe".into(), c.monitor.online_probe.into()));
        all.push(("classes of the dataset".into(), c.monitor.num_classes.into()));
        Ok(all)
    };
    let differ: Vec<String> = flags(cfg)?
        .into_iter()
        .zip(flags(saved)?)
        .filter(|((_, ours), (_, theirs))| ours != theirs)
        .map(|((name, ours), (_, theirs))| format!("{name} {theirs}, not {ours}"))
        .collect();
    if !differ.is_empty() {
        bail!(
            "--resume: {} was trained with {}; resume it with its own settings (drop those flags), or start a new run with a fresh --out",
            dir.display(),
            differ.join(", ")
        );
    }
    Ok(())
}

/// The `step-*` folders of the checkpoint folder `root`, oldest first (by step: a longer name is a
/// later step, past step 99,999,999).
fn step_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    dirs.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    Ok(dirs)
}

/// Deletes all but the newest `keep` checkpoint folders; never `current`, the one just written.
fn prune(root: &Path, keep: usize, current: &Path) -> Result<()> {
    let dirs = step_dirs(root)?;
    let excess = dirs.len().saturating_sub(keep);
    for old in dirs[..excess].iter().filter(|d| *d != current) {
        std::fs::remove_dir_all(old).with_context(|| format!("cannot delete the old checkpoint {}", old.display()))?;
    }
    Ok(())
}

/// The checkpoint folders under `out`, newest first: the one `checkpoints/latest` names, then every
/// `step-*` folder by step.
fn newest_first(out: &Path) -> Result<Vec<PathBuf>> {
    let root = checkpoints_dir(out);
    if !root.is_dir() {
        return Ok(vec![]);
    }
    let mut dirs = step_dirs(&root)?;
    dirs.reverse();
    if let Ok(name) = crate::files::read_to_string(&root.join("latest")) {
        let name = name.trim();
        // A pointer is a folder name of this folder: anything else (a path, `..`) is damage.
        if name.starts_with("step-") && !name.contains('/') {
            let pointed = root.join(name);
            dirs.retain(|d| *d != pointed);
            dirs.insert(0, pointed);
        } else {
            tracing::warn!("{}: names {name:?}, not a checkpoint of this folder (damaged); ignoring it", root.join("latest").display());
        }
    }
    Ok(dirs)
}

/// A checkpoint folder whose files matched its manifest.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The folder.
    pub dir: PathBuf,
    /// SHA-256 of its `model.safetensors`, from the verified manifest.
    pub model_sha256: String,
}

/// Verifies the checkpoint (or imported encoder) folder `dir` against its manifest.
pub fn verify(dir: &Path) -> Result<Verified, Damaged> {
    let entries = manifest::verify(dir)?;
    match entries.get("model.safetensors") {
        Some(model) => Ok(Verified { dir: dir.to_path_buf(), model_sha256: model.sha256.clone() }),
        None => Err(Damaged { dir: dir.to_path_buf(), reason: "its manifest lists no model.safetensors".into() }),
    }
}

/// The newest intact checkpoint under `out`, for `--resume`: each damaged newer one is skipped with
/// a warning naming what is wrong. `None` when the run has no checkpoint; an error when it has some
/// and none is intact.
pub fn latest_intact(out: &Path) -> Result<Option<Verified>> {
    let dirs = newest_first(out)?;
    for dir in &dirs {
        match verify(dir) {
            Ok(v) => return Ok(Some(v)),
            Err(e) => tracing::warn!("{e}; falling back to the checkpoint before it"),
        }
    }
    if dirs.is_empty() {
        return Ok(None);
    }
    bail!(
        "{}: none of its checkpoints is intact ({} checked; the warnings above name the damage); start over without --resume, or into another --out",
        checkpoints_dir(out).display(),
        dirs.len()
    )
}

/// Resolves and verifies a `--checkpoint` argument: a checkpoint folder, or a run folder (its
/// latest checkpoint). A damaged checkpoint is an error, naming the newest intact one if any.
pub fn resolve(path: &Path) -> Result<Verified> {
    let dir = if path.join("model.safetensors").exists() {
        path.to_path_buf()
    } else {
        newest_first(path)?
            .into_iter()
            .next()
            .with_context(|| format!("{}: no checkpoint here (expected model.safetensors or checkpoints/step-*)", path.display()))?
    };
    verify(&dir).map_err(|e| {
        let parent = dir.parent().and_then(Path::parent).unwrap_or(path);
        let intact = newest_first(parent).ok().into_iter().flatten().find(|d| *d != dir && verify(d).is_ok());
        match intact {
            Some(d) => anyhow::anyhow!("{e}; the checkpoint {} is intact: pass --checkpoint {}", d.display(), d.display()),
            None => anyhow::anyhow!("{e}; evaluate another checkpoint"),
        }
    })
}

/// Reads a checkpoint's training state.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let text = crate::files::read_to_string(&dir.join("state.json")).with_context(|| format!("{}: no state.json", dir.display()))?;
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
pub fn load_model(mut model: SimClr, file: &Path) -> Result<SimClr> {
    let bytes = crate::files::read(file, crate::files::ARRAY).with_context(|| format!("reading {}", file.display()))?;
    if let Ok(tensors) = safetensors::SafeTensors::deserialize(&bytes) {
        let dtype = |d: safetensors::Dtype| match d {
            safetensors::Dtype::F64 => burn::tensor::DType::F64,
            safetensors::Dtype::F16 => burn::tensor::DType::F16,
            safetensors::Dtype::BF16 => burn::tensor::DType::BF16,
            safetensors::Dtype::F32 => burn::tensor::DType::F32,
            _ => burn::tensor::DType::U8,
        };
        let mut all = tensors.tensors();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        ensure_finite(all.iter().map(|(name, view)| (name.as_str(), dtype(view.dtype()), view.data())), &file.display().to_string())?;
    }
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
