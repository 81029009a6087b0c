#!/usr/bin/env python3
"""Our training step beside PyTorch's, alternated in one command, with the ratios.

Each round runs `simclr bench step` once per memory format of ours (`--formats`) and
`scripts/torch_step.py` once per PyTorch layout (NCHW and channels-last) on the same shapes, one
after another; machines here are noisy, so only ratios from one run like this count. Prints every
round's images/s and, at the end, the median over rounds of each ours / PyTorch ratio.

    python3 scripts/vs_pytorch.py --simclr target/tch/release/simclr --device tch-cpu
    python3 scripts/vs_pytorch.py --simclr target/release/simclr --device cpu --formats auto
    python3 scripts/vs_pytorch.py --arch resnet50 --batch-size 64 --image-size 64 --rounds 2
    python3 scripts/vs_pytorch.py --simclr BIN --device cuda:0 --formats auto --arch resnet50 --image-size 224 --batch-size 256

PyTorch runs on the CPU, or on CUDA when our `--device` is `cuda[:N]` (`--torch-device` overrides).

Needs torch and torchvision (e.g. `pip install torch==2.9.0 torchvision==0.24.0 pillow`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(a, memory_format: str) -> float:
    """Images/s of `simclr bench step` in `memory_format`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [a.simclr, "--device", a.device, "--memory-format", memory_format, "--precision", a.precision,
               "bench", "step", "--arch", a.arch, "--batch-size", str(a.batch_size), "--image-size", str(a.image_size),
               "--optimizer", "sgd", "--steps", str(a.steps), "--warmup", str(a.warmup), "--json", out.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.load(open(out.name))["images_per_sec"]


def pytorch(a, channels_last: bool) -> float:
    """Images/s of `scripts/torch_step.py`, NCHW or channels-last."""
    cmd = [sys.executable, os.path.join(HERE, "torch_step.py"), "--arch", a.arch, "--batch-size", str(a.batch_size),
           "--image-size", str(a.image_size), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--device", a.torch_device]
    if channels_last:
        cmd.append("--channels-last")
    if a.precision == "bf16":
        cmd.append("--amp")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_sec"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--simclr", default="target/tch/release/simclr", help="the binary to time")
    p.add_argument("--device", default="tch-cpu")
    p.add_argument("--formats", nargs="+", default=["nchw", "channels-last"], help="our --memory-format values")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"], help="bf16: ours in bf16, PyTorch with autocast")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch-device", help="PyTorch's device (default: cuda:N for our cuda:N, else cpu)")
    p.add_argument("--json", help="also write every measurement and the ratios to this file")
    a = p.parse_args()
    if a.torch_device is None:
        a.torch_device = a.device if a.device.startswith("cuda") else "cpu"

    columns = [f"ours {f}" for f in a.formats] + ["pytorch nchw", "pytorch channels-last"]
    print(f"{a.arch}, batch {a.batch_size} of {a.image_size} px, SGD, {a.precision}, ours on {a.device}, "
          f"PyTorch on {a.torch_device}; images/s", flush=True)
    print("round  " + "  ".join(f"{c:>22}" for c in columns), flush=True)
    rounds = []
    for r in range(a.rounds):
        row = {f"ours {f}": ours(a, f) for f in a.formats}
        row["pytorch nchw"] = pytorch(a, False)
        row["pytorch channels-last"] = pytorch(a, True)
        rounds.append(row)
        print(f"{r + 1:>5}  " + "  ".join(f"{row[c]:>22.1f}" for c in columns), flush=True)
    ratios = {}
    for f in a.formats:
        for t in ["pytorch nchw", "pytorch channels-last"]:
            ratios[f"ours {f} / {t}"] = statistics.median(row[f"ours {f}"] / row[t] for row in rounds)
    for name, value in ratios.items():
        print(f"median ratio {name}: {value:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"settings": vars(a), "rounds": rounds, "median_ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
