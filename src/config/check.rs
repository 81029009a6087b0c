//! Checks of single settings that every command shares; each error names the flag and what it takes.

use anyhow::{bail, Result};

/// Largest image side any command builds a network or a picture for.
pub const MAX_IMAGE_SIZE: usize = 1024;

/// `value` is a finite number above 0.
pub fn positive(flag: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        bail!("{flag} {value}: must be a finite number above 0");
    }
    Ok(())
}

/// `value` is a finite number of at least `min`.
pub fn finite_at_least(flag: &str, value: f64, min: f64) -> Result<()> {
    if !(value >= min && value.is_finite()) {
        bail!("{flag} {value}: must be a finite number of at least {min}");
    }
    Ok(())
}

/// `value` is at least 1.
pub fn nonzero(flag: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{flag} 0: must be at least 1");
    }
    Ok(())
}

/// `value` is at most `max` (`unit` says of what).
pub fn at_most(flag: &str, value: usize, max: usize, unit: &str) -> Result<()> {
    if value > max {
        bail!("{flag} {value}: at most {max} {unit}");
    }
    Ok(())
}

/// `value` is a momentum: in [0, 1).
pub fn momentum(flag: &str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{flag} {value}: must be in [0, 1)");
    }
    Ok(())
}
