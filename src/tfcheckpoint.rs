//! A reader of TensorFlow's checkpoint format (the "tensor bundle" that `tf.train.Saver` and
//! `tf.train.Checkpoint` write): `PREFIX.index` names every variable and where its bytes are,
//! `PREFIX.data-SSSSS-of-NNNNN` hold the raw little-endian tensors. No TensorFlow is needed.
//!
//! The `.index` file is a LevelDB-style sorted table (`tensorflow/core/lib/io/table*`): a 48-byte
//! footer (the index block's and meta-index block's handles, then the magic
//! `0xdb4775248b80fb57`), blocks of prefix-compressed entries followed by their restart points,
//! each block trailed by a type byte (0: stored as is; the bundle writer never compresses) and the
//! masked CRC32C of its bytes and type. The entry with the empty key is a `BundleHeaderProto`
//! (shard count, endianness); every other maps a variable name to a `BundleEntryProto` (dtype,
//! shape, shard, offset, size, masked CRC32C of the bytes).
//!
//! Everything is checked before it is used: the footer, every block's CRC and bounds, every
//! entry's shape against its byte size, every offset and size against its data file's length, and
//! each tensor's CRC when it is read. float32, float16 and bfloat16 are read (as f32); other types
//! are listed but refused by name when read.

use crate::tensorboard::masked_crc;
use anyhow::{bail, Context, Result};
use burn::tensor::{DType, TensorData};
use prost::Message;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The table magic number at the end of every `.index` file.
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Footer: two block handles (at most 2 × 2 × 10 bytes of varints) padded to 40, then the magic.
const FOOTER: usize = 48;
/// Block trailer: type byte + masked CRC32C.
const TRAILER: usize = 5;
/// Largest `.index` file read: 64 MiB (the largest released SimCLR index is well under 1 MiB).
const INDEX_LIMIT: u64 = 64 << 20;

/// `tensorflow.BundleHeaderProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleHeader {
    #[prost(int32, tag = "1")]
    num_shards: i32,
    /// 0: little-endian, 1: big-endian.
    #[prost(int32, tag = "2")]
    endianness: i32,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct ShapeProto {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<DimProto>,
    #[prost(bool, tag = "3")]
    unknown_rank: bool,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
struct DimProto {
    #[prost(int64, tag = "1")]
    size: i64,
}

/// `tensorflow.TensorSliceProto` (only counted: partitioned variables are refused).
#[derive(Clone, PartialEq, prost::Message)]
struct SliceProto {}

/// `tensorflow.BundleEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleEntry {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<ShapeProto>,
    #[prost(int32, tag = "3")]
    shard_id: i32,
    #[prost(int64, tag = "4")]
    offset: i64,
    #[prost(int64, tag = "5")]
    size: i64,
    #[prost(fixed32, tag = "6")]
    crc32c: u32,
    #[prost(message, repeated, tag = "7")]
    slices: Vec<SliceProto>,
}

/// TensorFlow's name of a `DataType` enum value (`types.proto`), for messages.
fn dtype_name(dtype: i32) -> String {
    let name = match dtype {
        1 => "float32",
        2 => "float64",
        3 => "int32",
        4 => "uint8",
        5 => "int16",
        6 => "int8",
        7 => "string",
        9 => "int64",
        10 => "bool",
        14 => "bfloat16",
        17 => "uint16",
        19 => "float16",
        22 => "uint32",
        23 => "uint64",
        _ => return format!("DataType {dtype}"),
    };
    name.to_string()
}

/// Bytes per element of the float types read here.
fn float_type(dtype: i32) -> Option<(DType, usize)> {
    match dtype {
        1 => Some((DType::F32, 4)),
        14 => Some((DType::BF16, 2)),
        19 => Some((DType::F16, 2)),
        _ => None,
    }
}

/// One variable of the bundle: where its bytes are and what they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// TensorFlow's `DataType` enum value.
    pub dtype: i32,
    /// Dimensions (TensorFlow's order: a conv kernel is `[kh, kw, in, out]`).
    pub shape: Vec<usize>,
    shard: usize,
    offset: u64,
    size: u64,
    crc: u32,
}

