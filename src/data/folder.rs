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
    cache: Option<Cache>,
    decodes: AtomicUsize,
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Every image file under `dir`, sorted, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
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
        if labelled {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(|e| DataError::io(root, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for (label, d) in dirs.iter().enumerate() {
                let start = files.len();
                walk(d, &mut files)?;
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
            walk(root, &mut files)?;
        }
        let mut folder = Self { root: root.to_path_buf(), files, labels: labelled.then_some(labels), classes, cache, decodes: AtomicUsize::new(0) };
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
        let text = std::fs::read_to_string(list).map_err(|e| DataError::io(list, e))?;
        let mut by_name: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, f) in self.files.iter().enumerate() {
            by_name.entry(f.file_name().unwrap().to_string_lossy().to_string()).or_default().push(i);
        }
        let mut keep = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()) {
            let found = if line.contains('/') {
                let want = self.root.join(line);
                self.files.iter().position(|f| *f == want).map(|i| vec![i])
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
        (self.files, self.labels, self.classes) = (files, Some(labels), kept);
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
        let path = &self.files[index];
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        if bytes.is_empty() {
            return Err(DataError::Corrupt { path: path.clone(), why: "empty file".into() });
        }
        let img = image::load_from_memory(&bytes).map_err(|e| match e {
            image::ImageError::Limits(_) => DataError::TooLarge { path: path.clone(), why: format!("too large to decode ({e})") },
            e => DataError::Corrupt { path: path.clone(), why: format!("cannot decode ({e})") },
        })?;
        Ok(on_white(img))
    }
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
    let raw = std::fs::read(file).ok()?;
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
}
