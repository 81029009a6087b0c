//! Never a wrong number, never a lost run: what a hostile or clumsy user broke before (issue 35),
//! each a check that failed before its fix. Non-finite numbers are refused wherever they enter
//! (weights, features, scores, settings); labels are matched between splits by class name; a run
//! folder holds one run; `--resume` checks the checkpoint before writing anything; only regular
//! files are read; folder scans visit each folder once; settings are bounded before allocating.

mod common;

use common::small;
use simclr::checkpoint;
use simclr::data::{self, Dataset, DatasetKind, Source, Split};
use simclr::eval::{self, Features};
use simclr::pretrain::pretrain;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn simclr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simclr")).args(args).arg("--quiet").output().unwrap()
}

/// The error of a command that must fail cleanly (exit status 1 or clap's 2, never a panic's 101).
fn refused(args: &[&str]) -> String {
    let out = simclr(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(matches!(out.status.code(), Some(1 | 2)), "simclr {args:?} should be refused: {:?}\n{stderr}", out.status);
    stderr
}

fn error_of<T>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.err().expect("should fail"))
}

fn png(dir: &Path, name: &str, shade: u8) {
    std::fs::create_dir_all(dir).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 255 - shade, 30])).save(dir.join(name)).unwrap();
}

fn folder(dir: &Path) -> Source {
    Source { kind: Some(DatasetKind::Folder), data: Some(dir.to_path_buf()), ..Default::default() }
}

fn labels(ds: &dyn Dataset) -> Vec<usize> {
    (0..ds.len()).map(|i| ds.label(i).unwrap()).collect()
}

// 1. A NaN anywhere is refused, never scored.

#[test]
fn a_nan_score_is_refused_not_counted_as_a_hit() {
    // Before: a NaN row counted as a hit (no score is >= NaN), so all-NaN scores made 100%.
    let e = error_of(eval::topk_accuracy(&[f32::NAN, f32::NAN, 0.2, 0.9], 2, &[0, 1], 1));
    assert!(e.contains("test row 0") && e.contains("not finite"), "{e}");
    assert!(eval::confusion(&[0.1, f32::INFINITY], 2, &[0]).is_err());
    // A test label the classifier never saw (IDX labels past the training classes): an error, not a panic.
    let e = error_of(eval::confusion(&[0.1, 0.2], 2, &[2]));
    assert!(e.contains("label 2") && e.contains("2 classes"), "{e}");
    assert!(eval::topk_accuracy(&[], 2, &[], 1).is_err(), "no test image: no accuracy");
    assert_eq!(eval::topk_accuracy(&[0.1, 0.9, 0.8, 0.2], 2, &[1, 0], 1).unwrap(), 1.0);
}

/// Multiplies every parameter by NaN.
struct Poison;

impl burn::module::ModuleMapper for Poison {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<burn::tensor::Tensor<D>>) -> burn::module::Param<burn::tensor::Tensor<D>> {
        param.map(|t| t.mul_scalar(f32::NAN))
    }
}

