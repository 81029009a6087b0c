//! Nothing: this crate is its test, `tests/tract.rs`.
