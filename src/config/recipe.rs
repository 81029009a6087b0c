//! The published SimCLR recipes by name (`simclr pretrain --recipe NAME`, `simclr recipes`): each a
//! partial config, as a `--config` file would hold it, that a `--config` file and then the flags
//! override; the run's `config.toml` names it (`[run] recipe`). The data are the user's
//! (`--dataset`, `--data`): a recipe sets the network, the augmentations and the optimisation.

use super::ConfigArgs;
use anyhow::{bail, Result};

/// A named set of settings and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct Recipe {
    /// `--recipe NAME`.
    pub name: &'static str,
    /// What it trains, in a line.
    pub what: &'static str,
    /// Where its values are published, and what differs here.
    pub source: &'static str,
    /// The settings, as a config file's TOML.
    pub settings: &'static str,
}

/// Every recipe, in the order `simclr recipes` lists them.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "cifar10",
        what: "the official CIFAR-10 pretraining on one GPU: ResNet-18 (CIFAR stem), batch 512, 1,000 epochs, LARS",
        source: "google-research/simclr README, \"Pretraining\": run.py --train_batch_size=512 --train_epochs=1000 --learning_rate=1.0 --weight_decay=1e-6 --temperature=0.5 --image_size=32 --resnet_depth=18 --use_blur=False --color_jitter_strength=0.5 (LARS, linear LR scaling and 10 warm-up epochs are run.py's defaults)",
        settings: r#"
[model]
arch = "resnet18"
image_size = 32
[augment]
color_strength = 0.5
blur = false
[optim]
batch_size = 512
epochs = 1000
optimizer = "lars"
lr = 1.0
lr_scaling = "linear"
warmup_epochs = 10.0
weight_decay = 1e-6
temperature = 0.5
"#,
    },
    Recipe {
        name: "imagenet",
        what: "the paper's ImageNet pretraining: ResNet-50 at 224 px, batch 4,096, 100 epochs, LARS 0.3 x B/256, tau 0.1",
        source: "paper §B.1 and google-research/simclr README (v1): run.py --train_batch_size=4096 --train_epochs=100 --learning_rate=0.3 --weight_decay=1e-6 --temperature=0.1 --image_size=224 (colour strength 1.0 and blur are its defaults; the paper trains up to 1,000 epochs and advises sqrt LR scaling for small batches)",
        settings: r#"
[model]
arch = "resnet50"
image_size = 224
[augment]
color_strength = 1.0
blur = true
[optim]
batch_size = 4096
epochs = 100
optimizer = "lars"
lr = 0.3
lr_scaling = "linear"
warmup_epochs = 10.0
weight_decay = 1e-6
temperature = 0.1
"#,
    },
    Recipe {
        name: "simclr-v2",
        what: "SimCLR v2's pretraining: ResNet-50 at 224 px with a 3-layer head, batch 4,096, LARS 0.1 x sqrt(B), weight decay 1e-4; fine-tune from head layer 1 (`simclr finetune --from-head-layer 1`)",
        source: "SimCLR v2 paper (arXiv 2006.10029) §2-3 and google-research/simclr tf2 README: run.py --train_batch_size=4096 --train_epochs=100 --temperature=0.1 --learning_rate=0.1 --learning_rate_scaling=sqrt --weight_decay=1e-4 (3 projection layers, fine-tuning from the first); the selective-kernel encoders of the released models are not built here yet",
        settings: r#"
[model]
arch = "resnet50"
image_size = 224
head_layers = 3
[augment]
color_strength = 1.0
blur = true
[optim]
batch_size = 4096
epochs = 100
optimizer = "lars"
lr = 0.1
lr_scaling = "sqrt"
warmup_epochs = 10.0
weight_decay = 1e-4
temperature = 0.1
"#,
    },
    Recipe {
        name: "lightly-cifar10",
        what: "lightly's CIFAR-10 benchmark SimCLR: ResNet-18 (CIFAR stem), 512-512-128 head, SGD 0.06 x B/128 with cosine decay, weight decay 5e-4, tau 0.5, no blur",
        source: "lightly benchmarks (cifar10_benchmark.py, SimCLRModel): SGD lr 6e-2 x batch/128, momentum 0.9, weight decay 5e-4, CosineAnnealingLR, NTXentLoss (tau 0.5), SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0), batch 512, 200 epochs; here the SGD is Nesterov's and weight decay skips BN parameters and biases",
        settings: r#"
[model]
arch = "resnet18"
image_size = 32
head_layers = 2
proj_dim = 128
[augment]
color_strength = 0.5
blur = false
[optim]
batch_size = 512
epochs = 200
optimizer = "sgd"
lr = 0.12
lr_scaling = "linear"
warmup_epochs = 0.0
momentum = 0.9
weight_decay = 5e-4
temperature = 0.5
"#,
    },
    Recipe {
        name: "quick-cpu",
        what: "a first run on a CPU: ResNet-18 at width 0.25, one epoch of batch 256, LARS 1.0 (13 min for Fashion-MNIST's 60,000 images on 2 cores)",
        source: "this project's README, \"Results on Fashion-MNIST\" (ResNet-18 at width 0.25, 81.55% linear evaluation after one epoch)",
        settings: r#"
[model]
arch = "resnet18"
width = 0.25
[augment]
color_strength = 0.5
[optim]
batch_size = 256
epochs = 1
optimizer = "lars"
lr = 1.0
warmup_epochs = 0.1
temperature = 0.5
"#,
    },
];

impl Recipe {
    /// The recipe named `name`; an error listing the names otherwise.
    pub fn named(name: &str) -> Result<&'static Recipe> {
        match RECIPES.iter().find(|r| r.name == name) {
            Some(recipe) => Ok(recipe),
            None => bail!("--recipe {name}: no such recipe; choose one of {} (`simclr recipes` shows them)", RECIPES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")),
        }
    }

    /// Its settings as flags would give them.
    pub fn args(&self) -> ConfigArgs {
        toml::from_str(self.settings).expect("every recipe is a valid partial config (tests/config.rs)")
    }
}
