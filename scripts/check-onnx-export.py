#!/usr/bin/env python3
"""Run a `simclr export --format onnx` file through ONNX Runtime and print its output as JSON, for
tests/export.rs to compare with ours. The input is the one the other export checks use:
x[n, c, i, j] = 0.5 + 0.5 sin(0.001 (((n C + c) H + i) W + j)), C = 3, H = W = SIZE.
Usage: check-onnx-export.py FILE SIZE N
"""
import json
import math
import sys

import numpy as np
import onnxruntime


def main():
    path, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x = np.array([0.5 + 0.5 * math.sin(0.001 * i) for i in range(n * 3 * size * size)], dtype=np.float64)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["input"].startswith("[N, 3, H, W] RGB in [0, 1]"), meta
    (out,) = session.run(None, {"input": x.astype(np.float32).reshape(n, 3, size, size)})
    print(json.dumps(out.flatten().tolist()))


if __name__ == "__main__":
    main()
