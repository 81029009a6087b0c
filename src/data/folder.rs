//! Folders of image files: labelled (one sub-folder per class, the ImageNet layout) or unlabelled
//! (any tree). JPEG, PNG, WebP and BMP in any mode (grey, RGBA, 16-bit) are decoded to RGB8;
//! transparent pixels are composited on white (clip art's transparent background is white to the
//! eye, whatever colour its invisible pixels hold).
//!
//! Images are decoded when asked for (in the loader's worker threads), never all at once. With a
//! cache folder, each image is stored after its first decode resized so its shorter side is
//! `cache_size` (like ImageNet's short-side 256 resize), as raw RGB8, so later epochs skip decoding.

use super::{DataError, Dataset};
use crate::image::Image;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "jfif"];

/// An on-disk cache of resized images.
#[derive(Clone, Debug)]
pub struct Cache {
    /// Folder of the cached files.
    pub dir: PathBuf,
    /// Shorter side of cached images.
    pub size: u32,
}

/// A folder of image files.
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
    /// Classes left out by [`ImageFolder::drop_small_classes`].
    dropped: Vec<String>,
    cache: Option<Cache>,
    decodes: AtomicUsize,
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A scan of a folder tree that visits each folder once, by device and inode: a link back up the
/// tree (`class/up -> ..`) or a second path to a folder already scanned is skipped with a warning,
/// never followed into a loop. Only regular files (or links to them) are taken as images: a FIFO,
/// device or socket named like an image is left out with a warning, never opened. A signal
/// ([`crate::interrupt`]) stops the scan.
#[derive(Default)]
struct Scan {
    visited: std::collections::HashSet<(u64, u64)>,
    skipped: Vec<String>,
}

impl Scan {
    /// Marks the folder `dir` as scanned; false if it was already.
    fn enter(&mut self, dir: &Path) -> Result<bool, DataError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).map_err(|e| DataError::io(dir, e))?;
        Ok(self.visited.insert((meta.dev(), meta.ino())))
    }

    /// Every image file under `dir` (already entered), sorted, recursively.
    fn walk(&mut self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        if crate::interrupt::requested() {
            return Err(DataError::Invalid(format!("stopped on request while scanning {}", dir.display())));
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let Ok(meta) = std::fs::metadata(&p) else {
                self.skipped.push(format!("{} (a broken link)", p.display()));
                continue;
            };
            if meta.is_dir() {
                if self.enter(&p)? {
                    self.walk(&p, out)?;
                } else {
                    self.skipped.push(format!("{} (a folder already scanned: a link loop or a second path to it)", p.display()));
                }
            } else if is_image(&p) {
                if meta.is_file() {
                    out.push(p);
                } else {
                    self.skipped.push(format!("{} (not a regular file)", p.display()));
                }
            }
        }
        Ok(())
    }

    /// Warns once about everything the scan of `root` left out.
    fn report(&self, root: &Path) {
        if !self.skipped.is_empty() {
            let shown: Vec<&str> = self.skipped.iter().take(5).map(String::as_str).collect();
            tracing::warn!("{}: left out {} entries: {}{}", root.display(), self.skipped.len(), shown.join("; "), if self.skipped.len() > 5 { "; …" } else { "" });
        }
    }
}

