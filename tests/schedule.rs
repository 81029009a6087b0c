//! Warm-up + cosine schedule and LR scaling.

use simclr::schedule::{LrScaling, WarmupCosine};

#[test]
fn scaling_rules() {
    assert!((LrScaling::Linear.scale(0.3, 4096) - 4.8).abs() < 1e-12);
    assert!((LrScaling::Sqrt.scale(0.075, 4096) - 4.8).abs() < 1e-12);
    assert!((LrScaling::Linear.scale(0.3, 256) - 0.3).abs() < 1e-12);
}

#[test]
fn warmup_endpoints_cosine_midpoint_and_zero_at_the_end() {
    let s = WarmupCosine { peak: 4.8, warmup_steps: 10, total_steps: 110 };
    assert_eq!(s.lr(0), 0.0);
    assert!((s.lr(5) - 2.4).abs() < 1e-12, "half-way through warm-up");
    assert!((s.lr(10) - 4.8).abs() < 1e-12, "peak (> 1 is accepted) at the end of warm-up");
    assert!((s.lr(60) - 2.4).abs() < 1e-12, "cosine midpoint is half the peak");
    assert!(s.lr(110).abs() < 1e-12, "0 at the end");
    assert!(s.lr(500).abs() < 1e-12, "stays 0 past the end");
    // Monotone decay after warm-up.
    assert!((11..110).all(|t| s.lr(t) <= s.lr(t - 1)));
}

#[test]
fn no_warmup() {
    let s = WarmupCosine { peak: 1.5, warmup_steps: 0, total_steps: 4 };
    assert_eq!(s.lr(0), 1.5);
    assert!((s.lr(2) - 0.75).abs() < 1e-12);
}