#[test]
fn weights_with_a_nan_are_refused_at_load() {
    // A sealed folder (as `import` writes) whose weights hold NaN: loading it names the tensor.
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let device = simclr::default_device();
    let model = burn::module::Module::map(cfg.model(16).init_seeded(0, &device), &mut Poison);
    checkpoint::save_model(&model, &dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.toml"), cfg.to_toml()).unwrap();
    simclr::manifest::seal(dir.path(), &["model.safetensors", "config.toml"]).unwrap();
    let e = error_of(eval::load(Some(dir.path()), &cfg, 16, &device));
    assert!(e.contains("model.safetensors") && e.contains("encoder") && e.contains("NaN"), "{e}");
}

#[test]
fn non_finite_hyper_parameters_are_refused() {
    for (args, flag) in [
        (&["linear-eval", "--random-init", "--solver", "sgd", "--sgd-lr", "nan"][..], "--sgd-lr"),
        (&["linear-eval", "--random-init", "--solver", "sgd", "--sgd-epochs", "0"][..], "--sgd-epochs"),
        (&["knn", "--random-init", "--knn-temperature", "0"][..], "--knn-temperature"),
        (&["knn", "--random-init", "--k", "0"][..], "--k"),
        (&["pretrain", "--warmup-epochs", "inf"][..], "--warmup-epochs"),
        (&["pretrain", "--weight-decay", "nan"][..], "--weight-decay"),
    ] {
        let e = refused(args);
        assert!(e.contains(flag), "{args:?}: {e}");
    }
}

#[test]
fn features_with_a_nan_row_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = Features { n: 3, dim: 2, data: vec![0.5, 0.1, 0.2, f32::NAN, 1.0, 2.0], labels: vec![0, 1, 0] };
    eval::embed::write(&f, dir.path()).unwrap();
    let e = error_of(eval::embed::read(dir.path()));
    assert!(e.contains("row 1") && e.contains("features.npy"), "{e}");
    let empty = Features { n: 4, dim: 0, data: vec![], labels: vec![] };
    eval::embed::write(&empty, dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("labels.npy")).ok();
    let e = error_of(eval::embed::read(dir.path()));
    assert!(e.contains("0 dimensions"), "{e}");
}

#[test]
fn a_fortran_order_npy_is_read_in_its_own_order() {
    // NumPy saves a transposed (Fortran-contiguous) array with fortran_order True: the values are
    // column by column. Before, they were read as rows (other neighbours, no error).
    let dir = tempfile::tempdir().unwrap();
    let mut header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }".to_string();
    header.push_str(&" ".repeat(64 - (10 + header.len() + 1) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    // The matrix [[1, 2, 3], [4, 5, 6]] column by column.
    for v in [1f32, 4., 2., 5., 3., 6.] {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(dir.path().join("features.npy"), bytes).unwrap();
    let f = eval::embed::read(dir.path()).unwrap();
    assert_eq!((f.n, f.dim, f.data), (2, 3, vec![1., 2., 3., 4., 5., 6.]));
}

// 2. Labels between splits by class name.

#[test]
fn test_labels_follow_the_training_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (class, n) in [("ant", 1), ("bee", 3), ("cat", 3)] {
        (0..n).for_each(|i| png(&d.join("train").join(class), &format!("{i}.png"), 40 * i as u8));
    }
    // The test split lacks `bee`: `cat` is still label 2, not 1 as by position.
    png(&d.join("test/ant"), "t.png", 1);
    png(&d.join("test/cat"), "t.png", 2);
    let test = data::open(&folder(d), Split::Test).unwrap();
    assert_eq!((labels(test.as_ref()), test.num_classes()), (vec![0, 2], 3));
    // --min-class-images 2 drops `ant` from both splits, one class list: cat is 1 in both.
    let src = Source { min_class_images: 2, ..folder(d) };
    let (train, test) = (data::open(&src, Split::Train).unwrap(), data::open(&src, Split::Test).unwrap());
    assert_eq!(train.num_classes(), 2);
    assert_eq!((labels(test.as_ref()), test.num_classes()), (vec![1], 2));
    // A test class the training split has no folder for is an error naming it.
    png(&d.join("test/dog"), "t.png", 3);
    let e = data::open(&folder(d), Split::Test).err().unwrap().to_string();
    assert!(e.contains("\"dog\"") && e.contains("ant, bee, cat"), "{e}");
}

// 3 and 4. One run a folder; --resume checks before it writes.

#[test]
fn a_new_run_into_a_run_folder_is_refused_and_the_old_run_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    cfg.optim.max_steps = 2;
    let first = pretrain(&cfg, false, &simclr::default_device(), false).unwrap();
    let config = std::fs::read(dir.path().join("config.toml")).unwrap();
    cfg.run.seed = 5;
    let e = error_of(pretrain(&cfg, false, &simclr::default_device(), false));
    assert!(e.contains("already holds a run") && e.contains("--resume") && e.contains("fresh --out"), "{e}");
    assert_eq!(std::fs::read(dir.path().join("config.toml")).unwrap(), config, "the old run's config is untouched");
    assert_eq!(checkpoint::latest_intact(dir.path()).unwrap().unwrap().dir, first.checkpoint);
}

