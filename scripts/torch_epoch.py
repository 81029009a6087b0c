#!/usr/bin/env python3
"""PyTorch reference for a whole `simclr pretrain` epoch: a hand-rolled PyTorch SimCLR, for speed ratios.

What a user of PyTorch would write (and what lightly 1.6's SimCLR example does): Fashion-MNIST read
from its IDX files, two views an image through torchvision's PIL transforms (random resized crop,
flip, colour jitter with p = 0.8 at strength s, random grayscale with p = 0.2; no blur), a
`DataLoader` with `--workers` worker processes, the network and NT-Xent of `scripts/torch_step.py`
(ResNet, CIFAR stem at 32 px or less, head 2 layers to 128 with BN), SGD with momentum and weight
decay, channels-last by default. One epoch over the first `--limit` images, the last partial
batch dropped (as ours). Prints one JSON object: the epoch's wall time (first batch requested to
last step done), images/s over it, the time spent waiting for the loader, and the losses.

    python3 scripts/torch_epoch.py --limit 5120 --batch-size 256 --workers 1

Needs torch and torchvision (e.g. `pip install torch==2.9.0 torchvision==0.24.0`).
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import emit, nt_xent, simclr_net  # noqa: E402


def idx_images(path: str, limit: int) -> np.ndarray:
    """The first `limit` images (all when 0) of an IDX3 file, gzip or raw, as uint8 `[n, h, w]`."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: not a file; --data names the folder of Fashion-MNIST's IDX files "
                         "(Debian: apt-get install dataset-fashion-mnist)")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 16:
        raise SystemExit(f"{path}: {len(data)} bytes, shorter than an IDX3 header")
    magic, n, h, w = np.frombuffer(data[:16], dtype=">u4")
    if magic != 0x803:
        raise SystemExit(f"{path}: not an IDX3 image file (magic {magic:#x}, expected 0x803)")
    n = min(n, limit) if limit else n
    if len(data) < 16 + n * h * w:
        raise SystemExit(f"{path}: its header promises {n} images of {h}×{w} but it holds {len(data) - 16} bytes of pixels")
    return np.frombuffer(data[16:16 + n * h * w], dtype=np.uint8).reshape(n, h, w)


class TwoViews(torch.utils.data.Dataset):
    """Each grey image, replicated to RGB as ours does, augmented twice."""

    def __init__(self, images: np.ndarray, size: int, strength: float):
        self.images = images
        s = strength
        self.augment = T.Compose([
            T.RandomResizedCrop(size, scale=(0.08, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i]).convert("RGB")
        return self.augment(image), self.augment(image)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of Fashion-MNIST's IDX files")
    p.add_argument("--limit", type=int, default=5120, help="the first N training images (0: all)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--lr", type=float, default=0.12)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--color-strength", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--nchw", action="store_true", help="the default memory format instead of channels-last")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result to this file")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    raw = os.path.join(a.data, "train-images-idx3-ubyte")
    images = idx_images(raw + ".gz" if os.path.exists(raw + ".gz") or not os.path.exists(raw) else raw, a.limit)
    loader = torch.utils.data.DataLoader(TwoViews(images, a.image_size, a.color_strength), batch_size=a.batch_size,
                                         shuffle=True, drop_last=True, num_workers=a.workers)
    memory_format = torch.contiguous_format if a.nchw else torch.channels_last
    net = simclr_net(a.arch, a.image_size).to(memory_format=memory_format).train()
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=a.weight_decay)
    losses, waits = [], []
    start = time.perf_counter()
    ready = start
    for v1, v2 in loader:
        waits.append(time.perf_counter() - ready)
        x = torch.cat([v1, v2]).contiguous(memory_format=memory_format)
        loss = nt_xent(net(x), a.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        ready = time.perf_counter()
    wall = time.perf_counter() - start
    if not losses or not all(np.isfinite(losses)):
        raise SystemExit(f"no finite training loss in the epoch ({len(losses)} steps): losses {losses}")
    trained = len(losses) * a.batch_size
    result = {
        "framework": f"pytorch {torch.__version__}, torchvision transforms, {a.workers} loader worker(s)",
        "model": a.arch,
        "channels_last": not a.nchw,
        "threads": torch.get_num_threads(),
        "images": trained,
        "steps": len(losses),
        "epoch_s": wall,
        "images_per_sec": trained / wall,
        "data_wait_s": sum(waits),
        "losses": losses,
    }
    emit(result, a.json)


if __name__ == "__main__":
    main()
