//! `simclr embed`: the representation of every image of a dataset as a NumPy `.npy` file (float32,
//! N × D, C order) with the labels alongside (`labels.npy`, int64; absent for unlabelled data) and
//! each row's image index in the split (`index.npy`, int64; rows of unreadable images are left out).

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
    let written = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(b"\x93NUMPY\x01\x00")?;
        f.write_all(&(header.len() as u16).to_le_bytes())?;
        f.write_all(header.as_bytes())?;
        f.write_all(data)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    written.with_context(|| format!("cannot write {}", file.display()))
}

/// Reads a `.npy` of the dtype `descr` (elements of `size` bytes), as [`write_npy`] writes it or as
/// NumPy does: its shape and raw data, in C order (a 2-D array saved in Fortran order, as NumPy
/// does for a transposed array, is transposed back).
fn read_npy(file: &Path, descr: &str, size: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = crate::files::read(file, crate::files::ARRAY).with_context(|| format!("cannot read {}", file.display()))?;
    let bad = || anyhow::anyhow!("{}: not a .npy file this tool wrote; delete it to recompute", file.display());
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return Err(bad());
    }
    let end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..end).ok_or_else(bad)?).map_err(|_| bad())?;
    if !header.contains(&format!("'descr': '{descr}'")) {
        return Err(bad());
    }
    let dims = header.split_once("'shape': (").and_then(|(_, rest)| rest.split_once(')')).ok_or_else(bad)?.0;
    let shape = dims.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().map_err(|_| bad())).collect::<Result<Vec<usize>>>()?;
    let mut data = bytes[end..].to_vec();
    if Some(data.len()) != shape.iter().try_fold(size, |n, &d| n.checked_mul(d)) {
        return Err(bad());
    }
    if header.contains("'fortran_order': True") {
        match shape[..] {
            [rows, cols] => data = transposed(&data, cols, rows, size),
            [_] | [] => {}
            _ => anyhow::bail!("{}: a Fortran-order array of {} dimensions; save it in C order (numpy.ascontiguousarray)", file.display(), shape.len()),
        }
    } else if !header.contains("'fortran_order': False") {
        return Err(bad());
    }
    Ok((shape, data))
}

/// The `rows × cols` matrix of `size`-byte elements `data` (row-major), transposed.
fn transposed(data: &[u8], rows: usize, cols: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for c in 0..cols {
        for r in 0..rows {
            out.extend_from_slice(&data[(r * cols + c) * size..(r * cols + c + 1) * size]);
        }
    }
    out
}

/// Reads what [`write`] wrote into `dir`.
pub fn read(dir: &Path) -> Result<Features> {
    let (shape, data) = read_npy(&dir.join("features.npy"), "<f4", 4)?;
    let [n, dim] = shape[..] else { anyhow::bail!("{}: expected an N × D array", dir.join("features.npy").display()) };
    let data = data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    let labels_file = dir.join("labels.npy");
    let labels = if labels_file.exists() {
        read_npy(&labels_file, "<i8", 8)?.1.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as usize).collect()
    } else {
        vec![]
    };
    let features = Features { data, n, dim, labels };
    features.ensure_finite(&dir.join("features.npy").display().to_string())?;
    Ok(features)
}

/// Reads `index.npy` from `dir`, if there is one.
pub fn read_index(dir: &Path) -> Result<Option<Vec<usize>>> {
    let file = dir.join("index.npy");
    if !file.exists() {
        return Ok(None);
    }
    read_ints(&file).map(Some)
}

/// Writes each row's image index as `index.npy` into `out` (by rename).
pub fn write_index(index: &[usize], out: &Path) -> Result<()> {
    write_ints(index, &out.join("index.npy"))
}

/// Writes non-negative integers as a 1-D int64 `.npy` (by rename).
pub fn write_ints(values: &[usize], file: &Path) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|&i| (i as i64).to_le_bytes()).collect();
    write_npy(file, "<i8", &[values.len()], &bytes)
}

/// Reads a 1-D int64 `.npy` of non-negative integers; an error naming the file for a negative one.
pub fn read_ints(file: &Path) -> Result<Vec<usize>> {
    let values = read_npy(file, "<i8", 8)?.1.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect::<Vec<_>>();
    values.iter().map(|&v| usize::try_from(v).with_context(|| format!("{}: holds {v}, not an index", file.display()))).collect()
}

/// Writes `features.npy` (and `labels.npy` when labelled) into `out`, each file by rename.
pub fn write(features: &Features, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
    if features.is_labelled() {
        let bytes: Vec<u8> = features.labels.iter().flat_map(|&l| (l as i64).to_le_bytes()).collect();
        write_npy(&out.join("labels.npy"), "<i8", &[features.n], &bytes)?;
    }
    let bytes: Vec<u8> = features.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&out.join("features.npy"), "<f4", &[features.n, features.dim], &bytes)
}