#[test]
fn resume_with_another_optimizer_or_width_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let small = ["--width", "0.125", "--image-size", "16", "--proj-dim", "32", "--limit", "512", "--batch-size", "32"];
    let ok = |args: &[&str]| {
        let o = simclr(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    ok(&[&["pretrain", "--max-steps", "2", "--out", out], &small[..]].concat());
    let config = std::fs::read(dir.path().join("config.toml")).unwrap();
    let e = refused(&["pretrain", "--resume", "--optimizer", "adamw", "--width", "0.25", "--max-steps", "3", "--out", out]);
    assert!(e.contains("optimizer \"lars\", not \"adamw\"") && e.contains("width 0.125, not 0.25"), "{e}");
    assert_eq!(std::fs::read(dir.path().join("config.toml")).unwrap(), config, "nothing written");
    // With OUT/config.toml gone, --resume takes the checkpoint's own config (before: the defaults).
    std::fs::remove_file(dir.path().join("config.toml")).unwrap();
    ok(&["pretrain", "--resume", "--max-steps", "3", "--out", out]);
    let resumed = simclr::config::Config::from_file(&dir.path().join("config.toml")).unwrap();
    assert_eq!((resumed.model.width, resumed.optim.max_steps), (0.125, 3));
}

#[test]
fn an_optimizer_state_of_the_wrong_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let device = simclr::default_device();
    let model = cfg.model(16).init_seeded(0, &device);
    // AdamW's state (two buffers a parameter) read as LARS's (one). Before: a panic in the first step.
    let file = dir.path().join("optimizer.safetensors");
    let adamw = simclr::optim::Rule::new(simclr::optim::OptimizerKind::Adamw, 0.9, 0.0);
    let mut state = simclr::optim::Optimizer::new(adamw);
    let ad = device.clone().autodiff();
    let trained = cfg.model(16).init_seeded(0, &ad);
    let z = trained.forward(burn::tensor::Tensor::ones([2, 3, 16, 16], &ad));
    let grads = burn::optim::GradientsParams::from_grads(z.last().unwrap().clone().sum().backward(), &trained);
    let _ = state.step(0.1, trained, grads);
    state.save(&file).unwrap();
    let e = error_of(simclr::optim::Optimizer::load(cfg.rule(), &file, &model, &device));
    assert!(e.contains("2 tensors") && e.contains("needs 1"), "{e}");
}

// 6 and 7. Folder scans: links into loops, special files.

#[test]
fn a_link_loop_in_an_image_folder_is_scanned_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("a"), "1.png", 1);
    png(&d.join("b"), "2.png", 2);
    std::os::unix::fs::symlink("..", d.join("a/up")).unwrap();
    std::os::unix::fs::symlink("../b", d.join("a/to-b")).unwrap();
    std::os::unix::fs::symlink("..", d.join("b/up")).unwrap();
    let start = Instant::now();
    let ds = data::open(&folder(d), Split::Train).unwrap();
    // Before: ×41 with wrong labels (one loop), exponential (two).
    assert_eq!(labels(ds.as_ref()), vec![0, 1]);
    assert!(start.elapsed() < Duration::from_secs(5));
    let all = data::open(&Source { kind: Some(DatasetKind::UnlabelledFolder), ..folder(d) }, Split::Pretrain).unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn a_fifo_or_a_device_named_like_an_image_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("a"), "1.png", 1);
    let fifo = d.join("a/x.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", d.join("a/zero.png")).unwrap();
    // Before: the loader blocked on the FIFO forever.
    let ds = data::open(&folder(d), Split::Train).unwrap();
    assert_eq!(ds.len(), 1);
    let e = simclr::files::read(&fifo, simclr::files::TEXT).err().unwrap().to_string();
    assert!(e.contains("FIFO"), "{e}");
    let e = simclr::files::read(Path::new("/dev/zero"), simclr::files::ARRAY).err().unwrap().to_string();
    assert!(e.contains("device"), "{e}");
    // As --config, a clear error at once.
    let e = refused(&["pretrain", "--config", fifo.to_str().unwrap()]);
    assert!(e.contains("x.png") && e.contains("FIFO"), "{e}");
}

