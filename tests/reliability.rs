//! What a run survives: damaged checkpoints (found by their manifest: `--resume` falls back to the
//! newest intact one, evaluation refuses), a damaged feature cache (recomputed), a second writer on
//! the same run folder (refused while the first lives), a full disk (the previous checkpoint stays),
//! and a diverged run (no checkpoint of non-finite weights).

mod common;

use common::small;
use simclr::checkpoint::{self, Verified};
use simclr::config::Config;
use simclr::pretrain::pretrain;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const SMALL: [&str; 8] = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32", "--limit", "512"];

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("checkpoints/step-{step:08}"))
}

/// Flips one byte in the middle of `file`.
fn flip_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

fn error_of<T>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.err().expect("should fail"))
}

#[test]
fn a_damaged_checkpoint_is_named_resume_falls_back_and_evaluation_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    (cfg.optim.max_steps, cfg.monitor.checkpoint_every, cfg.monitor.keep_checkpoints) = (4, 2, 3);
    pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    assert_eq!(checkpoint::resolve(dir.path()).unwrap().dir, step_dir(dir.path(), 4));

    // One flipped byte in the newest weights: named, and the intact one before it is offered.
    flip_byte(&step_dir(dir.path(), 4).join("model.safetensors"));
    let e = error_of(checkpoint::resolve(dir.path()));
    assert!(e.contains("step-00000004 is damaged") && e.contains("SHA-256 of model.safetensors"), "{e}");
    assert!(e.contains("step-00000002 is intact"), "{e}");
    let e = error_of(simclr::eval::load(Some(dir.path()), &Config::default(), 16, &simclr::default_device()));
    assert!(e.contains("damaged"), "evaluation refuses it: {e}");
    // A truncated file says so, rather than blaming the architecture.
    let file = step_dir(dir.path(), 4).join("optimizer.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 3).unwrap();
    let e = error_of(checkpoint::resolve(&step_dir(dir.path(), 4)));
    assert!(e.contains("optimizer.safetensors has") && e.contains("where the manifest says"), "{e}");

    // --resume continues from step 2, as an unbroken run would have from there.
    cfg.optim.max_steps = 6;
    let resumed = pretrain(&cfg, true, &simclr::default_device(), false).unwrap();
    assert_eq!((resumed.start_step, resumed.history.len()), (2, 4));
    assert!(checkpoint::resolve(dir.path()).unwrap().dir.ends_with("step-00000006"));

    // With every checkpoint damaged, a clear error instead of a silent fresh start.
    for step in [2, 4, 6] {
        if step_dir(dir.path(), step).exists() {
            flip_byte(&step_dir(dir.path(), step).join("state.json"));
        }
    }
    let e = error_of(pretrain(&cfg, true, &simclr::default_device(), false));
    assert!(e.contains("none of its checkpoints is intact (3 checked"), "{e}");
}

fn simclr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--quiet").output().unwrap()
}

fn success(args: &[&str]) -> Output {
    let out = simclr(args);
    assert!(out.status.success(), "simclr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_damaged_feature_cache_is_extracted_again() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    success(&[&["pretrain", "--max-steps", "1", "--batch-size", "8", "--out", run_s][..], &SMALL].concat());
    let knn = |out: &str| success(&["knn", "--checkpoint", run_s, "--limit", "300", "--out", out]);
    let first = knn(dir.path().join("a").to_str().unwrap());
    let cache = checkpoint::resolve(&run).unwrap().dir.join("features");
    let train = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("train-")).unwrap();
    flip_byte(&train.join("features.npy"));
    let second = knn(dir.path().join("b").to_str().unwrap());
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(log.contains("feature cache") && log.contains("damaged") && log.contains("extracting the features again"), "{log}");
    let top1 = |o: &Output| String::from_utf8_lossy(&o.stdout).split("top-1").nth(1).unwrap().to_string();
    assert_eq!(top1(&first), top1(&second), "the same features, recomputed");
    simclr::manifest::verify(&train).expect("the cache is sealed again");
}

