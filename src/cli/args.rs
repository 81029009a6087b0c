//! The flags of every command: clap's definitions, with the help each `--help` prints.

use clap::{Parser, Subcommand};
use simclr::commands::{ClassifierOptimArgs, DistillArgs, EvalArgs, FeatureArgs, Solver, SplitArg, SubsetArgs};
use simclr::config::{AugmentArgs, ConfigArgs, DataArgs, ModelArgs, RunArgs};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "simclr", version, about = "SimCLR contrastive self-supervised learning (Chen et al. 2020) in Rust")]
pub struct Cli {
    /// Hide the progress bars (also hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Compute device among the backends compiled in: auto, cpu, flex, tch-cpu, cuda[:N] (feature
    /// tch), vulkan[:N] (feature vulkan), wgpu[:N] (feature wgpu).
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// Arithmetic of the encoder: f32 (the default), or bf16 (bfloat16 convolutions and
    /// activations, f32 accumulation, weights, head and loss, as under PyTorch's autocast; libtorch
    /// devices only; measured 1.5x faster than f32 on a GPU and 2.7x on a CPU with AMX, but slower
    /// than f32 on CPUs without AMX, where it warns at start-up).
    /// Pretraining records it in OUT/config.toml: --resume and --config reruns keep it unless given.
    #[arg(long, global = true, value_enum)]
    pub precision: Option<simclr::device::Precision>,
    /// Memory order of the activations: auto (channels-last on libtorch, which runs oneDNN's and
    /// cuDNN's NHWC convolutions; NCHW elsewhere), nchw, or channels-last (libtorch and flex).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub memory_format: simclr::device::MemoryFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Pretrain an encoder with the SimCLR objective.
    Pretrain {
        /// TOML config file (flags override its values).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A published recipe by name (`simclr recipes` lists them): its settings, overridden by
        /// --config and by the flags.
        #[arg(long)]
        recipe: Option<String>,
        /// Continue from the latest checkpoint in --out (its config.toml is used unless --config is
        /// given; where it is gone, the checkpoint's own). Without it, an --out holding a run is refused.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// The published recipes `pretrain --recipe` takes: each one's settings and their source.
    Recipes,
    /// Linear evaluation: a logistic-regression classifier on frozen features.
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png) [default: runs/linear-eval]")))]
    LinearEval {
        /// Solver: lbfgs (to convergence, L2 chosen on held-out train) or sgd.
        #[arg(long, value_enum, default_value = "lbfgs")]
        solver: Solver,
        /// SGD solver: epochs over the cached features.
        #[arg(long, default_value_t = 30)]
        sgd_epochs: usize,
        /// SGD solver: peak learning rate.
        #[arg(long, default_value_t = 0.1)]
        sgd_lr: f64,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Weighted kNN classification on frozen features (cosine similarity).
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png) [default: runs/knn]")))]
    Knn {
        /// Neighbours that vote.
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// Temperature of the vote weights.
        #[arg(long, default_value_t = 0.1)]
        knn_temperature: f32,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Fine-tune the encoder and a new classifier on a fraction of the labels.
    #[command(mut_arg("out", |a| a.help("Output folder (report.json, confusion.png, the subset file) [default: runs/finetune]")))]
    Finetune {
        #[command(flatten)]
        subset: SubsetArgs,
        #[command(flatten)]
        eval: EvalArgs,
        #[command(flatten, next_help_heading = "Fine-tuning optimisation")]
        optim: ClassifierOptimArgs,
    },
    /// SimCLR v2's third stage: train a student (the teacher's network without projection head,
    /// or a smaller one) from scratch on a fine-tuned teacher's class probabilities on every
    /// training image; checkpoints in OUT/checkpoints, scored beside the teacher.
    #[command(mut_arg("out", |a| a.help("Output folder (the student's checkpoints, report.json, confusion.png) [default: runs/distill]")))]
    Distill {
        #[command(flatten)]
        distill: DistillArgs,
        /// The dataset, as for `pretrain`: the images pretraining sees are distilled on (STL-10:
        /// unlabelled and train), its test split scores.
        #[command(flatten, next_help_heading = "Data")]
        data: DataArgs,
        #[command(flatten, next_help_heading = "Run")]
        run: RunArgs,
        #[command(flatten, next_help_heading = "Distillation optimisation")]
        optim: ClassifierOptimArgs,
    },
    /// Compare two classifiers image by image on their shared test images (McNemar's exact test):
    /// the --out folders of two linear-eval, knn, finetune or distill runs.
    Compare {
        /// The first run's folder (its test_predictions.npy and test_labels.npy).
        a: PathBuf,
        /// The second run's folder.
        b: PathBuf,
    },
    /// Write the representation of every image as features.npy (+ labels.npy, and index.npy: each
    /// row's image index), for `simclr search` and other tools.
    #[command(mut_arg("out", |a| a.help("Output folder (features.npy, labels.npy, index.npy, report.json) [default: runs/embed]")))]
    #[command(mut_arg("feature_cache", |a| a.hide(true)))]
    Embed {
        /// Which split to embed.
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
        /// Also draw a 2-D map of the embeddings (first two principal components, coloured by
        /// class) into this PNG file.
        #[arg(long)]
        map: Option<PathBuf>,
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// A 2-D map (first two principal components, coloured by class) of the embeddings `simclr
    /// embed` wrote into a folder.
    PlotEmbeddings {
        /// The folder `simclr embed --out` wrote (features.npy, labels.npy, report.json).
        dir: PathBuf,
        /// The PNG file to write.
        #[arg(long, default_value = "map.png")]
        png: PathBuf,
    },
    /// The nearest neighbours of a row or an image file among the embeddings `simclr embed` wrote,
    /// by cosine similarity: exact, or with an HNSW index saved beside them; labels and files beside
    /// each hit, and a PNG strip of the query and its hits.
    Search(simclr::search::SearchArgs),
    /// Import a TensorFlow checkpoint of the official SimCLR code (Google's released v1/v2 models:
    /// encoder and projection head) or a ResNet encoder saved by PyTorch (torchvision names) as a
    /// checkpoint folder for --checkpoint; depth, width, stem, selective kernels and
    /// squeeze-excitation are read from the weights.
    #[command(mut_arg("out", |a| a.help("Output folder, the checkpoint for --checkpoint [default: runs/imported]")))]
    #[command(mut_arg("zero_init_residual", |a| a.hide(true)), mut_arg("padding", |a| a.hide(true)))]
    Import {
        /// A TensorFlow checkpoint (its prefix, e.g. `r50_1x_sk1/model.ckpt-250228`, reading
        /// PREFIX.index and PREFIX.data-*), a file written by torch.save (state dict or a
        /// checkpoint holding one), or .safetensors.
        #[arg(long)]
        weights: PathBuf,
        /// Prefix of the encoder's keys in a PyTorch file, nested dictionaries joined by dots
        /// (e.g. `state_dict.backbone.`); found by itself when the file holds one ResNet.
        #[arg(long)]
        prefix: Option<String>,
        /// TensorFlow checkpoint: load the moving averages of the weights (`ema_model/…`) instead
        /// of the weights.
        #[arg(long)]
        ema: bool,
        /// TensorFlow checkpoint: the layer its supervised head reads (0: h, as SimCLR v1's models
        /// and v2's pretrained ones with their linear-evaluation head; 1: head layer 1, as v2's
        /// fine-tuned models, the official --ft_proj_selector=1). `predict` classifies with it.
        #[arg(long, default_value_t = 0)]
        classifier_layer: usize,
        /// The head (drawn from --seed) and input size; --arch, --width and --stem, if given, must
        /// agree with the weights.
        #[command(flatten, next_help_heading = "Model")]
        model: ModelArgs,
        /// Seed of the head and output folder.
        #[command(flatten, next_help_heading = "Run")]
        run: RunArgs,
    },
    /// Render a PNG grid of augmented views of one image (paper Fig. 3/4).
    #[command(mut_arg("limit", |a| a.hide(true)), mut_arg("strict", |a| a.hide(true)), mut_arg("one_branch", |a| a.hide(true)))]
    Augment {
        /// An image file; without it, image --index of the dataset is used.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Index of the dataset image to show.
        #[arg(long, default_value_t = 0)]
        index: usize,
        /// Samples per row.
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Output PNG file.
        #[arg(long, default_value = "augment.png")]
        png: PathBuf,
        /// Side of the views in pixels (0: the image's longer side, at most 224, as `pretrain`).
        #[arg(long, default_value_t = 0)]
        image_size: usize,
        /// Seed of the views.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The dataset the image comes from (without --image).
        #[command(flatten, next_help_heading = "Data")]
        data: DataArgs,
        /// The augmentation, as for `pretrain`.
        #[command(flatten, next_help_heading = "Augmentation")]
        augment: AugmentArgs,
    },
    /// Throughput benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
        /// Also write the results as JSON to this file.
        #[arg(long, global = true)]
        json: Option<PathBuf>,
    },
    /// Classify image files with a checkpoint's classifier (a pretraining run's online probe, or
    /// the supervised head of an imported TensorFlow checkpoint): each image's most probable
    /// classes.
    Predict {
        /// Checkpoint folder, or a pretraining run's --out folder (its latest checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Image files (preprocessed as evaluation: the centre 87.5%, resized to the network's side).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Classes shown per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Class names, one a line in class order (e.g. ImageNet's 1000 for the released models);
        /// default: the checkpoint's dataset's, or `class N`.
        #[arg(long)]
        class_names: Option<PathBuf>,
        /// Also write the predictions as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Write a checkpoint's network for other tools: `--format torchvision`, the encoder as a
    /// .safetensors with torchvision's ResNet names that torchvision.models.resnet18/50 loads with
    /// strict=True; `--format onnx`, the network up to --layer as ONNX (inference mode, dynamic batch).
    Export {
        /// Checkpoint folder, or a pretraining run's --out folder (its latest checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// What to write.
        #[arg(long, value_enum, default_value = "torchvision")]
        format: simclr::export::Format,
        /// Network output (onnx only): h (the encoder), z (encoder and head) or head:K.
        #[arg(long, default_value = "h")]
        layer: simclr::eval::Layer,
        /// Output file [default: encoder.safetensors, or encoder.onnx for --format onnx].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draw the training curves of one or more pretraining runs into one PNG (runs overlaid): loss,
    /// contrastive accuracy, learning rate, online-probe and kNN accuracy against the step.
    Plot {
        /// Pretraining --out folders (each holds metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG file.
        #[arg(long, default_value = "curves.png")]
        png: PathBuf,
    },
    /// Reproduce one of the paper's findings as a grid of pretraining + linear-evaluation cells:
    /// OUT/report.md (tables beside the paper's numbers, whether each direction holds), PNG
    /// figures, results.json; finished cells are kept, a killed cell resumes from its checkpoint.
    Ablate(simclr::ablate::AblateArgs),
    /// Pretrain on the built-in Fashion-MNIST subset, then compare a linear probe with random init.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Pretraining epochs over the 5,000 built-in images.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Augmentation views/s per core through the whole pipeline, 32 px and 224 px.
    Data {
        /// Seconds to spend on each size.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// One real pretraining epoch (or --max-steps), wall time split into data wait, step,
    /// checkpoint; e.g. `--dataset fashion-mnist --data /usr/share/datasets/fashion-mnist`.
    #[command(mut_arg("out", |a| a.help("Output folder, which must not hold a run [default: a scratch folder, removed afterwards]")), mut_arg("epochs", |a| a.hide(true)))]
    Epoch {
        /// Every setting of `pretrain`.
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Nearest-neighbour search on random vectors: query latency of the exact and the HNSW index,
    /// the HNSW build time and its recall@k against exact search.
    Search {
        /// Rows in the index.
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// Dimension of a row.
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Draw the rows around this many random centres (0: i.i.d. uniform, the hardest case).
        #[arg(long, default_value_t = 0)]
        clusters: usize,
        /// Queries timed (random vectors, not rows of the index).
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Neighbours per query.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        hnsw: simclr::search::HnswParams,
    },
    /// Training-step images/s (forward + backward + optimiser) and peak memory.
    #[command(mut_arg("image_size", |a| a.help("Side of the random input images in pixels (0: 32) [default: 0]")))]
    Step {
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Images per batch (2 views each).
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Images per chunk of the gradient cache, as `pretrain --micro-batch` (0: the whole
        /// batch at once).
        #[arg(long, default_value_t = 0)]
        micro_batch: usize,
        /// With --micro-batch: which views share a chunk, as `pretrain --chunk-views`.
        #[arg(long, value_enum, default_value = "split")]
        chunk_views: simclr::views::ChunkViews,
        /// Optimiser whose update is timed (at LR 0.1).
        #[arg(long, value_enum, default_value = "lars")]
        optimizer: simclr::optim::OptimizerKind,
        /// The network and its input size, as for `pretrain`.
        #[command(flatten, next_help_heading = "Model")]
        model: ModelArgs,
    },
}
