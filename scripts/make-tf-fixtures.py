#!/usr/bin/env python3
"""Writes the TensorFlow checkpoint fixtures of tests/tf_import.rs (tests/fixtures/tf/).

The networks are built by the official SimCLR code itself (google-research/simclr, TF1 `resnet.py`
and `model_util.py`), imported from a checkout given with --official, so that the variable names,
their creation order, the padding and every layer are TensorFlow's and Google's, not ours:

    git clone https://github.com/google-research/simclr /tmp/simclr-official
    git -C /tmp/simclr-official checkout 383d4143fd8cf7879ae10f1046a9baeb753ff438
    pip install tensorflow-cpu tf_keras
    TF_USE_LEGACY_KERAS=1 python3 scripts/make-tf-fixtures.py --official /tmp/simclr-official

Each fixture is a narrow ResNet-50 (width 1/16: 4 stem channels, h of 128) with the v2 projection
head (3 layers, the last BN without beta) and a 10-class supervised head, in inference mode, with
random weights and non-trivial BN statistics (gamma and beta, moving mean and variance all drawn),
saved by tf.train.Saver as `model.ckpt-1` with global_step (and, in v1, the Momentum slots a
training run has). `expected.json` holds the input images (NCHW, RGB in [0, 1]) and TensorFlow's outputs: h,
every head layer, and the logits.

- v1:  no SK, no SE, 34 px inputs (an odd max-pool input);
- sk:  selective kernels (sk_ratio 0.0625), hence the deep stem and average-pool shortcuts, 36 px
       inputs (odd stage sizes 9 and 5: SAME and VALID average pooling with padding);
- se:  squeeze-excitation (se_ratio 0.25), 36 px inputs;
- resize_bicubic.json: TF1's resize_bicubic (the official evaluation's resize) of a random image.

TensorFlow is needed only to run this script, never by the tests.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

FIXTURES = {
    # name: (sk_ratio, se_ratio, image side, classifier input: head layer)
    "v1": (0.0, 0.0, 34, 0),
    "sk": (0.0625, 0.0, 36, 1),
    "se": (0.0, 0.25, 36, 0),
}
WIDTH = 0.0625
CLASSES = 10
BATCH = 2


def build(tf, resnet, model_util, FLAGS, sk, se, side, selector, seed):
    FLAGS.sk_ratio = sk
    FLAGS.se_ratio = se
    FLAGS.ft_proj_selector = selector
    tf.set_random_seed(seed)
    images = tf.placeholder(tf.float32, [BATCH, side, side, 3])
    model = resnet.resnet_v1(50, WIDTH, cifar_stem=False)
    with tf.variable_scope("base_model"):
        h = model(images, is_training=False)
    selected = model_util.projection_head(h, is_training=False)
    logits = model_util.supervised_head(selected, CLASSES, is_training=False)
    graph = tf.get_default_graph()
    layers = []
    for j in range(FLAGS.num_proj_layers):
        out = graph.get_tensor_by_name("head_contrastive/nl_%d/nl_%d_out:0" % (j, j))
        layers.append(tf.nn.relu(out) if j < FLAGS.num_proj_layers - 1 else out)
    return images, h, layers, logits


def randomise(tf, sess, rng):
    """Every variable drawn so that no layer is an identity: BN gamma in [0.5, 1.5] (the blocks'
    last BN included, which the code initialises to 0), beta, moving mean and kernels nonzero,
    moving variance in [0.5, 1.5]."""
    for v in tf.global_variables():
        shape = v.shape.as_list()
        name = v.op.name
        if name == "global_step" or "Momentum" in name:
            value = rng.normal(0, 0.01, shape) if "Momentum" in name else 1
        elif name.endswith("gamma") or name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("beta") or name.endswith("moving_mean") or name.endswith("bias"):
            value = rng.normal(0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0, (2.0 / fan_in) ** 0.5, shape)
        v.load(np.asarray(value, dtype=v.dtype.as_numpy_dtype), sess)


def write(out, name, official):
    sys.path.insert(0, official)
    import tensorflow.compat.v1 as tf
    from absl import flags

    tf.disable_v2_behavior()
    import resnet  # the official code
    import model_util

    FLAGS = flags.FLAGS
    if not FLAGS.is_parsed():
        flags.DEFINE_bool("global_bn", False, "")
        flags.DEFINE_float("batch_norm_decay", 0.9, "")
        flags.DEFINE_float("sk_ratio", 0.0, "")
        flags.DEFINE_float("se_ratio", 0.0, "")
        flags.DEFINE_string("train_mode", "finetune", "")
        flags.DEFINE_integer("fine_tune_after_block", -1, "")
        flags.DEFINE_string("proj_head_mode", "nonlinear", "")
        flags.DEFINE_integer("proj_out_dim", 16, "")
        flags.DEFINE_integer("num_proj_layers", 3, "")
        flags.DEFINE_integer("ft_proj_selector", 0, "")
        FLAGS(["make-tf-fixtures"])
    sk, se, side, selector = FIXTURES[name]
    seed = sorted(FIXTURES).index(name)
    tf.reset_default_graph()
    images, h, layers, logits = build(tf, resnet, model_util, FLAGS, sk, se, side, selector, seed)
    step = tf.train.get_or_create_global_step()
    if name == "v1":
        # A training step's slots (never run): the importer must skip `*/Momentum`.
        loss = tf.reduce_sum(logits) + tf.reduce_sum(layers[-1])
        tf.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (BATCH, side, side, 3)).astype(np.float32)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        randomise(tf, sess, rng)
        got = sess.run({"h": h, "layers": layers, "logits": logits}, {images: x})
        tf.train.Saver().save(sess, os.path.join(folder, "model.ckpt"), global_step=1, write_meta_graph=False)
    for stale in ("checkpoint",):
        path = os.path.join(folder, stale)
        if os.path.exists(path):
            os.remove(path)
    expected = {
        "sk_ratio": sk,
        "se_ratio": se,
        "width": WIDTH,
        "classifier_input": selector,
        "images": {"shape": [BATCH, 3, side, side], "data": x.transpose(0, 3, 1, 2).ravel().tolist()},
        "h": {"shape": list(got["h"].shape), "data": got["h"].ravel().tolist()},
        "head": [{"shape": list(a.shape), "data": a.ravel().tolist()} for a in got["layers"]],
        "logits": {"shape": list(got["logits"].shape), "data": got["logits"].ravel().tolist()},
        "made_by": "scripts/make-tf-fixtures.py, TensorFlow %s, google-research/simclr resnet.py" % tf.__version__,
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(name, "h", got["h"].shape, "logits", got["logits"].shape, "->", folder)


def write_resize(out):
    """TF1's resize_bicubic as the official `center_crop` calls it (no align_corners, no half-pixel
    centres) on a random 3-channel image, down and up: tests/augment.rs compares ours."""
    import tensorflow.compat.v1 as tf

    rng = np.random.default_rng(7)
    image = rng.uniform(0, 1, (11, 9, 3)).astype(np.float32)
    cases = []
    for h, w in [(5, 4), (16, 13), (11, 9), (7, 7)]:
        with tf.Session(graph=tf.Graph()) as sess:
            got = sess.run(tf.image.resize_bicubic(image[None], [h, w]))[0]
        cases.append({"height": h, "width": w, "data": got.transpose(2, 0, 1).ravel().tolist()})
    with open(os.path.join(out, "resize_bicubic.json"), "w") as f:
        json.dump({"image": {"shape": [3, 11, 9], "data": image.transpose(2, 0, 1).ravel().tolist()}, "resized": cases}, f)
    print("resize_bicubic ->", out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="a checkout of google-research/simclr")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tf"))
    args = parser.parse_args()
    for name in FIXTURES:
        write(args.out, name, os.path.abspath(args.official))
    write_resize(args.out)


if __name__ == "__main__":
    main()
