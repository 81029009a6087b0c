//! TensorBoard event files (`OUT/tb`, `simclr::tensorboard`): a pretraining run's files hold every
//! value of its metrics.jsonl at its step, the first batch's views and the curves as PNG images,
//! every record's CRC checking out (read back by our reader; `scripts/check-tensorboard.py` reads
//! them with TensorBoard's own in CI); a resumed run adds a file of its own, an evaluation of its
//! checkpoint its top-1 and top-5; a damaged file is refused by name; `--tensorboard false` writes
//! none.

mod common;

use simclr::pretrain::pretrain;
use simclr::tensorboard::{read, Event, Kind, What};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn event_files(run: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run.join("tb")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// (tag, step) → scalar, and the image tags, of every event of `files`.
fn contents(files: &[PathBuf]) -> (BTreeMap<(String, u64), f32>, Vec<String>) {
    let (mut scalars, mut images) = (BTreeMap::new(), Vec::new());
    for file in files {
        let events: Vec<Event> = read(file).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())), "{}", file.display());
        for event in &events[1..] {
            let Some(What::Summary(summary)) = &event.what else { panic!("a summary after the version") };
            for value in &summary.value {
                match &value.kind {
                    Some(Kind::SimpleValue(v)) => {
                        scalars.insert((value.tag.clone(), event.step as u64), *v);
                    }
                    Some(Kind::Image(image)) => {
                        assert!(image.encoded_image_string.starts_with(b"\x89PNG"), "{} is a PNG", value.tag);
                        images.push(value.tag.clone());
                    }
                    None => panic!("{}: no value", value.tag),
                }
            }
        }
    }
    (scalars, images)
}

/// Every number of every metrics.jsonl row, by (name, step).
fn metrics(run: &Path) -> BTreeMap<(String, u64), f64> {
    let mut values = BTreeMap::new();
    for line in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = row["step"].as_u64().unwrap();
        for (name, v) in row.as_object().unwrap() {
            if let (false, Some(v)) = (name == "step" || name == "epoch", v.as_f64()) {
                values.insert((name.clone(), step), v);
            }
        }
    }
    values
}

#[test]
fn every_metric_is_in_the_events_at_its_step_and_a_resumed_run_adds_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::small(dir.path());
    (cfg.data.limit, cfg.optim.max_steps, cfg.monitor.knn_every) = (128, 3, 1);
    pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    cfg.optim.max_steps = 6;
    pretrain(&cfg, true, &simclr::default_device(), false).unwrap();

    let files = event_files(dir.path());
    assert_eq!(files.len(), 2, "one file a run: {files:?}");
    let (scalars, images) = contents(&files);
    let want = metrics(dir.path());
    assert!(want.len() > 6 * 6, "{} values", want.len());
    assert!(want.keys().any(|(name, _)| name == "knn_top1") && want.keys().any(|(name, _)| name == "probe_acc"));
    for ((name, step), v) in &want {
        let got = scalars.get(&(name.clone(), *step)).unwrap_or_else(|| panic!("{name} at step {step} is not in the events"));
        assert!((*got as f64 - v).abs() <= 1e-6 * v.abs().max(1.0), "{name} at step {step}: {got} vs {v}");
    }
    // The views of each run's first batch, the curves at each run's end.
    assert_eq!(images.iter().filter(|t| *t == "views").count(), 2, "{images:?}");
    assert_eq!(images.iter().filter(|t| *t == "curves").count(), 2, "{images:?}");

    // An evaluation of the run's checkpoint adds its top-1 and top-5 at the checkpoint's step.
    let eval = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simclr"))
        .args(["--quiet", "knn", "--limit", "256", "--checkpoint"])
        .arg(dir.path())
        .arg("--out")
        .arg(eval.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(eval.path().join("report.json")).unwrap()).unwrap();
    let (scalars, _) = contents(&event_files(dir.path()));
    for k in ["top1", "top5"] {
        let got = scalars[&(format!("knn/h/{k}"), 6)] as f64;
        assert!((got - report["metrics"][k].as_f64().unwrap()).abs() < 1e-6, "knn {k}: {got} vs {}", report["metrics"][k]);
    }
}

#[test]
fn a_damaged_event_file_is_refused_by_name_and_none_is_written_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::small(dir.path());
    (cfg.data.limit, cfg.optim.max_steps) = (64, 2);
    pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    let file = event_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = read(&file).unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()) && err.contains("CRC mismatch"), "{err}");
    std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
    let err = read(&file).unwrap_err().to_string();
    assert!(err.contains("cut data"), "{err}");

    let off = tempfile::tempdir().unwrap();
    let mut cfg = common::small(off.path());
    (cfg.data.limit, cfg.optim.max_steps, cfg.monitor.tensorboard) = (64, 2, false);
    pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    assert!(!off.path().join("tb").exists());
}
