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
    assert!(report.contains("Partial: 2 of 55 cells finished") && report.contains("--max-steps 5"), "{report}");
    for png in ["pairs.png", "strength.png"] {
        let img = image::open(whole.join(png)).unwrap();
        assert!(img.width() > 300 && img.height() > 300, "{png}");
    }
    assert_eq!(std::fs::read_to_string(whole.join("cells/crop+color/seed-0/config.toml")).unwrap().matches("one_branch = \"crop,color\"").count(), 1);

    // Killed once the second cell has its step-3 checkpoint.
    let mut child = Command::new(env!("CARGO_BIN_EXE_simclr")).arg("--quiet").args(TINY).arg("--out").arg(&killed).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join("cells/crop+color/seed-0/checkpoints/step-00000003");
    let start = Instant::now();
    while !checkpoint.join("manifest.json").exists() && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpoint.exists(), "the second cell never wrote its first checkpoint");
    assert!(!killed.join("cells/crop+color/seed-0/result.json").exists(), "killed too late: the second cell had finished");
    let first = killed.join("cells/crop/seed-0/result.json");
    let (before, modified) = (std::fs::read(&first).unwrap(), std::fs::metadata(&first).unwrap().modified().unwrap());

    let out = ablate(&killed, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from") && log.contains("step-00000003"), "{log}");
    assert_eq!((std::fs::read(&first).unwrap(), std::fs::metadata(&first).unwrap().modified().unwrap()), (before, modified), "the finished cell was not run again");
    let steps: Vec<u64> = std::fs::read_to_string(killed.join("cells/crop+color/seed-0/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
        .collect();
    assert_eq!(steps, (1..=5).collect::<Vec<_>>(), "one row per step across the kill");
    assert_eq!(top1(&killed), done, "the resumed study ends where the unbroken one did");

    // The same folder with other settings is refused, naming the cell's folder.
    let out = ablate(&whole, &["--preset", "medium"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("other settings") && err.contains("cells/crop"), "{err}");
}

#[test]
fn seeds_give_mean_and_sd_and_tested_verdicts_and_finished_runs_are_found_in_results_json() {
    let dir = tempfile::tempdir().unwrap();
    let (first, other) = (dir.path().join("first"), dir.path().join("other"));
    let seeds = ["--seeds", "2", "--seed", "3"];
    let out = ablate(&first, &seeds);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs = results(&first);
    let ids: Vec<(String, u64)> = runs.iter().map(|r| (r["id"].as_str().unwrap().into(), r["config"]["run"]["seed"].as_u64().unwrap())).collect();
    assert_eq!(ids, [("crop".into(), 3), ("crop".into(), 4), ("crop+color".into(), 3), ("crop+color".into(), 4)]);
    // Each run records which test images it got right, as many as the accuracy says.
    for r in &runs {
        let (count, digits) = r["hits"]["h"].as_str().unwrap().split_once(':').unwrap();
        let n: usize = count.parse().unwrap();
        let right: u32 = digits.chars().map(|c| c.to_digit(16).unwrap().count_ones()).sum();
        assert!((100.0 * right as f64 / n as f64 - r["top1"]["h"].as_f64().unwrap()).abs() < 1e-9 && r["trains"] == "simclr", "{r}");
    }
    let mean = |id: &str| runs.iter().filter(|r| r["id"] == id).map(|r| r["top1"]["h"].as_f64().unwrap()).sum::<f64>() / 2.0;
    let report = std::fs::read_to_string(first.join("report.md")).unwrap();
    // Numbers as printed, to their last digit (JSON's text of an f64 need not parse back to its
    // last bit, so a mean on a rounding boundary may print either way).
    let near = |text: &str, value: f64, digits: i32| (text.trim_start_matches('+').parse::<f64>().unwrap() - value).abs() <= 0.5 * 10f64.powi(-digits) + 1e-9;
    let crop_row = report.lines().find(|l| l.starts_with("| **crop** | ")).expect("the crop row");
    let shown = crop_row["| **crop** | ".len()..].split(" ± ").next().unwrap();
    assert!(near(shown, mean("crop"), 1), "{crop_row}");
    let claim = report.lines().find(|l| l.starts_with("| Crop then colour (one branch) beats crop alone")).expect("the declared claim's row");
    let contrast = claim.split(" | ").nth(2).and_then(|c| c.split(" (").next()).unwrap();
    assert!(near(contrast, mean("crop+color") - mean("crop"), 2) && claim.contains("2 seeds") && claim.contains("**"), "{claim}");
    assert!(report.lines().any(|l| l.starts_with("| Crop then colour (one branch) beats colour alone") && l.contains("not measured")), "{report}");

    // The run folders gone (as in a fresh checkout of a committed results.json), nothing reruns.
    std::fs::remove_dir_all(first.join("cells")).unwrap();
    let out = ablate(&first, &seeds);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("0 runs trained") && said.contains("4 found finished"), "{said}");
    assert_eq!(results(&first), runs);
    // Another folder takes them through --reuse, and trains only what they lack (seed 5).
    let out = Command::new(env!("CARGO_BIN_EXE_simclr"))
        .args(["--quiet", "ablate", "--study", "augment", "--only", "crop", "--max-steps", "5", "--limit", "384", "--seeds", "3", "--seed", "3", "--reuse"])
        .arg(&first)
        .arg("--out")
        .arg(&other)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("1 runs trained") && said.contains("2 found finished"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let kept: Vec<&serde_json::Value> = runs.iter().filter(|r| r["id"] == "crop").collect();
    assert_eq!(results(&other).iter().take(2).collect::<Vec<_>>(), kept);
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
    for (study, cells) in [("augment", 55), ("head", 8), ("temperature", 11), ("scale", 28)] {
        let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", study, "--list"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("{cells} cells")), "{study}: {text}");
    }
    let full = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", "scale", "--preset", "full", "--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&full.stdout);
    assert!(text.contains("batch8192-epochs800") && text.contains("TPU"), "{text}");
    // Cells of identical settings are one run, said so.
    let small = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", "scale", "--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&small.stdout);
    assert!(text.contains("26 runs") && text.contains("one run for batch128-epochs10 and resnet18x0.125-simclr") && text.contains("one run for resnet18x0.125-untrained and random-init"), "{text}");
    for (study, cells, runs) in [("augment", 10, 30), ("head", 4, 12), ("temperature", 4, 12), ("scale", 8, 24)] {
        let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", study, "--preset", "medium", "--list"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("{cells} cells")) && text.contains(&format!("{runs} runs: the cells at seeds 0, 1, 2")), "{study}: {text}");
    }
}

#[test]
fn per_image_hits_round_trip_through_json_and_bad_text_is_refused() {
    use simclr::ablate::Hits;
    for n in 0..13usize {
        let hits = Hits((0..n).map(|i| i % 3 == 0 || i + 1 == n).collect());
        let text = serde_json::to_string(&hits).unwrap();
        assert_eq!(serde_json::from_str::<Hits>(&text).unwrap(), hits, "{text}");
    }
    assert_eq!(serde_json::to_string(&Hits(vec![true, false, true, true, true])).unwrap(), "\"5:b8\"");
    for bad in ["\"5:b\"", "\"x:b8\"", "\"5:g8\"", "\"b8\"", "\"5:b8f\""] {
        assert!(serde_json::from_str::<Hits>(bad).is_err(), "{bad}");
    }
}

/// One run of a cell at seed 0 with per-image hits on 400 test images: those of `right` correct.
fn run_of(id: &str, trains: simclr::ablate::Trains, width: f32, score: &str, right: std::ops::Range<usize>) -> simclr::ablate::CellResult {
    let mut config = simclr::config::Config::default();
    config.model.width = width;
    let hits = simclr::ablate::Hits((0..400).map(|i| right.contains(&i)).collect());
    let top1 = 100.0 * right.len() as f64 / 400.0;
    serde_json::from_value(serde_json::json!({
        "id": id, "table": "size", "row": id, "column": "-", "top1": {score: top1}, "contrast_acc": null, "contrast_entropy": null,
        "loss": null, "diverged": null, "steps": 1, "seconds": 1.0, "paper": null, "config": config, "trains": trains, "hits": {score: hits},
    }))
    .unwrap()
}

#[test]
fn a_supervised_cell_that_does_not_beat_its_untrained_encoder_is_flagged_not_counted() {
    use simclr::ablate::Trains;
    let results = vec![
        run_of("untrained-narrow", Trains::Nothing, 0.125, "h", 0..300),
        run_of("supervised-narrow", Trains::Supervised, 0.125, "supervised", 40..400),
        run_of("untrained-wide", Trains::Nothing, 0.25, "h", 0..320),
        // 4 more right of 400 than random features, 156 images told apart: inside the interval.
        run_of("supervised-wide", Trains::Supervised, 0.25, "supervised", 76..400),
        run_of("supervised-deep", Trains::Supervised, 0.5, "supervised", 10..400),
    ];
    let mut rows = simclr::ablate::report::by_cell(&results);
    let section = simclr::ablate::report::check_training(&mut rows, &results);
    let failed: Vec<(&str, bool)> = rows.iter().map(|r| (r.id.as_str(), r.failed.is_some())).collect();
    assert_eq!(failed, [("untrained-narrow", false), ("supervised-narrow", false), ("untrained-wide", false), ("supervised-wide", true), ("supervised-deep", false)]);
    assert!(section.contains("- supervised-narrow: trained: +15.00 over untrained-narrow"), "{section}");
    assert!(section.contains("- supervised-wide: **did not train**: +1.00 over the untrained untrained-wide"), "{section}");
    assert!(section.contains("- supervised-deep: not checked"), "{section}");
}

/// A labelled folder of `per_class` 8 px drawings in each of 3 classes (the class's colour, its
/// brightness varying), without a test/ split.
fn labelled_folder(root: &Path, per_class: usize) {
    for (c, class) in ["red", "green", "blue"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let v = 80 + (i * 7 % 170) as u8;
            let img = image::RgbImage::from_fn(8, 8, |x, y| {
                let mut p = [((x + y) as u8) * 3; 3];
                p[c] = v;
                image::Rgb(p)
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn on_a_drawn_test_split_each_seed_holds_out_its_fold_and_the_contrast_pairs_within_folds() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    labelled_folder(&data, 150);
    // --test-fraction 0.4: 3 folds per class of 60, 60 and 30 images; seeds 0, 1, 2 hold out
    // folds 0, 1, 2, so each of the 450 images is tested once, on folds of unequal size.
    let args = ["--quiet", "ablate", "--study", "augment", "--only", "crop,crop+color", "--max-steps", "2", "--dataset", "folder", "--test-fraction", "0.4", "--seeds", "3"];
    let run = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--data").arg(&data).arg("--out").arg(&out).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let tested: Vec<(u64, u64, usize)> = results(&out)
        .iter()
        .map(|r| (r["config"]["run"]["seed"].as_u64().unwrap(), r["config"]["data"]["test_fold"].as_u64().unwrap(), r["hits"]["h"].as_str().unwrap().split(':').next().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(tested, [(0, 0, 180), (1, 1, 180), (2, 2, 90), (0, 0, 180), (1, 1, 180), (2, 2, 90)]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("3 disjoint folds, seed S holding out fold S mod 3") && report.contains("every fold tested, so every image once"), "{report}");
    let claim = report.lines().find(|l| l.starts_with("| Crop then colour (one branch) beats crop alone")).expect("the declared claim's row");
    assert!(claim.contains("3 seeds") && claim.contains("**"), "{claim}");
    // A fold outside the split is refused, naming the folds there are.
    let bad = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["linear-eval", "--random-init", "--dataset", "folder", "--test-fraction", "0.4", "--test-fold", "3", "--data"]).arg(&data).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--test-fold 3") && err.contains("0 to 2"), "{err}");
}

/// Fashion-MNIST's IDX folder, or none (the test is then skipped, and says so) where it is not
/// installed.
fn fashion_mnist() -> Option<&'static str> {
    const FASHION: &str = "/usr/share/datasets/fashion-mnist";
    if Path::new(FASHION).exists() {
        return Some(FASHION);
    }
    eprintln!("skipped: {FASHION} missing (apt-get install -y dataset-fashion-mnist); CI installs it");
    None
}

/// The committed medium-preset reports are what `ablate` writes from their committed
/// `results.json`: in a fresh folder holding only that file it trains nothing, writes the same
/// tables and verdicts (every line but the command, which names the folder), the study's figures,
/// and the same `results.json` byte for byte (numbers round-trip).
#[test]
fn the_committed_medium_reports_are_rewritten_from_their_results_alone() {
    let Some(fashion) = fashion_mnist() else { return };
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ablations/medium");
    for (study, figures) in [("scale", &["length-batch.png", "width.png"][..]), ("temperature", &["temperature.png"][..])] {
        let dir = tempfile::tempdir().unwrap();
        let json = std::fs::read(committed.join(study).join("results.json")).unwrap();
        std::fs::write(dir.path().join("results.json"), &json).unwrap();
        let args = ["--quiet", "ablate", "--study", study, "--preset", "medium", "--dataset", "fashion-mnist", "--data", fashion, "--out"];
        let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg(dir.path()).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains(": 0 runs trained"), "{study}: {said}{}", String::from_utf8_lossy(&out.stderr));
        let lines = |file: &Path| -> Vec<String> { std::fs::read_to_string(file).unwrap().lines().filter(|l| !l.starts_with("Command:")).map(String::from).collect() };
        assert_eq!(lines(&dir.path().join("report.md")), lines(&committed.join(study).join("report.md")), "{study}");
        assert!(std::fs::read(dir.path().join("results.json")).unwrap() == json, "{study}: results.json changed on rewriting");
        for png in figures {
            let img = image::open(dir.path().join(png)).unwrap();
            assert!(img.width() > 300 && img.height() > 300, "{study}: {png}");
        }
    }
}

/// `--redraw` draws a study's figures from results an older simclr wrote (the small preset's
/// committed scale study, one seed, no per-image hits), which a plain run refuses to mix in: it
/// trains nothing and leaves results.json as it was and report.md unwritten.
#[test]
fn redraw_draws_the_figures_of_older_results_without_training() {
    let Some(fashion) = fashion_mnist() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ablations/scale/results.json")).unwrap();
    std::fs::write(dir.path().join("results.json"), &json).unwrap();
    let run = |extra: &[&str]| Command::new(env!("CARGO_BIN_EXE_simclr")).args(["--quiet", "ablate", "--study", "scale", "--dataset", "fashion-mnist", "--data", fashion, "--out"]).arg(dir.path()).args(extra).output().unwrap();
    let out = run(&[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("written by an older simclr"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["--redraw"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("figures drawn again") && said.contains("size.png"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    for png in ["batch-epochs.png", "size.png"] {
        let img = image::open(dir.path().join(png)).unwrap();
        assert!(img.width() > 300 && img.height() > 300, "{png}");
    }
    assert!(std::fs::read(dir.path().join("results.json")).unwrap() == json && !dir.path().join("report.md").exists() && !dir.path().join("cells").exists());
    // A folder without results is named.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(["ablate", "--study", "head", "--redraw", "--out"]).arg(empty.path()).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("holds no results.json"), "{}", String::from_utf8_lossy(&out.stderr));
}