/// Starts a long pretraining run into `out` (batch 512: steps of about a second here) and returns
/// once `ready(out)` holds.
fn start_long_run(out: &Path, ready: impl Fn(&Path) -> bool) -> Child {
    let small = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32", "--limit", "1024", "--batch-size", "512"];
    let args = [&["pretrain", "--epochs", "100", "--out", out.to_str().unwrap(), "--quiet"][..], &small].concat();
    let mut child = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while !ready(out) {
        assert!(start.elapsed() < Duration::from_secs(120), "the run did not start");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Whether the run in `out` has logged `steps` steps.
fn logged(steps: usize) -> impl Fn(&Path) -> bool {
    move |out| std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) >= steps
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill").args([format!("-{name}"), child.id().to_string()]).status().unwrap().success());
}

/// Waits (at most a minute) for `child` to end; its exit code and standard error.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "the run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn logged_steps(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn one_writer_per_run_folder_and_a_killed_writer_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = start_long_run(&out, logged(1));
    let second = simclr(&["pretrain", "--max-steps", "1", "--out", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && e.contains(&format!("pid {}", first.id())) && e.contains("another --out"), "{e}");
    signal(&first, "KILL");
    finish(first);
    let to = (logged_steps(&out).len() + 1).to_string();
    let args = [&["pretrain", "--resume", "--max-steps", &to, "--out", out.to_str().unwrap()][..], &SMALL].concat();
    success(&args);
}

#[test]
fn the_first_ctrl_c_checkpoints_and_says_how_to_resume_the_second_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = start_long_run(&out, logged(2));
    signal(&child, "INT");
    let (code, err) = finish(child);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("continue with `simclr pretrain --resume --out"), "{err}");
    let steps = logged_steps(&out);
    let Verified { dir: last, .. } = checkpoint::latest_intact(&out).unwrap().expect("a checkpoint at the stop");
    assert_eq!(checkpoint::read_state(&last).unwrap().step as u64, *steps.last().unwrap(), "the checkpoint holds every logged step");
    let to = (steps.len() + 2).to_string();
    success(&["pretrain", "--resume", "--max-steps", &to, "--out", out.to_str().unwrap()]);
    assert_eq!(logged_steps(&out), (1..=steps.len() as u64 + 2).collect::<Vec<_>>());

    // Two signals: the process ends without finishing the step it is in, and writes nothing. The
    // first arrives once the handlers are installed (the run's config.toml is written after them),
    // before the first step ends (model, first batch and step take a second or more); the second
    // 200 ms later, once the first has surely been delivered (two pending signals would merge).
    let out = dir.path().join("twice");
    let child = start_long_run(&out, |out| out.join("config.toml").exists());
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "TERM");
    let (code, err) = finish(child);
    assert_eq!(code, Some(128 + 15), "{err}");
    assert!(!err.contains("interrupted after"), "{err}");
    assert!(checkpoint::latest_intact(&out).unwrap().is_none(), "no half-written checkpoint");
}

#[test]
fn a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    success(&[&["pretrain", "--max-steps", "2", "--out", out_s][..], &SMALL].concat());
    // Files may grow to 64 KiB: the weights (about 700 KB) no longer fit. SIGXFSZ is ignored, so the
    // write fails with EFBIG as it would on a full disk.
    let exe = env!("CARGO_BIN_EXE_simclr");
    let script = format!("trap '' XFSZ; ulimit -f 64; exec {exe} pretrain --resume --max-steps 4 --out {out_s} --quiet");
    let full = Command::new("bash").args(["-c", &script]).output().unwrap();
    let e = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success() && e.contains("cannot write the checkpoint of step 4") && e.contains("previous checkpoint is kept"), "{e}");
    assert!(e.contains(out_s), "names the folder: {e}");
    assert_eq!(checkpoint::latest_intact(&out).unwrap().unwrap().dir, step_dir(&out, 2));
    let leftovers: Vec<_> = std::fs::read_dir(out.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().starts_with(".tmp")), "{leftovers:?}");
    success(&["pretrain", "--resume", "--max-steps", "4", "--out", out_s]);
    assert_eq!(logged_steps(&out), vec![1, 2, 3, 4]);
}

#[test]
fn no_checkpoint_holds_non_finite_weights() {
    // A diverging run (SGD at an absurd LR), checkpointed at every step: it stops with an error, and
    // every checkpoint it left has finite weights.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.warmup_epochs) = (simclr::optim::OptimizerKind::Sgd, 1e30, 0.0);
    (cfg.optim.max_steps, cfg.monitor.checkpoint_every, cfg.monitor.keep_checkpoints) = (8, 1, 8);
    let e = error_of(pretrain(&cfg, false, &simclr::default_device(), false));
    assert!(e.contains("diverged") || e.contains("the loss became"), "{e}");
    for entry in std::fs::read_dir(dir.path().join("checkpoints")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            checkpoint::verify(&path).unwrap();
            let bytes = std::fs::read(path.join("model.safetensors")).unwrap();
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (name, t) in tensors.tensors() {
                let finite = t.data().chunks_exact(4).all(|b| f32::from_le_bytes(b.try_into().unwrap()).is_finite());
                assert!(finite, "{}: {name} is not finite", path.display());
            }
        }
    }
    // And the check itself: weights that are not finite are refused by name.
    let model = cfg.model(16).init_seeded(0, &simclr::default_device());
    let poisoned = burn::module::Module::map(model, &mut Poison);
    let optim = simclr::optim::Optimizer::new(cfg.rule());
    let state = checkpoint::TrainState { step: 9, epoch: 0, seed: 0 };
    let e = error_of(checkpoint::save(dir.path(), &cfg, &poisoned, &optim, &state));
    assert!(e.contains("step 9") && e.contains("no longer finite") && e.contains("encoder"), "{e}");
    assert!(!step_dir(dir.path(), 9).exists());
}

/// Multiplies every parameter by NaN.
struct Poison;

impl burn::module::ModuleMapper for Poison {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<burn::tensor::Tensor<D>>) -> burn::module::Param<burn::tensor::Tensor<D>> {
        param.map(|t| t.mul_scalar(f32::NAN))
    }
}
