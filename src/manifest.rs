//! Verified folders: a `manifest.json` holding the size and SHA-256 of each file, written last —
//! after the files and the folder are synced to disk — and checked before any file is trusted.
//! Checkpoints and the feature cache are sealed this way, so a flipped byte or a truncated file is
//! found and named before it is loaded, instead of being trained on or evaluated.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a sealed folder.
pub const MANIFEST: &str = "manifest.json";

/// What the manifest records of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: String,
}

/// A folder whose files do not match its manifest (or that has none): it was not completely
/// written, or was changed or damaged afterwards.
#[derive(Debug, thiserror::Error)]
#[error("{} is damaged: {reason}", dir.display())]
pub struct Damaged {
    /// The folder.
    pub dir: PathBuf,
    /// What does not match, naming the file.
    pub reason: String,
}

/// Syncs each of `files` (names inside `dir`) to disk, then writes their manifest — itself synced,
/// and put in place by a rename — and syncs the folder, so the manifest never describes data that
/// is not on disk.
pub fn seal(dir: &Path, files: &[&str]) -> Result<()> {
    let mut entries = BTreeMap::new();
    for name in files {
        let path = dir.join(name);
        File::open(&path).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {} to disk", path.display()))?;
        entries.insert(name.to_string(), entry_of(&path)?);
    }
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(&entries)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {} to disk", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).with_context(|| format!("cannot write the manifest of {}", dir.display()))?;
    sync_dir(dir)
}

/// Syncs a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync the folder {} to disk", dir.display()))
}

/// Checks every file the manifest of `dir` lists against its size and SHA-256; returns the entries.
pub fn verify(dir: &Path) -> Result<BTreeMap<String, Entry>, Damaged> {
    let damaged = |reason: String| Damaged { dir: dir.to_path_buf(), reason };
    let text = crate::files::read_to_string(&dir.join(MANIFEST))
        .map_err(|e| damaged(format!("its {MANIFEST} cannot be read ({e}): it was not completely written, or by a simclr older than manifests")))?;
    let entries: BTreeMap<String, Entry> =
        serde_json::from_str(&text).map_err(|e| damaged(format!("its {MANIFEST} is not a manifest ({e})")))?;
    // Each entry is a file of `dir` itself: a path elsewhere (`../x`, `/etc/passwd`) is damage.
    if let Some(name) = entries.keys().find(|n| n.is_empty() || n.contains('/') || n.starts_with('.')) {
        return Err(damaged(format!("its {MANIFEST} names {name:?}, not a file of the folder")));
    }
    // Sizes first (cheap: a truncated file is named without hashing the others), then contents.
    for (name, want) in &entries {
        let bytes = std::fs::metadata(dir.join(name)).map_err(|e| damaged(format!("{name} cannot be read ({e})")))?.len();
        if bytes != want.bytes {
            return Err(damaged(format!("{name} has {bytes} bytes where the manifest says {} (truncated or overwritten)", want.bytes)));
        }
    }
    for (name, want) in &entries {
        let got = entry_of(&dir.join(name)).map_err(|e| damaged(format!("{name} cannot be read ({e:#})")))?;
        if got.sha256 != want.sha256 {
            return Err(damaged(format!("the SHA-256 of {name} differs from the manifest's (its contents changed after it was written)")));
        }
    }
    Ok(entries)
}

/// Size and SHA-256 of the file at `path`, streamed (no copy of the file in memory).
fn entry_of(path: &Path) -> Result<Entry> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let (mut file, _) = crate::files::open(path, crate::files::ARRAY).with_context(|| format!("opening {}", path.display()))?;
    let bytes = std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(Entry { bytes, sha256: hex(&hasher.finalize()) })
}

/// Lower-case hex SHA-256 of the file at `path`, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(entry_of(path)?.sha256)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