impl Entry {
    /// The dtype's name (`float32`, `int64`, …).
    pub fn dtype_name(&self) -> String {
        dtype_name(self.dtype)
    }
}

/// An opened checkpoint: the index read and checked; tensors are read on demand.
#[derive(Debug)]
pub struct Bundle {
    prefix: PathBuf,
    shards: usize,
    entries: BTreeMap<String, Entry>,
}

/// The checkpoint prefix that `path` names: `PREFIX` itself, `PREFIX.index` or one of its data
/// files (`PREFIX.data-00000-of-00001`).
pub fn prefix_of(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    if let Some(p) = text.strip_suffix(".index") {
        return PathBuf::from(p);
    }
    if let Some((p, shard)) = text.rsplit_once(".data-") {
        if shard.len() == 14 && shard.as_bytes()[5..9] == *b"-of-" {
            return PathBuf::from(p);
        }
    }
    path.to_path_buf()
}

/// Whether `path` names a TensorFlow checkpoint: its `PREFIX.index` exists (whatever it is: the
/// reader then says why it cannot read it), or `path` is a folder with TensorFlow's `checkpoint`
/// file or `.index` files.
pub fn is_checkpoint(path: &Path) -> bool {
    if path.is_dir() {
        return crate::files::is_regular(&path.join("checkpoint")) || indexes(path).is_ok_and(|i| !i.is_empty());
    }
    index_path(&prefix_of(path)).exists()
}

/// The `.index` files of the folder `dir`, sorted.
fn indexes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "index") && crate::files::is_regular(p))
        .collect();
    found.sort();
    Ok(found)
}

/// The checkpoint `path` names: a prefix (or its `.index` or data file) as it is; a folder, the
/// one its `checkpoint` file names (`model_checkpoint_path: "model.ckpt-250228"`, as TensorFlow
/// writes beside its checkpoints) or else its only `.index` file.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(prefix_of(path));
    }
    let listed = path.join("checkpoint");
    if crate::files::is_regular(&listed) {
        let text = crate::files::read_to_string(&listed).with_context(|| format!("{}: cannot read it", listed.display()))?;
        let named = text.lines().find_map(|l| l.trim().strip_prefix("model_checkpoint_path:")).map(|v| v.trim().trim_matches('"'));
        let Some(named) = named.filter(|n| !n.is_empty()) else {
            bail!("{}: no model_checkpoint_path line; give the checkpoint's prefix (e.g. {}/model.ckpt-250228)", listed.display(), path.display())
        };
        let prefix = path.join(named);
        if !crate::files::is_regular(&index_path(&prefix)) {
            bail!("{} names {named}, but {} is missing; give the prefix of a checkpoint that is there", listed.display(), index_path(&prefix).display());
        }
        return Ok(prefix);
    }
    match indexes(path).with_context(|| format!("{}: cannot list the folder", path.display()))?.as_slice() {
        [one] => Ok(prefix_of(one)),
        [] => bail!("{}: no TensorFlow checkpoint in this folder (no `checkpoint` file, no .index file)", path.display()),
        many => bail!(
            "{}: {} checkpoints in this folder ({}); give one's prefix",
            path.display(),
            many.len(),
            many.iter().map(|p| prefix_of(p).display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `PREFIX.index`.
pub fn index_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

fn data_path(prefix: &Path, shard: usize, shards: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(format!(".data-{shard:05}-of-{shards:05}"));
    PathBuf::from(s)
}

/// A reader over a byte slice that turns every overrun into an error naming `what`.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'a str,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else { bail!("{}: a number runs past its end", self.what) };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("{}: a number longer than 64 bits", self.what)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n).ok().and_then(|n| self.at.checked_add(n)).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else { bail!("{}: {} bytes at {} run past its {} bytes", self.what, n, self.at, self.bytes.len()) };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
}

/// A block's place in the `.index` file.
#[derive(Clone, Copy, Debug)]
struct Handle {
    offset: u64,
    size: u64,
}

impl Handle {
    fn read(cursor: &mut Cursor) -> Result<Self> {
        Ok(Handle { offset: cursor.varint()?, size: cursor.varint()? })
    }

    /// The block's contents, its trailer checked.
    fn block<'a>(self, file: &'a [u8], name: &str) -> Result<&'a [u8]> {
        let span = self.offset.checked_add(self.size).and_then(|e| e.checked_add(TRAILER as u64));
        if span.is_none_or(|end| end > file.len() as u64) {
            bail!("{name} (at byte {}, {} bytes) runs past the end of the file ({} bytes)", self.offset, self.size, file.len());
        }
        let (start, len) = (self.offset as usize, self.size as usize);
        let with_type = &file[start..start + len + 1];
        let stored = u32::from_le_bytes(file[start + len + 1..start + len + TRAILER].try_into().unwrap());
        if masked_crc(with_type) != stored {
            bail!("{name} (at byte {start}) fails its CRC32C check: the file is damaged");
        }
        match with_type[len] {
            0 => Ok(&with_type[..len]),
            1 => bail!("{name} is Snappy-compressed; TensorFlow's checkpoint writer never compresses, so this is not a checkpoint index"),
            t => bail!("{name} has block type {t}, which no table writer uses"),
        }
    }
}

