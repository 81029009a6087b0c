//! SimCLR v2's distillation (`simclr distill`, `src/distill.rs`, `src/train/distill.rs`): the loss
//! against hand-computed values, its gradient against the hand-derived one and finite
//! differences (τ ≠ 1, labelled rows mixed in), and a student that reaches its teacher's
//! predictions on the teacher's training images and reloads to the scores it reported.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use simclr::distributed;
use simclr::train::distill::{Distillation, Taught};
use simclr::train::supervised::Classify;
use simclr::train::Objective;
use std::path::Path;
use std::process::Command;

/// Logits that are a linear map of the flattened input: `x [n, 1, 1, k] · w [k, c]`.
#[derive(Module, Debug)]
struct Linear4 {
    w: Param<Tensor<2>>,
}

impl Classify<4> for Linear4 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let [n, _, _, k] = x.dims();
        x.reshape([n, k]).matmul(self.w.val())
    }
}

fn tensor2(values: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.iter().map(|&v| v as f32).collect::<Vec<_>>(), shape), device)
}

fn taught(x: &[f64], teacher: &[f64], labels: &[Option<usize>], k: usize, c: usize, device: &Device) -> Taught {
    let n = labels.len();
    let mut onehot = vec![0.0; n * c];
    for (r, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            onehot[r * c + l] = 1.0;
        }
    }
    Taught { x: tensor2(x, [n, k], device).reshape([n, 1, 1, k]), teacher: tensor2(teacher, [n, c], device), labels: tensor2(&onehot, [n, c], device) }
}

