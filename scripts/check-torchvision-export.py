#!/usr/bin/env python3
"""Load a `simclr export --format torchvision` file into a torchvision-layout ResNet with strict=True
and print its features h (eval mode) as JSON, for tests/export.rs to compare with ours.

The ResNet is the one scripts/make-import-fixtures.py builds (its keys are torchvision's, checked
against torchvision.models when installed), at the width and with the stem the file's metadata
names. The input is that script's: x[n, c, i, j] = 0.5 + 0.5 sin(0.001 (((n C + c) H + i) W + j)),
N = 2, C = 3, H = W = SIZE. Usage: check-torchvision-export.py FILE SIZE
"""
import importlib.util
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn

DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_safetensors(path):
    """The tensors and metadata of a .safetensors file, read without the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    body = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]]) if end > start else torch.zeros(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def main():
    path, size = sys.argv[1], int(sys.argv[2])
    spec = importlib.util.spec_from_file_location("fixtures", os.path.join(os.path.dirname(__file__), "make-import-fixtures.py"))
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    state, meta = load_safetensors(path)
    depths, bottleneck = {"resnet18": ([2, 2, 2, 2], False), "resnet34": ([3, 4, 6, 3], False), "resnet50": ([3, 4, 6, 3], True)}[meta["arch"]]
    net = fixtures.ResNet(depths, bottleneck, float(meta["width"]), fc=False)
    if meta["stem"].startswith("cifar"):
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif meta.get("max_pool_padding", "").startswith("tensorflow"):
        # As `simclr export` prints for networks imported from TensorFlow (even sides).
        net.maxpool = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2))
    net.load_state_dict(state, strict=True)
    net.eval()
    n, c = 2, 3
    x = torch.tensor([0.5 + 0.5 * math.sin(0.001 * i) for i in range(n * c * size * size)], dtype=torch.float64)
    with torch.no_grad():
        h = net.features(x.float().reshape(n, c, size, size))
    print(json.dumps(h.flatten().tolist()))


if __name__ == "__main__":
    main()