impl ImageFolder {
    /// Scans `root`. `labelled`: each sub-folder is a class (sorted names → labels 0, 1, …).
    /// `file_list`: keep only the files it names, one per line, as paths relative to `root` or as
    /// bare file names (the official `imagenet_subsets/1percent.txt` style).
    pub fn open(root: &Path, labelled: bool, file_list: Option<&Path>, cache: Option<Cache>) -> Result<Self, DataError> {
        if !root.is_dir() {
            return Err(DataError::Missing { path: root.to_path_buf(), hint: "--data must be a folder of images".into() });
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::new();
        let mut scan = Scan::default();
        scan.enter(root)?;
        if labelled {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(|e| DataError::io(root, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            // Every class folder is entered before any is scanned: a link from one class into
            // another is skipped, never scanned under the wrong label.
            let mut entered = Vec::new();
            for d in dirs {
                if scan.enter(&d)? {
                    entered.push(d);
                } else {
                    scan.skipped.push(format!("{} (a link to a folder already scanned)", d.display()));
                }
            }
            for (label, d) in entered.iter().enumerate() {
                let start = files.len();
                scan.walk(d, &mut files)?;
                labels.extend(std::iter::repeat_n(label, files.len() - start));
                classes.push(d.file_name().unwrap().to_string_lossy().to_string());
            }
            if classes.is_empty() {
                return Err(DataError::Invalid(format!(
                    "{}: no class sub-folders; a labelled folder has one sub-folder per class (use --dataset unlabelled-folder for any tree)",
                    root.display()
                )));
            }
        } else {
            scan.walk(root, &mut files)?;
        }
        scan.report(root);
        let mut folder = Self { root: root.to_path_buf(), files, labels: labelled.then_some(labels), classes, dropped: vec![], cache, decodes: AtomicUsize::new(0) };
        if let Some(list) = file_list {
            folder.keep_listed(list)?;
        }
        if folder.files.is_empty() {
            return Err(DataError::Invalid(format!("{}: no images (.jpg, .png, .webp, .bmp) found", root.display())));
        }
        if let Some(c) = &folder.cache {
            std::fs::create_dir_all(&c.dir).map_err(|e| DataError::io(&c.dir, e))?;
        }
        Ok(folder)
    }

    fn keep_listed(&mut self, list: &Path) -> Result<(), DataError> {
        let text = crate::files::read_to_string(list).map_err(|e| DataError::io(list, e))?;
        let mut by_name: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, f) in self.files.iter().enumerate() {
            by_name.entry(f.file_name().unwrap().to_string_lossy().to_string()).or_default().push(i);
        }
        let by_path: std::collections::HashMap<&Path, usize> = self.files.iter().enumerate().map(|(i, f)| (f.as_path(), i)).collect();
        let mut keep = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()) {
            let found = if line.contains('/') {
                by_path.get(self.root.join(line).as_path()).map(|&i| vec![i])
            } else {
                by_name.get(line).cloned()
            };
            match found {
                Some(mut idx) => keep.append(&mut idx),
                None => {
                    return Err(DataError::Invalid(format!("--file-list {} line {}: {line} is not an image under {}", list.display(), n + 1, self.root.display())))
                }
            }
        }
        keep.sort_unstable();
        keep.dedup();
        self.files = keep.iter().map(|&i| self.files[i].clone()).collect();
        if let Some(l) = &mut self.labels {
            *l = keep.iter().map(|&i| l[i]).collect();
        }
        Ok(())
    }

    /// Leaves out the classes with fewer than `min` images (labels renumbered in the same order),
    /// naming them in a warning; an error when none is left.
    pub fn drop_small_classes(&mut self, min: usize) -> Result<(), DataError> {
        let Some(labels) = &self.labels else { return Ok(()) };
        let mut counts = vec![0usize; self.classes.len()];
        labels.iter().for_each(|&l| counts[l] += 1);
        let small: Vec<String> = (0..counts.len()).filter(|&c| counts[c] < min).map(|c| format!("{} ({})", self.classes[c], counts[c])).collect();
        if small.is_empty() {
            return Ok(());
        }
        let mut renumbered = vec![None; counts.len()];
        let mut kept = Vec::new();
        for c in (0..counts.len()).filter(|&c| counts[c] >= min) {
            renumbered[c] = Some(kept.len());
            kept.push(self.classes[c].clone());
        }
        if kept.is_empty() {
            return Err(DataError::Invalid(format!("--min-class-images {min}: no class of {} has that many images", self.root.display())));
        }
        tracing::warn!("{}: left out {} classes with fewer than {min} images: {}", self.root.display(), small.len(), small.join(", "));
        let (files, labels): (Vec<PathBuf>, Vec<usize>) =
            self.files.iter().zip(labels).filter_map(|(f, &l)| Some((f.clone(), renumbered[l]?))).unzip();
        self.dropped = (0..counts.len()).filter(|&c| counts[c] < min).map(|c| self.classes[c].clone()).collect();
        (self.files, self.labels, self.classes) = (files, Some(labels), kept);
        Ok(())
    }

    /// Labels this (test) folder's images by the class names of `train`, another folder of the same
    /// dataset: a class `train` left out (`--min-class-images`) is left out here too; a class that
    /// `train` has no folder for is an error naming it. Classes `train` has and this folder lacks
    /// just have no image here.
    pub fn relabel_as(&mut self, train: &ImageFolder) -> Result<(), DataError> {
        let Some(labels) = &self.labels else { return Ok(()) };
        let index: std::collections::HashMap<&str, usize> = train.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
        let mut mapped = Vec::with_capacity(self.classes.len());
        for class in &self.classes {
            let found = index.get(class.as_str()).copied();
            if found.is_none() && !train.dropped.contains(class) {
                return Err(DataError::Invalid(format!(
                    "{}: class {class:?} has no folder in the training split {} (its classes: {}); add its training images or remove the folder",
                    self.root.display(),
                    train.root.display(),
                    train.classes.join(", ")
                )));
            }
            mapped.push(found);
        }
        let (files, labels): (Vec<PathBuf>, Vec<usize>) = self.files.iter().zip(labels).filter_map(|(f, &l)| Some((f.clone(), mapped[l]?))).unzip();
        if files.is_empty() {
            return Err(DataError::Invalid(format!("{}: none of its images is of a class the training split has", self.root.display())));
        }
        (self.files, self.labels, self.classes) = (files, Some(labels), train.classes.clone());
        Ok(())
    }

    /// Class names in label order (empty when unlabelled).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The file of image `index`.
    pub fn path(&self, index: usize) -> &Path {
        &self.files[index]
    }

    /// How many image files have been decoded so far (cache hits do not count).
    pub fn decodes(&self) -> usize {
        self.decodes.load(Ordering::Relaxed)
    }

    fn cache_file(&self, c: &Cache, index: usize) -> PathBuf {
        let rel = self.files[index].strip_prefix(&self.root).unwrap_or(&self.files[index]);
        let key = crate::augment::splitmix64(rel.to_string_lossy().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
        c.dir.join(format!("{key:016x}-{}.rgb", c.size))
    }

    fn decode(&self, index: usize) -> Result<image::RgbImage, DataError> {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        read_image(&self.files[index])
    }
}

/// The image file `path` (a regular file, [`crate::files`]) decoded to RGB8, transparent pixels on
/// white, at most [`MAX_PIXELS`] pixels.
pub fn read_image(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = crate::files::read(path, crate::files::IMAGE).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::Corrupt { path: path.to_path_buf(), why: "empty file".into() });
    }
    let img = image::load_from_memory(&bytes).map_err(|e| match e {
        image::ImageError::Limits(_) => DataError::TooLarge { path: path.to_path_buf(), why: format!("too large to decode ({e})") },
        e => DataError::Corrupt { path: path.to_path_buf(), why: format!("cannot decode ({e})") },
    })?;
    Ok(within_pixel_limit(on_white(img)))
}