fn softmax(row: &[f64], tau: f64) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = row.iter().map(|v| ((v - max) / tau).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Eq. 3 as `Distillation` documents it, in f64: `(1/n)[w Σ_lab −log P_S(y) + (1−w) τ² Σ Σ −P_T^τ log P_S^τ]`.
fn reference_loss(s: &[f64], t: &[f64], labels: &[Option<usize>], c: usize, tau: f64, w: f64) -> f64 {
    let n = labels.len();
    let mut total = 0.0;
    for r in 0..n {
        let (sr, tr) = (&s[r * c..(r + 1) * c], &t[r * c..(r + 1) * c]);
        let (pt, ps) = (softmax(tr, tau), softmax(sr, tau));
        total += (1.0 - w) * tau * tau * -(0..c).map(|y| pt[y] * ps[y].ln()).sum::<f64>();
        if let Some(l) = labels[r] {
            total += w * -softmax(sr, 1.0)[l].ln();
        }
    }
    total / n as f64
}

/// The gradient of [`reference_loss`] in the student's logits, derived by hand:
/// `(1/n)[(1−w) τ (P_S^τ − P_T^τ) + w (P_S − onehot)·labelled]`.
fn reference_gradient(s: &[f64], t: &[f64], labels: &[Option<usize>], c: usize, tau: f64, w: f64) -> Vec<f64> {
    let n = labels.len();
    let mut g = vec![0.0; n * c];
    for r in 0..n {
        let (sr, tr) = (&s[r * c..(r + 1) * c], &t[r * c..(r + 1) * c]);
        let (pt, ps, p1) = (softmax(tr, tau), softmax(sr, tau), softmax(sr, 1.0));
        for y in 0..c {
            g[r * c + y] = (1.0 - w) * tau * (ps[y] - pt[y]) / n as f64;
            if let Some(l) = labels[r] {
                g[r * c + y] += w * (p1[y] - if y == l { 1.0 } else { 0.0 }) / n as f64;
            }
        }
    }
    g
}

fn loss_of(objective: Distillation, model: &Linear4, batch: Taught) -> (f32, f32) {
    let loss = objective.loss(model, batch, distributed::alone()).unwrap();
    let agreement = loss.logged.iter().find(|(n, _)| *n == "agreement").unwrap().1.clone().into_scalar();
    (loss.total.into_scalar(), agreement)
}

#[test]
fn the_loss_is_the_soft_cross_entropy_scaled_by_tau_squared() {
    let device = simclr::default_device();
    // One image, two classes: the student's logits 0 (P_S = ½, ½ at any τ), the teacher's (0, ln 3).
    let model = Linear4 { w: Param::from_tensor(tensor2(&[0.0, 0.0], [1, 2], &device)) };
    let batch = || taught(&[1.0], &[0.0, 3f64.ln()], &[Some(1)], 1, 2, &device);
    let ln2 = std::f32::consts::LN_2;
    for tau in [1.0, 2.0, 0.5] {
        let (loss, _) = loss_of(Distillation { temperature: tau, label_weight: 0.0 }, &model, batch());
        assert!((loss - tau * tau * ln2).abs() < 1e-6, "τ {tau}: {loss}, want τ² ln 2 = {}", tau * tau * ln2);
    }
    // Half the labelled cross-entropy (−log ½) and half the teacher's at τ = 2.
    let (loss, _) = loss_of(Distillation { temperature: 2.0, label_weight: 0.5 }, &model, batch());
    assert!((loss - (0.5 * ln2 + 0.5 * 4.0 * ln2)).abs() < 1e-6, "{loss}");
    // Teacher (0, ln 3) at τ = 1 against the student: exactly the cross-entropy −¼ ln ½ − ¾ ln ½.
    let model = Linear4 { w: Param::from_tensor(tensor2(&[1.0, 0.0], [1, 2], &device)) };
    let (loss, agreement) = loss_of(Distillation { temperature: 1.0, label_weight: 0.0 }, &model, batch());
    let ps = softmax(&[1.0, 0.0], 1.0);
    let want = -(0.25 * ps[0].ln() + 0.75 * ps[1].ln());
    assert!((loss as f64 - want).abs() < 1e-6, "{loss} vs {want}");
    assert_eq!(agreement, 0.0, "the student picks class 0, the teacher class 1");
}

#[test]
fn the_gradient_is_the_hand_derived_one_and_finite_differences_agree() {
    let device = simclr::default_device().autodiff();
    let (n, k, c) = (4, 3, 5);
    let x: Vec<f64> = (0..n * k).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
    let w0: Vec<f64> = (0..k * c).map(|i| ((i * 5 % 13) as f64 - 6.0) / 5.0).collect();
    let t: Vec<f64> = (0..n * c).map(|i| ((i * 3 % 7) as f64 - 3.0) * 0.9).collect();
    let labels = [Some(2), None, Some(0), None];
    let logits = |w: &[f64]| -> Vec<f64> { (0..n * c).map(|i| (0..k).map(|j| x[(i / c) * k + j] * w[j * c + i % c]).sum()).collect() };
    for (tau, lw) in [(1.0, 0.0), (0.5, 0.0), (3.0, 0.0), (2.0, 0.3), (1.0, 1.0)] {
        let objective = Distillation { temperature: tau as f32, label_weight: lw as f32 };
        let model = Linear4 { w: Param::from_tensor(tensor2(&w0, [k, c], &device).require_grad()) };
        let loss = objective.loss(&model, taught(&x, &t, &labels, k, c, &device), distributed::alone()).unwrap().total;
        let want_loss = reference_loss(&logits(&w0), &t, &labels, c, tau, lw);
        assert!((loss.clone().into_scalar::<f32>() as f64 - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0), "τ {tau} w {lw}: loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let got: Vec<f32> = grads.get::<2>(model.w.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        // dL/dW = xᵀ · dL/ds, from the hand-derived dL/ds.
        let gs = reference_gradient(&logits(&w0), &t, &labels, c, tau, lw);
        for j in 0..k {
            for y in 0..c {
                let hand: f64 = (0..n).map(|r| x[r * k + j] * gs[r * c + y]).sum();
                let eps = 1e-5;
                let mut up = w0.clone();
                up[j * c + y] += eps;
                let mut down = w0.clone();
                down[j * c + y] -= eps;
                let fd = (reference_loss(&logits(&up), &t, &labels, c, tau, lw) - reference_loss(&logits(&down), &t, &labels, c, tau, lw)) / (2.0 * eps);
                assert!((hand - fd).abs() < 1e-6, "τ {tau} w {lw} W[{j},{y}]: hand-derived {hand} vs finite differences {fd}");
                assert!((got[j * c + y] as f64 - hand).abs() < 1e-5, "τ {tau} w {lw} W[{j},{y}]: autodiff {} vs {hand}", got[j * c + y]);
            }
        }
    }
}

fn simclr(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--quiet").output().unwrap();
    assert!(out.status.success(), "simclr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn simclr_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--quiet").output().unwrap();
    assert!(!out.status.success(), "simclr {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_student_reaches_its_teachers_predictions_and_reloads_to_its_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let (ft, ds) = (tmp.path().join("ft"), tmp.path().join("ds"));
    let (ft_s, ds_s) = (ft.to_str().unwrap(), ds.to_str().unwrap());
    let data = ["--limit", "256"];
    let small = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32"];
    simclr(&[&["finetune", "--random-init", "--label-fraction", "1", "--epochs", "15", "--batch-size", "32", "--lr", "0.4", "--crop-min-area", "0.5", "--out", ft_s][..], &data, &small].concat());
    simclr(&[&["distill", "--teacher", ft_s, "--epochs", "40", "--batch-size", "32", "--lr", "0.4", "--crop-min-area", "1", "--out", ds_s][..], &data].concat());
    let r = report(&ds);
    assert_eq!(r["metrics"]["images"], 256);

    let device = simclr::default_device();
    let bad = simclr::data::BadImages::Fail;
    let teacher = simclr::eval::load(Some(&ft), &simclr::config::Config::default(), 16, &device).unwrap();
    let student = simclr::eval::load(Some(&ds), &simclr::config::Config::default(), 16, &device).unwrap();
    assert_eq!((student.model.head.len(), student.model.probe_layer, student.image_size), (0, 0, 16), "no projection head, the classifier on h");
    let train = simclr::data::first(simclr::data::open(&teacher.config.source(), simclr::data::Split::Train).unwrap(), 256);
    let scores = |m: &simclr::model::SimClr, ds: &dyn simclr::data::Dataset| simclr::eval::finetune::probe_scores(m, ds, 16, &bad, &device).unwrap();
    let (t, _) = scores(&teacher.model, train.as_ref());
    let (s, _) = scores(&student.model, train.as_ref());
    let agreement = simclr::eval::paired::agreement(&s, &t, 10);
    eprintln!("agreement on the training images: {agreement}");
    assert!(agreement >= 0.95, "the student agrees with its teacher on {:.1}% of the training images", 100.0 * agreement);
    // The teacher's predictions vary: agreement with a constant would not count.
    let top = |row: &[f32]| row.iter().enumerate().fold(0, |b, (c, &v)| if v > row[b] { c } else { b });
    let classes: std::collections::BTreeSet<usize> = t.chunks(10).map(top).collect();
    assert!(classes.len() >= 5, "the teacher predicts only {classes:?}");

    // The checkpoint gives the reported test scores.
    let test = simclr::data::open(&teacher.config.source(), simclr::data::Split::Test).unwrap();
    let (s, labels) = scores(&student.model, test.as_ref());
    assert_eq!(simclr::eval::topk_accuracy(&s, 10, &labels, 1).unwrap(), r["metrics"]["top1"].as_f64().unwrap());
    let (t, _) = scores(&teacher.model, test.as_ref());
    assert_eq!(simclr::eval::topk_accuracy(&t, 10, &labels, 1).unwrap(), r["metrics"]["teacher_top1"].as_f64().unwrap());
    assert_eq!(simclr::eval::paired::agreement(&s, &t, 10), r["metrics"]["teacher_agreement"].as_f64().unwrap());
    // `compare` on the two folders: the report's student-against-teacher test.
    let line = simclr(&["compare", ds_s, ft_s]);
    let v = &r["metrics"]["vs_teacher"];
    let want = format!("only the first right on {}, only the second on {}", v["only_a"], v["only_b"]);
    assert!(line.contains(&want), "{line}\nwant: {want}");
}

#[test]
fn bad_distillation_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (pre, ft) = (tmp.path().join("pre"), tmp.path().join("ft"));
    let out = tmp.path().join("out");
    let (pre_s, ft_s, out_s) = (pre.to_str().unwrap(), ft.to_str().unwrap(), out.to_str().unwrap());
    let small = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32", "--limit", "64"];
    simclr(&[&["pretrain", "--max-steps", "1", "--batch-size", "32", "--online-probe", "false", "--out", pre_s][..], &small].concat());
    let err = simclr_fails(&["distill", "--teacher", pre_s, "--limit", "64", "--out", out_s]);
    assert!(err.contains("--teacher") && err.contains("no classifier") && err.contains("simclr finetune"), "{err}");
    simclr(&[&["finetune", "--random-init", "--label-fraction", "0.5", "--epochs", "1", "--out", ft_s][..], &small].concat());
    let distill = |more: &[&str]| simclr_fails(&[&["distill", "--teacher", ft_s, "--limit", "64", "--out", out_s][..], more].concat());
    let distill_into = |folder: &str| simclr_fails(&["distill", "--teacher", ft_s, "--limit", "64", "--out", folder]);
    let err = distill(&["--label-weight", "0.5"]);
    assert!(err.contains("--label-weight 0.5") && err.contains("--subset"), "{err}");
    let subset = ft.join("subset-0.5-seed0.txt");
    let err = distill(&["--subset", subset.to_str().unwrap()]);
    assert!(err.contains("--subset") && err.contains("--label-weight"), "{err}");
    let err = distill(&["--temperature", "0"]);
    assert!(err.contains("--temperature 0"), "{err}");
    let err = distill(&["--label-weight", "1.5", "--subset", subset.to_str().unwrap()]);
    assert!(err.contains("--label-weight 1.5"), "{err}");
    let err = distill(&["--sk-ratio", "0.0625"]);
    assert!(err.contains("student"), "{err}");
    assert!(!out.join("checkpoints").exists(), "nothing is written before the settings are checked");
    // A folder holding a run (here the pretraining's) is refused: its checkpoints would be pruned.
    let err = distill_into(pre_s);
    assert!(err.contains(pre_s) && err.contains("already holds a run"), "{err}");
    let err = simclr_fails(&["finetune", "--checkpoint", pre_s, "--out", pre_s]);
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(simclr::checkpoint::resolve(&pre).unwrap().dir.file_name().unwrap(), "step-00000001", "the pretraining's checkpoint is still its latest");
    // Mixed with the labels (eq. 3): the subset's images bring theirs.
    let labelled = std::fs::read_to_string(&subset).unwrap().lines().count() as u64;
    simclr(&["distill", "--teacher", ft_s, "--limit", "64", "--epochs", "1", "--batch-size", "32", "--label-weight", "0.5", "--subset", subset.to_str().unwrap(), "--out", out_s]);
    let r = report(&out);
    assert_eq!((r["metrics"]["images"].as_u64(), r["metrics"]["labelled_images"].as_u64()), (Some(64), Some(labelled)));
    assert_eq!(r["settings"]["label_weight"], 0.5);
}

#[test]
fn a_resumed_distillation_ends_where_an_uninterrupted_one_does() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (ft, full, part) = (d("ft"), d("full"), d("part"));
    let small = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32", "--limit", "64"];
    simclr(&[&["finetune", "--random-init", "--label-fraction", "1", "--epochs", "1", "--out", &ft][..], &small].concat());
    let distill = |out: &str, more: &[&str]| -> Vec<String> {
        ["distill", "--teacher", &ft, "--limit", "64", "--epochs", "2", "--batch-size", "32", "--out", out].iter().chain(more).map(|s| s.to_string()).collect()
    };
    let distill = |out: &str, more: &[&str]| -> Vec<String> { distill(out, more) };
    simclr(&distill(&full, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    // The same run stopped after its first epoch: its last checkpoint gone.
    let status = Command::new("cp").args(["-r", &full, &part]).status().unwrap();
    assert!(status.success());
    let checkpoints = Path::new(&part).join("checkpoints");
    std::fs::remove_dir_all(checkpoints.join("step-00000004")).unwrap();
    std::fs::write(checkpoints.join("latest"), "step-00000002").unwrap();
    std::fs::remove_file(Path::new(&part).join("report.json")).unwrap();
    let run = |args: Vec<String>| simclr(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let fails = |args: Vec<String>| simclr_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = fails(distill(&part, &["--resume", "--lr", "0.1"]));
    assert!(err.contains("--resume") && err.contains("other settings"), "{err}");
    run(distill(&part, &["--resume"]));
    // Every weight as the uninterrupted run's, to the last bits that the order of a sum moves.
    let weights = |run: &str| std::fs::read(Path::new(run).join("checkpoints/step-00000004/model.safetensors")).unwrap();
    let (a, b) = (weights(&part), weights(&full));
    let (a, b) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let floats = |t: safetensors::tensor::TensorView| t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    let mut worst = (0f32, String::new());
    assert!(a.len() > 20 && a.len() == b.len(), "{} and {} tensors", a.len(), b.len());
    for (name, view) in a.tensors() {
        for (x, y) in floats(view).iter().zip(floats(b.tensor(&name).unwrap())) {
            let d = (x - y).abs() / y.abs().max(1.0);
            if d > worst.0 {
                worst = (d, name.clone());
            }
        }
    }
    assert!(worst.0 < 1e-4, "the resumed student differs from the uninterrupted one: {worst:?}");
    assert_eq!(report(Path::new(&part))["metrics"]["top1"], report(Path::new(&full))["metrics"]["top1"]);
    let err = fails(distill(&part, &["--resume"]));
    assert!(err.contains("complete"), "{err}");
    // Without --resume, a folder holding a distillation is refused.
    let err = fails(distill(&part, &[]));
    assert!(err.contains("already holds a run"), "{err}");
}
