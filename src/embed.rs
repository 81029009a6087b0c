//! `simclr embed`: the representation of every image of a dataset as a NumPy `.npy` file (float32,
//! N × D, C order) with the labels alongside (`labels.npy`, int64; absent for unlabelled data).

use crate::eval::Features;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes a C-order `.npy` (format 1.0) of the given dtype descriptor, shape and raw little-endian data.
fn write_npy(file: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad % 64));
    header.push('\n');
    let tmp = file.with_extension("npy.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Writes `features.npy` (and `labels.npy` when labelled) into `out`.
pub fn write(features: &Features, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
    let bytes: Vec<u8> = features.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&out.join("features.npy"), "<f4", &[features.n, features.dim], &bytes)?;
    if features.is_labelled() {
        let bytes: Vec<u8> = features.labels.iter().flat_map(|&l| (l as i64).to_le_bytes()).collect();
        write_npy(&out.join("labels.npy"), "<i8", &[features.n], &bytes)?;
    }
    Ok(())
}
