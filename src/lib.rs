//! SimCLR — "A Simple Framework for Contrastive Learning of Visual Representations"
//! (Chen, Kornblith, Norouzi, Hinton 2020, arXiv 2002.05709; v2: arXiv 2006.10029) on Burn.
//!
//! The modules follow the paper and the official code's layout:
//! [`augment`] (data augmentation, §3 / App. A), [`resnet`] (base encoder f), [`head`] (projection
//! head g), [`model`] (the whole network), [`views`] (the two views' layout, gathered over the ranks), [`loss`] (NT-Xent, eq. 1), [`lars`] and [`optim`]
//! (optimisers), [`schedule`] (LR scaling, warm-up + cosine), [`train`] (the training step and its objectives), [`pretrain`] (the training loop) and
//! its per-epoch [`monitor`]s, [`eval`] (the evaluation protocols: linear evaluation, kNN,
//! fine-tuning, embeddings, reports), [`import`] (pretrained weights from PyTorch) and [`export`]
//! (ours out, under torchvision's names), [`checkpoint`] (sealed by a [`manifest`]), [`config`],
//! [`data`] (datasets and the view loader), [`curves`] (training curves as pictures).
//! Apart from the paper's concepts: [`ops`] (our convolution and batch-norm kernels), [`device`]
//! (backend choice), [`distributed`] (data-parallel runs over MPI), [`interrupt`] (Ctrl-C and SIGTERM) and [`malloc`] (allocator settings).

pub mod ablate;
pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod curves;
pub mod data;
pub mod demo;
pub mod device;
pub mod distill;
pub mod distributed;
pub mod eval;
pub mod export;
pub mod files;
pub mod grid;
pub mod head;
pub mod image;
pub mod import;
pub mod interrupt;
pub mod lars;
pub mod loss;
pub mod malloc;
pub mod manifest;
pub mod model;
pub mod monitor;
pub mod ops;
pub mod optim;
pub mod pretrain;
pub mod progress;
pub mod resnet;
pub mod schedule;
pub mod search;
pub mod tensorboard;
pub mod tfcheckpoint;
pub mod train;
pub mod views;

/// The compute device of this build: the first enabled backend (`flex`, pure-Rust CPU, by default).
pub fn default_device() -> burn::tensor::Device {
    burn::tensor::Device::default()
}

/// The values of a float tensor as `f32`, row-major.
pub(crate) fn floats<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("a float tensor converts to f32")
}

/// Number of trainable weights of a module, as PyTorch counts them: every float parameter except
/// BN running statistics (which Burn's `num_params` includes).
pub fn num_trainable_params<M: burn::module::Module>(module: &M) -> usize {
    struct Counter(usize);
    impl TrainableVisitor for Counter {
        fn visit<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0 += param.shape().num_elements();
        }
    }
    let mut counter = Counter(0);
    visit_trainable(module, &mut counter);
    counter.0
}

/// What [`visit_trainable`] calls for each trainable parameter.
pub(crate) trait TrainableVisitor {
    fn visit<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>);
}

/// Calls `visitor` with every float parameter of `module` except the BN running statistics, in
/// the module's visiting order.
pub(crate) fn visit_trainable<M: burn::module::Module, V: TrainableVisitor>(module: &M, visitor: &mut V) {
    struct Trainable<'a, V> {
        path: Vec<String>,
        inner: &'a mut V,
    }
    impl<V: TrainableVisitor> burn::module::ModuleVisitor for Trainable<'_, V> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            if !matches!(self.path.last().map(String::as_str), Some("running_mean" | "running_var")) {
                self.inner.visit(param);
            }
        }
    }
    module.visit(&mut Trainable { path: Vec::new(), inner: visitor });
}
