#!/usr/bin/env python3
"""Per-step compute and communication of data-parallel pretraining at K = 1, 2, ... ranks, one
thread per rank, on this machine (docs/distributed.md). For each network and K, runs

    mpirun -np K simclr pretrain --max-steps STEPS ...   (K = 1: simclr alone)

on the built-in images and prints, from rank 0's metrics.jsonl (first two steps left out), the
median step time, the median time rank 0 spent in collectives (`comm_s`: transfers and waiting for
the other rank), the MiB its buffers handed to collectives each step (`comm_mib`) and the images/s
of the global batch. Needs a build with `--features mpi`.

Usage: bench-distributed.py [--simclr target/release/simclr] [--ranks 1 2] [--steps 8]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

# (name, flags): the reference step's network (ResNet-18, CIFAR stem, 32 px) and ResNet-50.
NETWORKS = [
    ("ResNet-18 32 px, batch 64", ["--arch", "resnet18", "--image-size", "32", "--batch-size", "64"]),
    ("ResNet-50 32 px, batch 32", ["--arch", "resnet50", "--image-size", "32", "--batch-size", "32"]),
]


def run(simclr, ranks, steps, flags, out):
    cmd = [simclr, "pretrain", "--quiet", "--online-probe", "false", "--limit", "2048",
           "--max-steps", str(steps), "--optimizer", "sgd", "--lr", "0.1", "--out", out] + flags
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    if ranks > 1:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "RAYON_NUM_THREADS=1",
               "-np", str(ranks)] + cmd
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return [r for r in rows if "loss" in r][2:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--simclr", default="target/release/simclr")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args()
    print("| network | ranks | step s | in collectives s | MiB exchanged / step | images/s |")
    print("|---|---|---|---|---|---|")
    for name, flags in NETWORKS:
        batch = int(flags[flags.index("--batch-size") + 1])
        for ranks in a.ranks:
            with tempfile.TemporaryDirectory() as out:
                rows = run(a.simclr, ranks, a.steps, flags, out)
            step = statistics.median(batch / r["images_per_sec"] for r in rows)
            comm = statistics.median(r.get("comm_s", 0.0) for r in rows)
            mib = statistics.median(r.get("comm_mib", 0.0) for r in rows)
            print(f"| {name} | {ranks} | {step:.3f} | {comm:.3f} | {mib:.1f} | {batch / step:.1f} |")


if __name__ == "__main__":
    main()
