#!/usr/bin/env python3
"""PyTorch reference for `simclr bench step`: the same training step in PyTorch, for speed ratios.

ResNet (torchvision; CIFAR stem — 3x3/1 conv, no max-pool — for views of 32 px or less, as
`--stem auto`), the SimCLR projection head (linear, BN, ReLU, linear, BN: 2 layers to 128), NT-Xent
over 2B views, one SGD step with momentum; inputs are random views made outside the timed region.
Prints one JSON object with the median images/s of the timed steps (`--json FILE` also writes it).

    python3 scripts/torch_step.py --arch resnet18 --batch-size 128 --image-size 32
    python3 scripts/torch_step.py --arch resnet50 --image-size 224 --device cuda --amp --channels-last

Needs torch and torchvision (e.g. `pip install torch==2.9.0 torchvision==0.24.0`).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def simclr_net(arch: str, image_size: int, proj_dim: int = 128) -> nn.Module:
    encoder = getattr(torchvision.models, arch)()
    if image_size <= 32:
        encoder.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        encoder.maxpool = nn.Identity()
    dim = encoder.fc.in_features
    encoder.fc = nn.Identity()
    head = nn.Sequential(
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        nn.Linear(dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim),
    )
    return nn.Sequential(encoder, head)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (paper eq. 1) over 2N views where view i and i + N are the positive pair."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def emit(result: dict, path) -> None:
    """Prints `result` as one JSON line (the last line of standard output) and writes it to `path` if given."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (2 views each)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", help="also write the result to this file")
    a = p.parse_args()

    device = torch.device(a.device)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    net = simclr_net(a.arch, a.image_size).to(device=device, memory_format=memory_format).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.rand(2 * a.batch_size, 3, a.image_size, a.image_size, device=device)
        x = x.contiguous(memory_format=memory_format)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp):
            loss = nt_xent(net(x), 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    result = {
        "framework": f"pytorch {torch.__version__}",
        "model": a.arch,
        "batch_size": a.batch_size,
        "image_size": a.image_size,
        "device": a.device,
        "amp": a.amp,
        "channels_last": a.channels_last,
        "threads": torch.get_num_threads(),
        "median_step_s": median,
        "images_per_sec": a.batch_size / median,
        "steps_s": times,
    }
    emit(result, a.json)


if __name__ == "__main__":
    main()
