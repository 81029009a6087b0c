//! The one gate through which a file that this tool did not just write is read: images, datasets,
//! manifests, configs, lists, weights, arrays. Only a regular file is read (a link to one is
//! followed); a FIFO, a device, a socket or a folder is refused before a byte is read, so that
//! `x.png` naming a FIFO cannot block a loader forever and a link to `/dev/zero` cannot fill the
//! memory. The file is opened without blocking and checked on the open handle (no race between
//! the check and the read), and a size limit is checked before anything is allocated.

use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest text file read (configs, manifests, file lists, subsets, states): 64 MiB.
pub const TEXT: u64 = 64 << 20;
/// Largest image file read before decoding: 256 MiB (the decoder's own limit bounds the pixels).
pub const IMAGE: u64 = 256 << 20;
/// Arrays and weights (datasets, `.npy` features, safetensors): their size is the data's, so only
/// the machine's memory bounds it.
pub const ARRAY: u64 = u64::MAX;

/// What kind of non-regular file `t` is, in words.
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file of at most `limit` bytes; returns it with its size.
pub fn open(path: &Path, limit: u64) -> std::io::Result<(std::fs::File, u64)> {
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, format!("{}; only regular files are read", kind(meta.file_type()))));
    }
    if meta.len() > limit {
        return Err(Error::new(ErrorKind::FileTooLarge, format!("{} bytes, over the {} MiB this file may have", meta.len(), limit >> 20)));
    }
    Ok((file, meta.len()))
}

/// The bytes of the regular file `path` (see [`open`]). Reads at most the size the file had when
/// opened: a file that grows meanwhile is read as it was.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let (file, len) = open(path, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The text of the regular file `path`, at most [`TEXT`] bytes of UTF-8.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path, TEXT)?).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Whether `path` is (or links to) a regular file, without opening it.
pub fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}
