#!/usr/bin/env python3
"""Regenerate data/builtin/: a class-balanced subset of Fashion-MNIST (Zalando, MIT licence).

Takes the first PER_CLASS images of each class, in file order, from the Debian package
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) and writes them as gzip IDX files
that `simclr demo` embeds. Run: python3 scripts/make-builtin.py
"""
import gzip, struct, sys, os

SRC = "/usr/share/datasets/fashion-mnist"
DST = os.path.join(os.path.dirname(__file__), "..", "data", "builtin")

def read(prefix):
    with gzip.open(f"{SRC}/{prefix}-images-idx3-ubyte.gz") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16)); img = f.read()
    with gzip.open(f"{SRC}/{prefix}-labels-idx1-ubyte.gz") as f:
        f.read(8); lab = f.read()
    return n, h * w, img, lab

def write(name, per_class, prefix):
    n, size, img, lab = read(prefix)
    taken, counts = [], [0] * 10
    for i in range(n):
        if counts[lab[i]] < per_class:
            counts[lab[i]] += 1; taken.append(i)
    with gzip.GzipFile(f"{DST}/{name}-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 0x803, len(taken), 28, 28))
        for i in taken: f.write(img[i * size:(i + 1) * size])
    with gzip.GzipFile(f"{DST}/{name}-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x801, len(taken)))
        f.write(bytes(lab[i] for i in taken))

os.makedirs(DST, exist_ok=True)
write("train", 500, "train")
write("t10k", 100, "t10k")