/// The key/value entries of one table block, in order.
fn block_entries(block: &[u8], name: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if block.len() < 4 {
        bail!("{name} is {} bytes, too short to hold its restart count", block.len());
    }
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap()) as usize;
    let restart_bytes = restarts.checked_mul(4).and_then(|r| r.checked_add(4)).filter(|&r| r <= block.len());
    let Some(restart_bytes) = restart_bytes else { bail!("{name} claims {restarts} restart points, more than its {} bytes hold", block.len()) };
    let data = &block[..block.len() - restart_bytes];
    let mut cursor = Cursor { bytes: data, at: 0, what: name };
    let mut entries = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    while cursor.at < data.len() {
        let shared = cursor.varint()?;
        let unshared = cursor.varint()?;
        let value_len = cursor.varint()?;
        if shared > key.len() as u64 {
            bail!("{name}: an entry shares {shared} bytes with a previous key of {} bytes", key.len());
        }
        key.truncate(shared as usize);
        key.extend_from_slice(cursor.take(unshared)?);
        entries.push((key.clone(), cursor.take(value_len)?.to_vec()));
    }
    Ok(entries)
}

impl Bundle {
    /// Opens the checkpoint `path` names (see [`resolve`]): reads and checks its `.index`.
    pub fn open(path: &Path) -> Result<Self> {
        let prefix = resolve(path)?;
        let index = index_path(&prefix);
        let bytes = crate::files::read(&index, INDEX_LIMIT).with_context(|| format!("{}: cannot read the checkpoint index", index.display()))?;
        Self::parse(prefix, &bytes).with_context(|| format!("{}: not a TensorFlow checkpoint index", index.display()))
    }

    fn parse(prefix: PathBuf, file: &[u8]) -> Result<Self> {
        if file.len() < FOOTER {
            bail!("{} bytes, shorter than a table's 48-byte footer", file.len());
        }
        let footer = &file[file.len() - FOOTER..];
        if u64::from_le_bytes(footer[40..].try_into().unwrap()) != MAGIC {
            bail!("its last 8 bytes are not the table magic 0xdb4775248b80fb57");
        }
        let mut cursor = Cursor { bytes: &footer[..40], at: 0, what: "the footer" };
        let _meta_index = Handle::read(&mut cursor)?;
        let index = Handle::read(&mut cursor)?;
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (i, (_, handle)) in block_entries(index.block(file, "the index block")?, "the index block")?.iter().enumerate() {
            let handle = Handle::read(&mut Cursor { bytes: handle, at: 0, what: "the index block" })?;
            let name = format!("data block {i}");
            for (key, value) in block_entries(handle.block(file, &name)?, &name)? {
                if key.is_empty() {
                    header = Some(BundleHeader::decode(value.as_slice()).context("its header (the empty key) is not a BundleHeaderProto")?);
                    continue;
                }
                let name = String::from_utf8(key).map_err(|k| anyhow::anyhow!("a variable name is not UTF-8: {:?}", String::from_utf8_lossy(k.as_bytes())))?;
                let entry = BundleEntry::decode(value.as_slice()).with_context(|| format!("variable {name}: its entry is not a BundleEntryProto"))?;
                entries.insert(name, entry);
            }
        }
        let Some(header) = header else { bail!("it has no header entry (the empty key)") };
        if header.endianness != 0 {
            bail!("the checkpoint was written big-endian; only little-endian checkpoints are read");
        }
        let shards = usize::try_from(header.num_shards).ok().filter(|&n| n >= 1).ok_or_else(|| anyhow::anyhow!("its header declares {} data shards", header.num_shards))?;
        let entries = entries
            .into_iter()
            .map(|(name, e)| {
                let entry = check_entry(&e, shards).with_context(|| format!("variable {name}"))?;
                Ok((name, entry))
            })
            .collect::<Result<_>>()?;
        Ok(Bundle { prefix, shards, entries })
    }

