//! TensorBoard event files (`OUT/tb/`), what the official code, PyTorch's `SummaryWriter` and
//! Lightning write: each record is TFRecord framing — the length (`u64`, little-endian), its masked
//! CRC32C, the bytes, their masked CRC32C — around a serialised `Event` protobuf
//! (`tensorflow/core/util/event.proto`, `summary.proto`; the fields used here are declared below
//! with `prost`). The first event of a file names its version (`brain.Event:2`); the others hold a
//! `Summary` of scalars (`simple_value`) or a PNG image. Each process writing into a folder opens
//! a file of its own (`events.out.tfevents.SECONDS.HOST.PID.N`), so a resumed run adds a file beside
//! the first run's; TensorBoard reads every file of the folder, the later value of a step winning.
//!
//! [`read`] reads a file back, checking every CRC: the tests use it, and it refuses a damaged file
//! by name rather than returning part of it.

use anyhow::{bail, Context, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `tensorflow.Event`: the fields TensorBoard reads for scalars and images.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The training step the values belong to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The file version (first event) or the values.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// What an [`Event`] holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `file_version`: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// `summary`: named values.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value`: a tag and a scalar or an image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The name TensorBoard shows (`/` groups names into sections).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(oneof = "Kind", tags = "2, 4")]
    pub kind: Option<Kind>,
}

/// The value of a [`Value`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `simple_value`: a scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// `image`: an encoded image.
    #[prost(message, tag = "4")]
    Image(Image),
}

/// `tensorflow.Summary.Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Pixels down.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Pixels across.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// Channels: 3 for RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG file's bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// TensorFlow's masked CRC (TFRecord files, checkpoint tables and tensors): CRC32C rotated right
/// by 15 bits plus a constant, so that a CRC of data that holds CRCs is not trivially zero.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// An open event file of a run's `tb/` folder.
pub struct EventWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created if missing), its version event written.
    pub fn create(dir: &Path) -> Result<Self> {
        let cannot = || format!("{}: cannot write TensorBoard events there; choose a writable --out, or --tensorboard false", dir.display());
        std::fs::create_dir_all(dir).with_context(cannot)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        // Several files a second from one process (runs of one test) stay apart by a counter.
        static OPENED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let count = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.{host}.{}.{count}", now().floor() as u64, std::process::id());
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new().create_new(true).write(true).open(&path).with_context(cannot)?;
        let mut writer = EventWriter { file: std::io::BufWriter::new(file), path };
        writer.write(Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        writer.flush()?;
        Ok(writer)
    }

    /// Scalars `values` (name, value) at `step`, one event. Values that are not finite are written
    /// as they are: TensorBoard shows a NaN where the run had one.
    pub fn scalars(&mut self, step: usize, values: &[(&str, f64)]) -> Result<()> {
        let value = values.iter().map(|&(tag, v)| Value { tag: tag.to_string(), kind: Some(Kind::SimpleValue(v as f32)) }).collect();
        self.summary(step, value)
    }

    /// Every number of the JSON object `row` but its `step` (and `epoch`) as a scalar of its name at
    /// its `step`: a `metrics.jsonl` row as it is written.
    pub fn row(&mut self, row: &serde_json::Value) -> Result<()> {
        let Some(fields) = row.as_object() else { return Ok(()) };
        let step = fields.get("step").and_then(|s| s.as_u64()).unwrap_or(0) as usize;
        let values: Vec<(&str, f64)> = fields.iter().filter(|(name, _)| !matches!(name.as_str(), "step" | "epoch")).filter_map(|(name, v)| Some((name.as_str(), v.as_f64()?))).collect();
        self.scalars(step, &values)
    }

    /// The PNG file at `path` as image `tag` at `step`.
    pub fn png_file(&mut self, tag: &str, step: usize, path: &Path) -> Result<()> {
        let png = crate::files::read(path, READ_LIMIT).with_context(|| format!("{}: cannot read the image", path.display()))?;
        let (width, height) = image::ImageReader::with_format(std::io::Cursor::new(&png), image::ImageFormat::Png)
            .into_dimensions()
            .with_context(|| format!("{}: not a PNG image", path.display()))?;
        self.png(tag, step, png, width, height)
    }

    /// `image` as PNG image `tag` at `step`.
    pub fn image(&mut self, tag: &str, step: usize, image: &image::RgbImage) -> Result<()> {
        let mut png = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).context("encoding a TensorBoard image as PNG")?;
        self.png(tag, step, png, image.width(), image.height())
    }

    /// The PNG file `png` (`width` × `height`, RGB) as image `tag` at `step`.
    pub fn png(&mut self, tag: &str, step: usize, png: Vec<u8>, width: u32, height: u32) -> Result<()> {
        let image = Image { height: height as i32, width: width as i32, colorspace: 3, encoded_image_string: png };
        self.summary(step, vec![Value { tag: tag.to_string(), kind: Some(Kind::Image(image)) }])
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().with_context(|| format!("{}: cannot write", self.path.display()))
    }

    fn summary(&mut self, step: usize, value: Vec<Value>) -> Result<()> {
        self.write(Event { wall_time: now(), step: step as i64, what: Some(What::Summary(Summary { value })) })
    }

    fn write(&mut self, event: Event) -> Result<()> {
        let data = event.encode_to_vec();
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc(&length).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file.write_all(&record).with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The largest event file [`read`] takes.
const READ_LIMIT: u64 = 1 << 30;

/// Every event of the file at `path`, each record's length and data checked against their CRCs;
/// an error naming the file and the record's offset for a damaged or cut record.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let bytes = crate::files::read(path, READ_LIMIT).with_context(|| format!("{}: cannot read the event file", path.display()))?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let bad = |what: &str| anyhow::anyhow!("{}: {what} in the record at byte {at}; the file is damaged", path.display());
        let header = bytes.get(at..at + 12).ok_or_else(|| bad("cut header"))?;
        let length = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        if masked_crc(&header[..8]) != u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) {
            return Err(bad("length CRC mismatch"));
        }
        let end = usize::try_from(length).ok().and_then(|n| (at + 12).checked_add(n)).filter(|&e| e + 4 <= bytes.len()).ok_or_else(|| bad("cut data"))?;
        let data = &bytes[at + 12..end];
        if masked_crc(data) != u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes")) {
            return Err(bad("data CRC mismatch"));
        }
        events.push(Event::decode(data).map_err(|e| bad(&format!("not an Event ({e})")))?);
        at = end + 4;
    }
    if events.is_empty() {
        bail!("{}: no events; not a TensorBoard event file", path.display());
    }
    Ok(events)
}
