//! Data-parallel pretraining over MPI (feature `mpi`; `.ci/run` installs Open MPI and runs this on
//! flex, on libtorch, and its sync-BN check on wgpu): `mpirun -np 2` and `-np 4`
//! reproduce the one-process run on the same global batch (losses and parameters within
//! [`tolerance`]) with sync BN, and differ from it without (so the comparison can fail); a global
//! batch that does not split over the ranks is refused; a killed rank stops the run with a non-zero
//! exit and its last checkpoint resumes. The gradient each rank's z receives from the gathered
//! NT-Xent is the one-process gradient on its rows (examples/gathered_gradient.rs under mpirun),
//! and so are sync BN's output and gradients on both of its paths (examples/sync_bn_gradient.rs).
//! Micro-batches (gradient caching): one process in chunks equals as many ranks without sync BN,
//! and 2 ranks × 2 chunks equal one process in 4 chunks.
#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIMCLR: &str = env!("CARGO_BIN_EXE_simclr");

/// How close K ranks come to one process: on flex the one-process BN is the same kernel as the
/// synced one (measured 6e-8 after 5 steps); on libtorch it is libtorch's own, which sums in
/// another order (measured 1e-5 on the parameters, 6e-6 on the losses), and on wgpu Burn's, against
/// the composed sync BN.
fn tolerance() -> f64 {
    match simclr::device::backend_name(&simclr::default_device()) {
        "flex" => 1e-5,
        _ => 5e-5,
    }
}

/// One compute thread per rank (rayon's for flex, OpenMP's for libtorch).
const THREADS: [(&str, &str); 2] = [("RAYON_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1")];

/// A small run: ResNet-18 at width 1/8 on 16 px views of 64 images, global batch 16, `steps` steps.
fn run_args(out: &Path, steps: usize) -> Vec<String> {
    let args = "pretrain --limit 64 --batch-size 16 --width 0.125 --image-size 16 --proj-dim 32 --quiet --max-steps";
    args.split(' ').map(String::from).chain([steps.to_string(), "--out".into(), out.display().to_string()]).collect()
}

/// `mpirun -np ranks` (as root too, more ranks than cores allowed) with one thread per rank.
fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string()]);
    for (name, value) in THREADS {
        cmd.args(["-x", &format!("{name}={value}")]);
    }
    cmd.arg(SIMCLR);
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("mpirun runs (Open MPI: `apt-get install -y openmpi-bin libopenmpi-dev`)")
}

fn succeeded(out: Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The loss of each step in `run`'s metrics.jsonl.
fn losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter_map(|row| row["loss"].as_f64()).collect()
}

/// The parameters of `run`'s checkpoint after step 5, by name.
fn parameters(run: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(run.join("checkpoints/step-00000005/model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(name, t)| (name, t.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()))
        .collect()
}

/// Largest difference between the same-named values of `a` and `b`.
fn max_difference(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().flat_map(|(name, x)| x.iter().zip(&b[name]).map(|(x, y)| (x - y).abs())).fold(0.0, f32::max)
}

#[test]
fn two_and_four_ranks_reproduce_one_process_with_sync_bn_and_differ_without() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("one");
    let mut one = Command::new(SIMCLR);
    one.args(run_args(&alone, 5)).envs(THREADS);
    succeeded(output(one));
    let (want_losses, want) = (losses(&alone), parameters(&alone));
    assert_eq!(want_losses.len(), 5);

    for ranks in [2, 4] {
        let run = dir.path().join(format!("np{ranks}"));
        let mut cmd = mpirun(ranks);
        cmd.args(run_args(&run, 5));
        succeeded(output(cmd));
        let got = losses(&run);
        assert_eq!(got.len(), 5, "rank 0 alone writes one row a step");
        for (step, (g, w)) in got.iter().zip(&want_losses).enumerate() {
            assert!((g - w).abs() < tolerance(), "{ranks} ranks, step {}: loss {g} vs {w} in one process", step + 1);
        }
        let difference = max_difference(&parameters(&run), &want);
        assert!((difference as f64) < tolerance(), "{ranks} ranks: parameters {difference} away from one process's");
    }

    // Each rank normalising its own 8 images: other losses and parameters, far beyond the tolerance.
    let run = dir.path().join("np2-own-bn");
    let mut cmd = mpirun(2);
    cmd.args(run_args(&run, 5)).args(["--sync-bn", "false"]);
    succeeded(output(cmd));
    let loss_gap = losses(&run).iter().zip(&want_losses).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(loss_gap > 100.0 * tolerance(), "per-rank BN gave the one-process losses within {loss_gap}");
    assert!(max_difference(&parameters(&run), &want) as f64 > 100.0 * tolerance());
}

/// [`parameters`] but BN's running statistics (each rank keeps its own chunk's; one process moves
/// them once a chunk).
fn weights(run: &Path) -> BTreeMap<String, Vec<f32>> {
    parameters(run).into_iter().filter(|(name, _)| !name.contains("running")).collect()
}

/// Runs `run_args(run, 5)` with `extra` flags, alone or under `mpirun -np ranks`; its losses and weights.
fn run_with(run: &Path, ranks: usize, extra: &[&str]) -> (Vec<f64>, BTreeMap<String, Vec<f32>>) {
    let mut cmd = if ranks == 1 { Command::new(SIMCLR) } else { mpirun(ranks) };
    cmd.args(run_args(run, 5)).args(extra).envs(THREADS);
    succeeded(output(cmd));
    (losses(run), weights(run))
}

/// Both losses of each step and both runs' weights within [`tolerance`].
fn assert_same_run(what: &str, (got, got_weights): (Vec<f64>, BTreeMap<String, Vec<f32>>), (want, want_weights): (Vec<f64>, BTreeMap<String, Vec<f32>>)) {
    assert_eq!(got.len(), 5, "{what}: one row a step");
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < tolerance(), "{what}, step {}: loss {g} vs {w}", step + 1);
    }
    let difference = max_difference(&got_weights, &want_weights);
    assert!((difference as f64) < tolerance(), "{what}: weights {difference} apart");
}

