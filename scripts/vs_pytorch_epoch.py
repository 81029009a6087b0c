#!/usr/bin/env python3
"""A whole pretraining epoch of ours beside a PyTorch SimCLR's, alternated in one command, with the ratios.

Where `scripts/vs_pytorch.py` times the bare training step, this times what a user waits for: one
epoch of `simclr pretrain` on Fashion-MNIST (start-up, our loader and augmentation, the loss, the
optimiser and the final checkpoint included) against `scripts/torch_epoch.py` (torchvision's PIL
transforms and a `DataLoader`, the same network, loss and recipe), each as its own process, timed
from launch to exit. The recipe is issue 25's: the first 5,120 training images, batch 256 of 28 px,
SGD lr 0.12 wd 5e-4, τ 0.5, colour strength 0.5, no blur, ResNet-18 CIFAR stem, head 512-512-128.
Each round runs PyTorch, then ours on each `--devices` entry (and `--baseline`, an earlier build,
on each); machines here are noisy, so only
ratios from one run like this count. Prints every round's wall seconds and, at the end, the median
over rounds of each PyTorch / ours wall ratio (above 1: ours is faster).

    python3 scripts/vs_pytorch_epoch.py --simclr target/all/release/simclr --devices flex tch-cpu --rounds 2

Needs torch and torchvision (e.g. `pip install torch==2.9.0 torchvision==0.24.0`); a binary built
with `--features tch` for `tch-cpu`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd: list) -> tuple:
    """Runs `cmd` to completion; its wall seconds and standard output (its error output and exit if it fails)."""
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexited with {run.returncode}:\n{run.stderr.strip()}")
    return time.perf_counter() - start, run.stdout


def ours(a, device: str, binary: str) -> dict:
    """Wall seconds of one `simclr pretrain` epoch of `binary` on `device`, and what its metrics say."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "--device", device, "--quiet", "pretrain", "--dataset", "fashion-mnist", "--data", a.data,
               "--limit", str(a.limit), "--epochs", "1", "--batch-size", str(a.batch_size),
               "--image-size", str(a.image_size), "--optimizer", "sgd", "--lr", "0.12", "--weight-decay", "5e-4",
               "--temperature", "0.5", "--color-strength", "0.5", "--blur", "false", "--arch", a.arch,
               "--out", os.path.join(out, "run")]
        wall, _ = timed(cmd)
        with open(os.path.join(out, "run", "metrics.jsonl")) as f:
            steps = [json.loads(line) for line in f if line.strip()]
    steps = [s for s in steps if "images_per_sec" in s]
    return {"wall_s": wall, "steps": len(steps), "median_images_per_sec": statistics.median(s["images_per_sec"] for s in steps),
            "data_wait_s": sum(s.get("data_wait_s", 0.0) for s in steps), "last_loss": steps[-1]["loss"]}


def pytorch(a) -> dict:
    """Wall seconds of one `scripts/torch_epoch.py` epoch, and what it reports."""
    cmd = [sys.executable, os.path.join(HERE, "torch_epoch.py"), "--data", a.data, "--limit", str(a.limit),
           "--arch", a.arch, "--batch-size", str(a.batch_size), "--image-size", str(a.image_size),
           "--workers", str(a.workers)]
    wall, out = timed(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "steps": r["steps"], "epoch_s": r["epoch_s"], "data_wait_s": r["data_wait_s"],
            "last_loss": r["losses"][-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--simclr", default="target/release/simclr", help="the binary to time")
    p.add_argument("--devices", nargs="+", default=["flex"], help="our --device values (flex, tch-cpu, ...)")
    p.add_argument("--baseline", help="another binary of ours (an earlier build), timed on each device too")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of Fashion-MNIST's IDX files")
    p.add_argument("--limit", type=int, default=5120, help="the first N training images")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--workers", type=int, default=1, help="PyTorch's DataLoader worker processes")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", help="also write every measurement and the ratios to this file")
    a = p.parse_args()
    if a.limit < a.batch_size:
        raise SystemExit(f"--limit {a.limit} is under one batch of {a.batch_size}: raise --limit or lower --batch-size")

    binaries = {f"ours {d}": (d, a.simclr) for d in a.devices}
    if a.baseline:
        binaries.update({f"baseline {d}": (d, a.baseline) for d in a.devices})
    columns = ["pytorch"] + list(binaries)
    print(f"one epoch of {a.limit} Fashion-MNIST images, {a.arch}, batch {a.batch_size} of {a.image_size} px, SGD; "
          f"PyTorch with {a.workers} loader worker(s); wall seconds, launch to exit", flush=True)
    print("round  " + "  ".join(f"{c:>14}" for c in columns), flush=True)
    rounds = []
    for r in range(a.rounds):
        row = {"pytorch": pytorch(a)}
        for column, (device, binary) in binaries.items():
            row[column] = ours(a, device, binary)
        rounds.append(row)
        print(f"{r + 1:>5}  " + "  ".join(f"{row[c]['wall_s']:>14.1f}" for c in columns)
              + f"   (PyTorch's epoch loop alone: {row['pytorch']['epoch_s']:.1f})", flush=True)
    ratios = {f"pytorch / {c}": statistics.median(row["pytorch"]["wall_s"] / row[c]["wall_s"] for row in rounds) for c in binaries}
    for name, value in ratios.items():
        print(f"median ratio {name} (wall): {value:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"settings": vars(a), "rounds": rounds, "median_ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