    /// Every variable, by name.
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// The checkpoint's prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Reads variable `name` as f32 (from float32, float16 or bfloat16), checking its CRC.
    pub fn read(&self, name: &str) -> Result<TensorData> {
        let Some(entry) = self.entries.get(name) else { bail!("{}: no variable {name}", self.prefix.display()) };
        let Some((dtype, _)) = float_type(entry.dtype) else {
            bail!("{}: variable {name} is {}; only float32, float16 and bfloat16 tensors are read", self.prefix.display(), entry.dtype_name())
        };
        let path = data_path(&self.prefix, entry.shard, self.shards);
        let (mut file, len) = crate::files::open(&path, crate::files::ARRAY).with_context(|| format!("{}: cannot read the data file of variable {name}", path.display()))?;
        if entry.offset.checked_add(entry.size).is_none_or(|end| end > len) {
            bail!("{}: variable {name} claims bytes {}..{} of a {len}-byte file: the checkpoint is truncated or damaged", path.display(), entry.offset, entry.offset.saturating_add(entry.size));
        }
        let mut bytes = vec![0u8; entry.size as usize];
        file.seek(SeekFrom::Start(entry.offset)).and_then(|_| file.read_exact(&mut bytes)).with_context(|| format!("{}: reading variable {name}", path.display()))?;
        if masked_crc(&bytes) != entry.crc {
            bail!("{}: variable {name} fails its CRC32C check: the data file is damaged", path.display());
        }
        Ok(TensorData::from_bytes_vec(bytes, entry.shape.clone(), dtype).convert::<f32>())
    }
}

/// An entry's fields, each checked: a known shape whose element count × the dtype's size is its
/// byte size, a shard that exists, no partitioning.
fn check_entry(e: &BundleEntry, shards: usize) -> Result<Entry> {
    if !e.slices.is_empty() {
        bail!("is a partitioned variable ({} slices); partitioned checkpoints are not read", e.slices.len());
    }
    let shape_proto = e.shape.clone().unwrap_or_default();
    if shape_proto.unknown_rank {
        bail!("has an unknown rank");
    }
    let shape = shape_proto
        .dim
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| anyhow::anyhow!("has a dimension of {}", d.size)))
        .collect::<Result<Vec<usize>>>()?;
    let shard = usize::try_from(e.shard_id).ok().filter(|&s| s < shards).ok_or_else(|| anyhow::anyhow!("is in shard {} of a {shards}-shard checkpoint", e.shard_id))?;
    let (offset, size) = match (u64::try_from(e.offset), u64::try_from(e.size)) {
        (Ok(o), Ok(s)) => (o, s),
        _ => bail!("has offset {} and size {}", e.offset, e.size),
    };
    if let Some((_, width)) = float_type(e.dtype) {
        let expected = shape.iter().try_fold(width as u64, |acc, &d| acc.checked_mul(d as u64));
        if expected != Some(size) {
            bail!("has shape {shape:?} of {} but {size} bytes", dtype_name(e.dtype));
        }
    }
    Ok(Entry { dtype: e.dtype, shape, shard, offset, size, crc: e.crc32c })
}