#[test]
fn pointers_and_manifests_naming_files_elsewhere_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let model = cfg.model(16).init_seeded(0, &simclr::default_device());
    let state = checkpoint::TrainState { step: 1, epoch: 0, seed: 0 };
    let ckpt = checkpoint::save(dir.path(), &cfg, &model, &simclr::optim::Optimizer::new(cfg.rule()), &state).unwrap();
    // `latest` pointing out of checkpoints/ is ignored: the step folder is found by its name.
    std::fs::write(dir.path().join("checkpoints/latest"), "../../../etc").unwrap();
    assert_eq!(checkpoint::latest_intact(dir.path()).unwrap().unwrap().dir, ckpt);
    // A manifest listing a file outside its folder.
    let manifest = ckpt.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("\"state.json\"", "\"../state.json\"");
    std::fs::write(&manifest, text).unwrap();
    let e = checkpoint::verify(&ckpt).err().unwrap().to_string();
    assert!(e.contains("../state.json") && e.contains("not a file of the folder"), "{e}");
}

// 9. Settings at the edges of their types.

#[test]
fn settings_past_their_bounds_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    for (args, flag) in [
        (&["pretrain", "--seed", "9223372036854775808"][..], "--seed"),
        (&["pretrain", "--image-size", "100000"][..], "--image-size"),
        (&["pretrain", "--width", "1e9"][..], "--width"),
        (&["pretrain", "--head-layers", "1000000"][..], "--head-layers"),
        (&["augment", "--samples", "100000", "--png", "/dev/null"][..], "--samples"),
    ] {
        let e = refused(&[args, &["--out", out_s][..]].concat());
        assert!(e.contains(flag), "{args:?}: {e}");
        assert!(!out.join(".lock").exists(), "{args:?} left a lock behind");
    }
    // An epoch count whose steps overflow: before, wrapped to 0 steps and exited 0.
    let e = refused(&["pretrain", "--epochs", "4611686018427387904", "--limit", "128", "--batch-size", "32", "--width", "0.125", "--out", out_s]);
    assert!(e.contains("--epochs"), "{e}");
}

#[test]
fn finetune_refuses_an_empty_subset_and_a_zero_batch() {
    let dir = tempfile::tempdir().unwrap();
    let subset = dir.path().join("subset.txt");
    std::fs::write(&subset, "\n").unwrap();
    let base = ["finetune", "--random-init", "--width", "0.125", "--image-size", "16", "--out", dir.path().to_str().unwrap()];
    let e = refused(&[&base[..], &["--subset", subset.to_str().unwrap()]].concat());
    assert!(e.contains("--subset") && e.contains("names no image"), "{e}");
    let e = refused(&[&base[..], &["--batch-size", "0"]].concat());
    assert!(e.contains("--batch-size 0"), "{e}");
}

// 8. The decoded size of an image is bounded.

#[test]
fn a_large_image_is_shrunk_right_after_decoding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    image::RgbImage::from_pixel(3000, 2000, image::Rgb([9, 99, 199])).save(dir.path().join("a/big.png")).unwrap();
    let ds = data::open(&folder(dir.path()), Split::Train).unwrap();
    let img = ds.image(0).unwrap();
    assert!((img.width * img.height) as u64 <= simclr::data::folder::MAX_PIXELS, "{} x {}", img.width, img.height);
    assert_eq!((img.width, img.height), (2508, 1672), "aspect kept");
}