/// Most pixels an image keeps once decoded: 2²² (2048 × 2048; 48 MiB as the f32 image the
/// augmentation reads). The decoder's own limit (512 MiB) bounds the transient decode; a larger
/// image is shrunk right after it, so a loader thread holds at most those two.
pub const MAX_PIXELS: u64 = 1 << 22;

/// `img`, shrunk (aspect kept) to at most [`MAX_PIXELS`] pixels. Views are at most 1,024 px a side
/// and a crop keeps at least a few percent of the image, so nothing a view can show is lost.
fn within_pixel_limit(img: image::RgbImage) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels <= MAX_PIXELS {
        return img;
    }
    let scale = (MAX_PIXELS as f64 / pixels as f64).sqrt();
    let (nw, nh) = (((w as f64 * scale) as u32).max(1), ((h as f64 * scale) as u32).max(1));
    // `thumbnail` averages integer pixel areas: no f32 copy of the large image.
    image::imageops::thumbnail(&img, nw, nh)
}

/// `img` as RGB8, pixels with an alpha channel composited on white: c·a + 255·(1 − a), rounded.
fn on_white(img: image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0.map(u32::from);
        image::Rgb([r, g, b].map(|c| ((c * a + 255 * (255 - a) + 127) / 255) as u8))
    })
}

fn read_cached(file: &Path) -> Option<image::RgbImage> {
    let raw = crate::files::read(file, crate::files::ARRAY).ok()?;
    let (w, h) = (u32::from_le_bytes(raw.get(0..4)?.try_into().ok()?), u32::from_le_bytes(raw.get(4..8)?.try_into().ok()?));
    image::RgbImage::from_raw(w, h, raw.get(8..)?.to_vec())
}

fn write_cached(file: &Path, img: &image::RgbImage) -> std::io::Result<()> {
    let mut raw = Vec::with_capacity(8 + img.len());
    raw.extend(img.width().to_le_bytes());
    raw.extend(img.height().to_le_bytes());
    raw.extend_from_slice(img.as_raw());
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, raw)?;
    std::fs::rename(tmp, file)
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn file(&self, index: usize) -> Option<PathBuf> {
        self.files.get(index).cloned()
    }

    fn image(&self, index: usize) -> Result<Image, DataError> {
        if index >= self.files.len() {
            return Err(DataError::Invalid(format!("image index {index} out of range (dataset has {})", self.files.len())));
        }
        let rgb = match &self.cache {
            Some(c) => {
                let file = self.cache_file(c, index);
                match read_cached(&file) {
                    Some(img) => img,
                    None => {
                        let img = self.decode(index)?;
                        let (w, h) = img.dimensions();
                        let scale = c.size as f32 / w.min(h) as f32;
                        let img = if scale < 1.0 {
                            let (nw, nh) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
                            image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
                        } else {
                            img
                        };
                        write_cached(&file, &img).map_err(|e| DataError::io(&file, e))?;
                        img
                    }
                }
            }
            None => self.decode(index)?,
        };
        let (w, h) = rgb.dimensions();
        Ok(Image::from_u8_hwc(rgb.as_raw(), h as usize, w as usize, 3))
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[index])
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_name(&self, label: usize) -> Option<String> {
        self.classes.get(label).cloned()
    }
}