#[test]
fn micro_batches_equal_ranks_without_sync_bn_and_compose_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, ranks, extra: &[&str]| run_with(&dir.path().join(name), ranks, extra);
    // One process in chunks of 8 images with both views of an image in a chunk: two ranks of 8
    // images each normalising their own.
    let ranks = run("np2-own-bn", 2, &["--sync-bn", "false"]);
    let chunks = run("chunks-paired", 1, &["--micro-batch", "8", "--chunk-views", "paired"]);
    assert_same_run("chunks of 8 (paired views) against 2 ranks without sync BN", chunks, ranks);
    // 2 ranks × 2 chunks of 4 (views split across chunks): one process in 4 chunks of 4.
    let alone = run("chunks-4", 1, &["--micro-batch", "4"]);
    let both = run("np2-chunks-4", 2, &["--micro-batch", "4", "--sync-bn", "false"]);
    assert_same_run("2 ranks x 2 chunks against 1 process x 4 chunks", both, alone.clone());
    // Different chunks normalise different views: the comparisons above can fail.
    let whole = run("whole", 1, &[]);
    let gap = alone.0.iter().zip(&whole.0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(gap > 100.0 * tolerance(), "chunks of 4 gave the whole batch's losses within {gap}");
}

/// Runs `examples/NAME.rs` (which `cargo test` builds beside the test binaries) under `mpirun -np 2`
/// and `-np 4`; each run must succeed and print `lines_per_rank` lines containing `report` per rank.
fn example_agrees_on_two_and_four_ranks(name: &str, report: &str, lines_per_rank: usize) {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let example = deps.parent().unwrap().join("examples").join(name);
    assert!(example.exists(), "{} is built by `cargo test`", example.display());
    for ranks in [2, 4] {
        let mut cmd = Command::new("mpirun");
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string()]).arg(&example);
        let out = output(cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().filter(|l| l.contains(report)).count(), ranks * lines_per_rank, "{stdout}");
    }
}

#[test]
fn the_gathered_negatives_give_each_rank_the_one_process_gradient_on_its_rows() {
    example_agrees_on_two_and_four_ranks("gathered_gradient", "largest gradient difference", 1);
}

#[test]
fn sync_bn_gives_each_rank_the_one_process_output_and_gradients() {
    // Both sync-BN paths (the device's own and the composed one of wgpu/vulkan), with and without ReLU.
    example_agrees_on_two_and_four_ranks("sync_bn_gradient", "largest differences from one process", 4);
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = mpirun(3);
    cmd.args(run_args(&dir.path().join("run"), 5));
    let out = output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--batch-size 16") && stderr.contains("3 ranks"), "{stderr}");
}

#[test]
fn a_killed_rank_stops_every_rank_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut cmd = mpirun(2);
    cmd.args(run_args(&run, 1000)).args(["--checkpoint-every", "2"]);
    let mut job = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !run.join("checkpoints/latest").exists() {
        assert!(job.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The ranks are mpirun's children: kill the last one.
    let children = Command::new("pgrep").args(["-P", &job.id().to_string()]).output().unwrap();
    let ranks: Vec<String> = String::from_utf8_lossy(&children.stdout).lines().map(String::from).collect();
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    assert!(Command::new("kill").args(["-9", &ranks[1]]).status().unwrap().success());
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "the other rank still runs a minute after the kill");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("signal 9") || stderr.contains("Killed"), "mpirun names the killed rank: {stderr}");

    // One process resumes the two ranks' run from its last intact checkpoint, two steps further.
    let last = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("step-")?.parse::<usize>().ok())
        .max()
        .unwrap();
    let mut resume = Command::new(SIMCLR);
    resume.args(["pretrain", "--resume", "--quiet", "--max-steps", &(last + 2).to_string(), "--out"]).arg(&run);
    let out = output(resume);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join(format!("checkpoints/step-{:08}", last + 2)).exists());
}
