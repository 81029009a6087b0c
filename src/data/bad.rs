//! What to do with an image that cannot be read ([`BadImages`]): stop, or skip it and log it.

use super::{DataError, Dataset};
use crate::image::Image;
use std::sync::{Arc, Mutex};

/// What to do with an image that cannot be read (corrupt, truncated, empty, unreadable).
#[derive(Clone)]
pub enum BadImages {
    /// Stop with an error naming the file (`--strict`).
    Fail,
    /// Skip it, with a warning, and count it in the log.
    Skip(Arc<SkipLog>),
}

/// The images skipped so far.
#[derive(Default)]
pub struct SkipLog {
    skipped: Mutex<Vec<String>>,
}

impl SkipLog {
    fn record(&self, e: &DataError) {
        let mut s = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        let msg = e.to_string();
        if !s.contains(&msg) {
            tracing::warn!("skipping an unreadable image: {msg}");
            s.push(msg);
        }
    }

    /// The distinct problems recorded since the last call, emptying the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.skipped.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl BadImages {
    /// `Fail` when `strict`, else `Skip` with a fresh log.
    pub fn new(strict: bool) -> Self {
        if strict { BadImages::Fail } else { BadImages::Skip(Arc::default()) }
    }

    /// Image `index`, or under `Skip` the next readable image after it: returns the index actually
    /// read, so its label goes with it (never a silently wrong label).
    pub fn read(&self, ds: &dyn Dataset, index: usize) -> Result<(usize, Image), DataError> {
        let mut i = index;
        loop {
            match (ds.image(i), self) {
                (Ok(img), _) => return Ok((i, img)),
                (Err(e), BadImages::Fail) => return Err(e),
                (Err(e), BadImages::Skip(log)) => {
                    log.record(&e);
                    i = (i + 1) % ds.len();
                    if i == index {
                        return Err(DataError::Invalid("no image of the dataset can be read".into()));
                    }
                }
            }
        }
    }

    /// Image `index`, or `None` (logged) when it is unreadable and bad images are skipped.
    pub fn read_exact(&self, ds: &dyn Dataset, index: usize) -> Result<Option<Image>, DataError> {
        match (ds.image(index), self) {
            (Ok(img), _) => Ok(Some(img)),
            (Err(e), BadImages::Fail) => Err(e),
            (Err(e), BadImages::Skip(log)) => {
                log.record(&e);
                Ok(None)
            }
        }
    }

    /// The log, when skipping.
    pub fn log(&self) -> Option<&SkipLog> {
        match self {
            BadImages::Skip(log) => Some(log),
            BadImages::Fail => None,
        }
    }
}