// 11. A long file list is matched in linear time.

#[test]
fn a_file_list_of_20000_paths_is_matched_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    let bytes = std::fs::read({
        png(dir.path(), "seed.png", 5);
        dir.path().join("seed.png")
    })
    .unwrap();
    let mut list = String::new();
    for i in 0..20_000 {
        std::fs::write(a.join(format!("{i}.png")), &bytes).unwrap();
        list.push_str(&format!("a/{i}.png\n"));
    }
    std::fs::write(dir.path().join("list.txt"), list).unwrap();
    let images = dir.path().to_path_buf();
    std::fs::remove_file(images.join("seed.png")).unwrap();
    let t = Instant::now();
    let src = Source { file_list: Some(images.join("list.txt")), ..folder(&images) };
    assert_eq!(data::open(&src, Split::Train).unwrap().len(), 20_000);
    // Before: 11 s (quadratic); now well under a second of matching (the scan dominates).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

// 11. A pickle asking for a foreign callable anywhere in it is refused, not silently dropped.

#[test]
fn a_pickle_calling_a_function_inside_a_dict_is_refused_by_name() {
    // {"meta": os.system("touch x"), …}: before, read as a file of no tensors (the call dropped).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested.pth");
    let mut pickle = b"\x80\x02}X\x04\x00\x00\x00metacos\nsystem\nX\x07\x00\x00\x00touch x\x85Rs.".to_vec();
    std::fs::write(&file, &pickle).unwrap();
    let e = error_of(simclr::import::read_tensors(&file));
    assert!(e.contains("nested.pth") && e.contains("os.system") && e.contains("nothing was called"), "{e}");
    // The same shape with a data type (a torch.device, as checkpoints carry) is no call to refuse.
    pickle = b"\x80\x02}X\x04\x00\x00\x00metactorch\ndevice\nX\x03\x00\x00\x00cpu\x85Rs.".to_vec();
    std::fs::write(&file, &pickle).unwrap();
    if let Err(e) = simclr::import::read_tensors(&file) {
        assert!(!format!("{e:#}").contains("refused"), "{e:#}");
    }
}

#[test]
fn a_feature_cache_that_cannot_be_written_costs_nothing_but_the_cache() {
    // A cache folder that cannot be created (under a regular file: even root cannot), as with a
    // read-only checkpoint: before, an error blaming --out; now the features are used uncached.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let (cache, out) = (blocker.join("cache"), dir.path().join("out"));
    let args = ["knn", "--random-init", "--width", "0.0625", "--image-size", "16", "--limit", "200", "--k", "5"];
    let o = simclr(&[&args[..], &["--feature-cache", cache.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("top-1"));
}

#[test]
fn a_network_pretrained_on_one_fold_is_not_evaluated_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    for i in 0..40u8 {
        png(&data.join(if i % 2 == 0 { "even" } else { "odd" }), &format!("{i}.png"), i * 6);
    }
    let (data_s, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    let split = |fold: &'static str| ["--dataset", "folder", "--data", data_s, "--test-fraction", "0.25", "--test-fold", fold];
    let o = simclr(&[&["pretrain", "--max-steps", "1", "--batch-size", "8", "--width", "0.125", "--image-size", "8", "--proj-dim", "16", "--out", out_s][..], &split("2")].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Fold 0's test images were fold 2's training images: refused, naming both draws.
    let e = refused(&[&["knn", "--checkpoint", out_s][..], &split("0")].concat());
    assert!(e.contains("--test-fold 2") && e.contains("--test-fold 0") && e.contains("pretrained on"), "{e}");
    let same = simclr(&[&["knn", "--checkpoint", out_s, "--k", "5"][..], &split("2")].concat());
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
}
