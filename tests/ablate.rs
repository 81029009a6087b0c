//! `simclr ablate`: a tiny study (two cells of the augmentation study, a few steps on the built-in
//! images) runs end to end and writes its report, results and figures; a study killed inside its
//! second cell, run again, keeps the first cell as it was, resumes the second from its checkpoint,
//! and ends with the results of an unbroken run. Backend-independent, so on flex only.
#![cfg(feature = "flex")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Two cells, 5 steps of batch 128 over 384 images: an epoch is 3 steps, so each cell writes a
/// checkpoint at step 3 and at step 5.
const TINY: [&str; 9] = ["ablate", "--study", "augment", "--only", "crop,crop+color", "--max-steps", "5", "--limit", "384"];

fn ablate(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simclr")).arg("--quiet").args(TINY).arg("--out").arg(out).args(extra).output().unwrap()
}

fn results(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

fn top1(out: &Path) -> Vec<(String, f64)> {
    results(out).iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["top1"]["h"].as_f64().unwrap())).collect()
}

#[test]
fn a_tiny_study_reports_and_a_killed_one_resumes_to_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));

    let out = ablate(&whole, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = top1(&whole);
    assert_eq!(done.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["crop", "crop+color"]);
    assert!(done.iter().all(|(_, v)| (10.0..=100.0).contains(v)), "{done:?}");
    let report = std::fs::read_to_string(whole.join("report.md")).unwrap();
    assert!(report.contains("| **crop** |") && report.contains(&format!("{:.1} (33.1)", done[0].1)), "{report}");
    assert!(!report.contains("Partial") && report.contains("--max-steps 5"), "{report}");
    for png in ["pairs.png", "strength.png"] {
        let img = image::open(whole.join(png)).unwrap();
        assert!(img.width() > 300 && img.height() > 300, "{png}");
    }
    assert_eq!(std::fs::read_to_string(whole.join("cells/crop+color/config.toml")).unwrap().matches("one_branch = \"crop,color\"").count(), 1);

    // Killed once the second cell has its step-3 checkpoint.
    let mut child = Command::new(env!("CARGO_BIN_EXE_simclr")).arg("--quiet").args(TINY).arg("--out").arg(&killed).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join("cells/crop+color/checkpoints/step-00000003");
    let start = Instant::now();
    while !checkpoint.join("manifest.json").exists() && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpoint.exists(), "the second cell never wrote its first checkpoint");
    assert!(!killed.join("cells/crop+color/result.json").exists(), "killed too late: the second cell had finished");
    let first = killed.join("cells/crop/result.json");
    let (before, modified) = (std::fs::read(&first).unwrap(), std::fs::metadata(&first).unwrap().modified().unwrap());

    let out = ablate(&killed, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from") && log.contains("step-00000003"), "{log}");
    assert_eq!((std::fs::read(&first).unwrap(), std::fs::metadata(&first).unwrap().modified().unwrap()), (before, modified), "the finished cell was not run again");
    let steps: Vec<u64> = std::fs::read_to_string(killed.join("cells/crop+color/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
        .collect();
    assert_eq!(steps, (1..=5).collect::<Vec<_>>(), "one row per step across the kill");
    assert_eq!(top1(&killed), done, "the resumed study ends where the unbroken one did");

    // The same folder with other settings is refused, naming the cell's folder.
    let out = ablate(&whole, &["--seed", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("other settings") && err.contains("cells/crop"), "{err}");
}

#[test]
fn unknown_cells_are_named_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", "head", "--only", "wide", "--out"]).arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--only wide") && err.contains("nonlinear-128"), "{err}");
}

#[test]
fn list_shows_each_study_without_training() {
    for (study, cells) in [("augment", 55), ("head", 8), ("temperature", 11), ("scale", 24)] {
        let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", study, "--list"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("{cells} cells")), "{study}: {text}");
    }
    let full = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", "scale", "--preset", "full", "--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&full.stdout);
    assert!(text.contains("batch8192-epochs800") && text.contains("TPU"), "{text}");
}
