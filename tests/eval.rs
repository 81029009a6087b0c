//! Evaluation protocols: logistic regression, kNN, label subsets, frozen encoder, and the end-to-end
//! check that pretraining beats random init.

use burn::module::Module;
use simclr::data::{self, Dataset, Split};
use simclr::eval::{extract, topk_accuracy, Features, Layer};
use simclr::eval::finetune::{label_subset, read_subset, write_subset};
use simclr::eval::knn::Knn;
use simclr::eval::linear::{fit_lbfgs, fit_lbfgs_fixed, lbfgs};

fn device() -> burn::tensor::Device {
    simclr::default_device()
}

#[test]
fn logistic_regression_recovers_a_linear_separator() {
    // Three classes separated by known hyperplanes in 4-D: class = argmax(A x).
    let a = [[1.0f32, -0.5, 0.2, 0.0], [-0.3, 1.0, 0.0, 0.4], [0.0, 0.1, -1.0, 0.6]];
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut state = 12345u64;
    let mut next = || {
        state = simclr::augment::splitmix64(state);
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    while labels.len() < 600 {
        let x: Vec<f32> = (0..4).map(|_| next()).collect();
        let s: Vec<f32> = a.iter().map(|r| r.iter().zip(&x).map(|(w, v)| w * v).sum()).collect();
        let mut sorted = s.clone();
        sorted.sort_by(|p, q| q.total_cmp(p));
        if sorted[0] - sorted[1] < 0.1 {
            continue; // keep a margin so the classes are separable
        }
        labels.push(s.iter().enumerate().fold(0, |b, (i, &v)| if v > s[b] { i } else { b }));
        data.extend(x);
    }
    let f = Features { n: labels.len(), dim: 4, data, labels };
    let clf = fit_lbfgs_fixed(&f, 3, 1e-6, None, &device());
    assert_eq!(topk_accuracy(&clf.scores(&f, &device()), 3, &f.labels, 1).unwrap(), 1.0);
}

#[test]
fn logistic_regression_matches_the_closed_form_on_a_tiny_problem() {
    // One feature, two classes, points x = ±1 with labels 1/0 and a mirrored pair, no L2:
    // data {(+1, 1), (+1, 1), (+1, 0), (−1, 0), (−1, 0), (−1, 1)}. Standardisation leaves x = ±1.
    // By symmetry b = 0 (both classes' logits equal at x = 0), and with w = w₁ − w₀ the optimum
    // satisfies σ(w) = 2/3, so w = ln 2. With L2 λ on both weights (w₁ = −w₀ = w/2 by symmetry) the
    // stationarity condition is σ(w) − 2/3 + λ w / 2 = 0.
    let f = Features { n: 6, dim: 1, data: vec![1.0, 1.0, 1.0, -1.0, -1.0, -1.0], labels: vec![1, 1, 0, 0, 0, 1] };
    let clf = fit_lbfgs_fixed(&f, 2, 0.0, None, &device());
    let w = (clf.weight[1] - clf.weight[0]) as f64;
    assert!((w - 2f64.ln()).abs() < 1e-3, "w = {w}, want ln 2");
    assert!((clf.bias[1] - clf.bias[0]).abs() < 1e-4);
    let l2 = 0.5;
    let clf = fit_lbfgs_fixed(&f, 2, l2, None, &device());
    let w = (clf.weight[1] - clf.weight[0]) as f64;
    let residual = 1.0 / (1.0 + (-w).exp()) - 2.0 / 3.0 + l2 * w / 2.0;
    assert!(residual.abs() < 1e-4, "stationarity residual {residual} at w = {w}");
}

#[test]
fn lbfgs_minimises_the_rosenbrock_function() {
    let f = |p: &[f64]| {
        let (x, y) = (p[0], p[1]);
        let v = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
        (v, vec![-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])
    };
    let p = lbfgs(f, vec![-1.2, 1.0], 500, 1e-9);
    assert!((p[0] - 1.0).abs() < 1e-4 && (p[1] - 1.0).abs() < 1e-4, "{p:?}");
}

#[test]
fn knn_votes_on_a_hand_built_example() {
    // Training points on the unit circle: class 0 near angle 0, class 1 near 90°.
    let angle = |deg: f32| {
        let r = deg.to_radians();
        [r.cos(), r.sin()]
    };
    let train_pts = [angle(0.0), angle(10.0), angle(-10.0), angle(90.0), angle(80.0)];
    let train = Features { n: 5, dim: 2, data: train_pts.concat(), labels: vec![0, 0, 0, 1, 1] };
    // Query at 60°: the two nearest (k = 2) are 80° and 90°, both class 1.
    let test = Features { n: 1, dim: 2, data: angle(60.0).to_vec(), labels: vec![1] };
    let knn = Knn { k: 2, temperature: 0.1 };
    let s = knn.scores(&train, &test, 2, &device());
    let w = |deg: f32| ((deg.to_radians().cos()) / 0.1).exp();
    assert_eq!(s[0], 0.0);
    assert!((s[1] - (w(20.0) + w(30.0))).abs() / s[1] < 1e-5, "{s:?}");
    // k = 5 at 40°: class 0 gets exp(cos 40°/T) + exp(cos 30°/T) + exp(cos 50°/T), class 1 the rest.
    let test = Features { n: 1, dim: 2, data: angle(40.0).to_vec(), labels: vec![0] };
    let s = Knn { k: 5, temperature: 0.1 }.scores(&train, &test, 2, &device());
    assert!((s[0] - (w(40.0) + w(30.0) + w(50.0))).abs() / s[0] < 1e-5);
    assert!((s[1] - (w(50.0) + w(40.0))).abs() / s[1] < 1e-5);
}

#[test]
fn label_subsets_are_balanced_reproducible_and_checked() {
    let labels: Vec<usize> = (0..1000).map(|i| i % 10).collect();
    let a = label_subset(&labels, 10, 0.1, 7).unwrap();
    assert_eq!(a.len(), 100);
    let mut counts = [0; 10];
    a.iter().for_each(|&i| counts[labels[i]] += 1);
    assert_eq!(counts, [10; 10]);
    assert_eq!(a, label_subset(&labels, 10, 0.1, 7).unwrap(), "same seed, same subset");
    assert_ne!(a, label_subset(&labels, 10, 0.1, 8).unwrap());
    assert!(a.windows(2).all(|w| w[0] < w[1]), "no duplicates");
    let one = label_subset(&labels, 10, 0.01, 7).unwrap();
    assert_eq!(one.len(), 10);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subset.txt");
    write_subset(&file, &a).unwrap();
    assert_eq!(read_subset(&file, 1000).unwrap(), a);
    assert!(read_subset(&file, 50).unwrap_err().to_string().contains("out of range"));

    for bad in [0.0, -0.1, 1.5] {
        assert!(label_subset(&labels, 10, bad, 0).unwrap_err().to_string().contains("(0, 1]"));
    }
    let err = label_subset(&labels, 10, 0.001, 0).unwrap_err().to_string();
    assert!(err.contains("no labelled example"), "{err}");
}

#[test]
fn subsets_of_the_real_train_split_are_disjoint_from_test() {
    // Subsets index the training split only; the test split is a different set of images.
    let train = data::builtin(Split::Train);
    let labels: Vec<usize> = (0..train.len()).map(|i| train.label(i).unwrap()).collect();
    let s = label_subset(&labels, 10, 0.01, 0).unwrap();
    assert_eq!(s.len(), 50);
    let test = data::builtin(Split::Test);
    let test_images: std::collections::HashSet<Vec<u8>> =
        (0..test.len()).map(|i| test.image(i).unwrap().to_u8_hwc()).collect();
    assert!(s.iter().all(|&i| !test_images.contains(&train.image(i).unwrap().to_u8_hwc())));
}

fn snapshot<M: Module>(model: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0.push(p.val().into_data().convert::<f32>().try_to_vec().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn linear_eval_leaves_the_encoder_and_bn_statistics_bit_identical() {
    let cfg = simclr::config::Config { model: simclr::config::ModelSettings { width: 0.125, proj_dim: 16, ..Default::default() }, ..Default::default() };
    let ad = device().autodiff();
    let model = cfg.model(16).init_seeded(3, &ad);
    // Give the BN running statistics non-trivial values with one training-mode forward pass.
    let _ = model.forward(burn::tensor::Tensor::ones([4, 3, 16, 16], &ad));
    // `valid()` folds pending running-statistic updates in, so both snapshots see synced values.
    let before = snapshot(&model.valid());
    let ds = data::Subset::new(std::sync::Arc::new(data::builtin(Split::Test)), (0..64).collect());
    let f = extract(&model, Layer::H.index(2).unwrap(), &ds, 16, 32, &data::BadImages::Fail, &ad).unwrap();
    assert_eq!((f.n, f.dim), (64, 64));
    let _ = fit_lbfgs(&f, 10, 0, &device());
    let after = snapshot(&model.valid());
    let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
    assert!(changed.is_empty(), "{} of {} tensors changed, first at index {:?}", changed.len(), before.len(), changed.first());
}

#[test]
fn layer_names_parse() {
    assert_eq!("h".parse::<Layer>().unwrap(), Layer::H);
    assert_eq!("z".parse::<Layer>().unwrap().index(2).unwrap(), 2);
    assert_eq!("head:1".parse::<Layer>().unwrap().index(3).unwrap(), 1);
    assert!("head:4".parse::<Layer>().unwrap().index(3).is_err());
    assert!("middle".parse::<Layer>().is_err());
}

#[test]
fn building_the_fine_tuning_model_leaves_the_bn_statistics_alone() {
    // It used to run a dummy all-zeros batch in training mode to learn the feature size, moving
    // every running mean/var 10% towards zero-input statistics before fine-tuning began.
    let cfg = simclr::config::Config { model: simclr::config::ModelSettings { width: 0.125, proj_dim: 16, ..Default::default() }, ..Default::default() };
    let ad = device().autodiff();
    let model = cfg.model(16).init_seeded(3, &ad);
    let _ = model.forward(burn::tensor::Tensor::ones([4, 3, 16, 16], &ad));
    let before = snapshot(&model.valid());
    for keep in [0, 1, 2] {
        let clf = simclr::eval::finetune::Classifier::new(model.clone(), keep, 10, 0, &ad).unwrap();
        let after = snapshot(&clf.valid());
        let encoder = snapshot(&model.encoder.valid()).len();
        let kept = snapshot(&model.clone().valid().head.truncated(keep)).len();
        assert_eq!(after.len(), encoder + kept + 2, "encoder, {keep} head layers, classifier weight and bias");
        assert!(after[..encoder + kept] == before[..encoder + kept], "head:{keep}: the network's tensors changed");
        let fc_in = after[encoder + kept].len() / 10;
        assert_eq!(fc_in, if keep == 0 { 64 } else if keep == 1 { 64 } else { 16 }, "classifier input size for head:{keep}");
    }
}

#[test]
fn several_layers_in_one_pass_equal_each_layer_alone_and_the_probe_scores_them() {
    let cfg = simclr::config::Config { model: simclr::config::ModelSettings { width: 0.125, proj_dim: 16, ..Default::default() }, ..Default::default() };
    let model = cfg.model(16).init_seeded(5, &device());
    let ds = data::Subset::new(std::sync::Arc::new(data::builtin(Split::Test)), (0..48).collect());
    let bad = data::BadImages::Fail;
    let (layers, rows) = simclr::eval::extract_layers(&model, &[2, 0, 1], &ds, 16, 20, &bad, &device()).unwrap();
    assert_eq!(rows, (0..48).collect::<Vec<_>>());
    for (f, layer) in layers.iter().zip([2, 0, 1]) {
        let alone = extract(&model, layer, &ds, 16, 32, &bad, &device()).unwrap();
        assert_eq!((f.n, f.dim, &f.labels), (alone.n, alone.dim, &alone.labels), "layer {layer}");
        let gap = f.data.iter().zip(&alone.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(gap <= 1e-5, "layer {layer}: {gap} from the one-layer extraction");
    }
    assert_eq!((layers[1].dim, layers[0].dim), (64, 16), "h of width 1/8, then z");
    // The one probe: its test top-1 is that of its own scores, its train top-1 that of the fit.
    let p = simclr::eval::linear::probe(&layers[1], &layers[1], 10, simclr::eval::linear::Fit::Lbfgs, 0, &device()).unwrap();
    assert_eq!(p.test_top1, topk_accuracy(&p.test_scores, 10, &layers[1].labels, 1).unwrap());
    assert_eq!(p.train_top1, p.test_top1, "the same features as train and test");
    assert!(simclr::eval::extract_layers(&model, &[3], &ds, 16, 20, &bad, &device()).is_err(), "no layer 3 with a 2-layer head");
}

#[test]
fn mcnemar_counts_the_discordant_images_and_its_p_value_is_the_exact_binomial_tail() {
    use simclr::eval::paired::{hits, mcnemar, predictions};
    let (t, f) = (true, false);
    // Only the first right on 3 images, never the second alone: p = 2 · (½)³.
    let c = mcnemar(&[t, t, t, t, f], &[f, f, f, t, f]).unwrap();
    assert_eq!((c.images, c.only_a, c.only_b), (5, 3, 0));
    assert!((c.p_value - 0.25).abs() < 1e-12 && (c.top1_a - 0.8).abs() < 1e-12 && (c.top1_b - 0.2).abs() < 1e-12, "{c:?}");
    // 10 against 2: p = 2 · (1 + 12 + 66) / 2¹².
    let a: Vec<bool> = (0..12).map(|i| i < 10).collect();
    let b: Vec<bool> = (0..12).map(|i| i >= 10).collect();
    assert!((mcnemar(&a, &b).unwrap().p_value - 158.0 / 4096.0).abs() < 1e-12);
    // Symmetric, 1 when the split is even, tiny but not 0 for thousands of images.
    assert_eq!(mcnemar(&b, &a).unwrap().p_value, mcnemar(&a, &b).unwrap().p_value);
    assert_eq!(mcnemar(&[t, f], &[f, t]).unwrap().p_value, 1.0);
    let a: Vec<bool> = (0..9000).map(|i| i < 5000).collect();
    let b: Vec<bool> = (0..9000).map(|i| i >= 5000).collect();
    let p = mcnemar(&a, &b).unwrap().p_value;
    assert!(p > 0.0 && p < 1e-20, "{p}");
    assert!(mcnemar(&[t], &[t, f]).is_err() && mcnemar(&[], &[]).is_err());
    // Ties pick the first class, as the confusion matrix does.
    assert_eq!(predictions(&[0.1, 0.9, 0.5, 0.5, 2.0, -1.0], 2), [1, 0, 0]);
    assert_eq!(hits(&[1, 0, 0], &[1, 1, 0]), [true, false, true]);
}

#[test]
fn a_contrast_over_seeds_and_images_has_the_bootstrap_interval_of_its_noise() {
    use simclr::eval::paired::contrast;
    // One seed, 1,000 images: the first alone right on 60, the second alone on 40, both on 500.
    // The contrast is 2 points; its paired standard error is √(0.06 + 0.04 − 0.02²)/√1000 ≈ 1.0
    // point, so the 95% interval is about 2 ± 1.96.
    let a: Vec<bool> = (0..1000).map(|i| i < 560).collect();
    let b: Vec<bool> = (0..1000).map(|i| i < 500 || (560..600).contains(&i)).collect();
    let c = contrast(&[vec![&a[..], &b[..]]], &[1.0, -1.0], 7).unwrap();
    let se = 100.0 * ((0.06 + 0.04 - 0.02f64 * 0.02) / 1000.0).sqrt();
    assert!((c.estimate - 2.0).abs() < 1e-9 && c.per_seed.len() == 1 && c.images == 1000, "{c:?}");
    assert!((c.ci95.0 - (2.0 - 1.96 * se)).abs() < 0.25 && (c.ci95.1 - (2.0 + 1.96 * se)).abs() < 0.25, "{c:?} (se {se:.3})");
    assert!(c.p_value > 0.02 && c.p_value < 0.09, "{c:?}");
    // Reversed terms mirror it; an image every classifier gets right moves nothing.
    let r = contrast(&[vec![&b[..], &a[..]]], &[1.0, -1.0], 7).unwrap();
    assert!((r.estimate + 2.0).abs() < 1e-9 && (r.p_value - c.p_value).abs() < 0.02, "{r:?}");
    let same = contrast(&[vec![&a[..], &a[..]]], &[1.0, -1.0], 7).unwrap();
    assert_eq!((same.estimate, same.ci95, same.p_value), (0.0, (0.0, 0.0), 1.0));
    // Two seeds that disagree (+5 and −5 points, no test noise to speak of): the mean is 0 and the
    // interval spans the seeds, where a test over images alone would call both seeds significant.
    let n = 2000;
    let right = |k: usize| (0..n).map(|i| i < k).collect::<Vec<bool>>();
    let (hi, mid, lo) = (right(1100), right(1000), right(900));
    let c = contrast(&[vec![&hi[..], &mid[..]], vec![&lo[..], &mid[..]]], &[1.0, -1.0], 1).unwrap();
    assert_eq!((c.estimate, c.per_seed.clone()), (0.0, vec![5.0, -5.0]));
    assert!(c.ci95.0 < -4.0 && c.ci95.1 > 4.0 && c.p_value > 0.5, "{c:?}");
    // A difference of differences: the weights, not the number of terms, make the contrast.
    let d = contrast(&[vec![&hi[..], &mid[..], &mid[..], &lo[..]]], &[1.0, -1.0, -1.0, 1.0], 1).unwrap();
    assert!((d.estimate - 0.0).abs() < 1e-9, "{d:?}");
    let e = contrast(&[vec![&hi[..], &lo[..], &mid[..], &mid[..]]], &[1.0, -1.0, -1.0, 1.0], 1).unwrap();
    assert!((e.estimate - 10.0).abs() < 1e-9 && e.ci95.0 > 8.0, "{e:?}");
    // k-fold: seeds on test sets of their own (2,000 and 1,000 images) pool every tested image
    // (+5 on 2,000 and −4 on 1,000: +2 over 3,000); two seeds on one set must match in length.
    use simclr::eval::paired::contrast_on;
    let (lo1000, mid1000) = ((0..1000).map(|i| i < 460).collect::<Vec<bool>>(), (0..1000).map(|i| i < 500).collect::<Vec<bool>>());
    let k = contrast_on(&[vec![&hi[..], &mid[..]], vec![&lo1000[..], &mid1000[..]]], &[0, 1], &[1.0, -1.0], 1).unwrap();
    assert!((k.estimate - 2.0).abs() < 1e-9 && k.per_seed == vec![5.0, -4.0] && k.images == 3000, "{k:?}");
    assert!(k.ci95.0 < -3.0 && k.ci95.1 > 4.0, "seed noise still counts: {k:?}");
    assert!(contrast_on(&[vec![&hi[..], &mid[..]], vec![&lo1000[..], &mid1000[..]]], &[0, 0], &[1.0, -1.0], 1).is_err());
    assert!(contrast_on(&[vec![&hi[..], &mid[..]]], &[0, 1], &[1.0, -1.0], 1).is_err(), "a test set per seed");
    // Mismatched runs are refused.
    assert!(contrast(&[vec![&a[..], &hi[..]]], &[1.0, -1.0], 0).is_err());
    assert!(contrast(&[vec![&a[..]]], &[1.0, -1.0], 0).is_err());
    assert!(contrast(&[], &[1.0], 0).is_err());
}
