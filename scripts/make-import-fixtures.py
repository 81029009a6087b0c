#!/usr/bin/env python3
"""Regenerate tests/fixtures/: narrow torchvision-layout ResNets saved by PyTorch, for `simclr import`.

Each fixture is a ResNet whose state-dict keys are exactly torchvision's (checked against
torchvision.models when it is installed), at a small width so the files stay small, with random
weights and random BN statistics (so inference-mode BN is exercised), saved by torch.save the way
pretrained SimCLR weights are distributed:

- resnet18-w0.125.pth: {"state_dict": sd, "epoch": 100} (as simclr-converter writes them),
  ImageNet stem (7x7/2 conv + max-pool), with the fc classifier;
- resnet50-w0.0625.pth: {"state_dict": {"backbone.*": encoder, "projector.*": head}} (as
  solo-learn writes them), ImageNet stem, no fc.

expected.json holds, for each, the features h (global-average-pooled last stage, eval mode) that
PyTorch computes for the input x[n, c, i, j] = 0.5 + 0.5 sin(0.001 (((n C + c) H + i) W + j)),
N = 2, C = 3, H = W = 64. Run: python3 scripts/make-import-fixtures.py
"""
import json
import math
import os

import torch
import torch.nn as nn

DST = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


class Block(nn.Module):
    def __init__(self, cin, planes, stride, bottleneck):
        super().__init__()
        expansion = 4 if bottleneck else 1
        cout = planes * expansion
        if bottleneck:
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
        else:
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.bottleneck = bottleneck
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.downsample = None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = torch.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet (v1.5) with every channel count scaled by `width`."""

    def __init__(self, depths, bottleneck, width, fc=True):
        super().__init__()
        stem = round(64 * width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for s, depth in enumerate(depths):
            planes = round((64 << s) * width)
            blocks = []
            for i in range(depth):
                blocks.append(Block(cin, planes, 2 if s > 0 and i == 0 else 1, bottleneck))
                cin = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, 10) if fc else None

    def features(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for s in range(4):
            x = getattr(self, f"layer{s + 1}")(x)
        return x.mean(dim=(2, 3))


def randomise(net, gen):
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(100)
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
            elif t.dim() == 1:  # BN gamma
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:  # He (fan-out) normal, as torchvision
                fan_out = t.shape[0] * (t[0, 0].numel() if t.dim() == 4 else 1)
                t.copy_(torch.randn(t.shape, generator=gen) * math.sqrt(2.0 / fan_out))


def check_torchvision_keys(net, arch):
    try:
        import torchvision
    except ImportError:
        return
    ours = [k for k in net.state_dict() if not k.startswith("fc.")]
    theirs = [k for k in getattr(torchvision.models, arch)().state_dict() if not k.startswith("fc.")]
    assert ours == theirs, f"{arch}: key layout differs from torchvision"


def main():
    os.makedirs(DST, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = 2, 3, 64, 64
    x = torch.tensor([0.5 + 0.5 * math.sin(0.001 * i) for i in range(n * c * h * w)], dtype=torch.float64)
    x = x.float().reshape(n, c, h, w)
    expected = {}
    fixtures = [
        ("resnet18-w0.125", "resnet18", [2, 2, 2, 2], False, 0.125),
        ("resnet50-w0.0625", "resnet50", [3, 4, 6, 3], True, 0.0625),
    ]
    for name, arch, depths, bottleneck, width in fixtures:
        net = ResNet(depths, bottleneck, width, fc=not bottleneck)
        check_torchvision_keys(net, arch)
        randomise(net, gen)
        net.eval()
        with torch.no_grad():
            feats = net.features(x)
        sd = net.state_dict()
        if bottleneck:
            dim = feats.shape[1]
            state = {f"backbone.{k}": v for k, v in sd.items()}
            state["projector.0.weight"] = torch.randn(dim, dim, generator=gen)
            state["projector.0.bias"] = torch.zeros(dim)
            torch.save({"state_dict": state}, f"{DST}/{name}.pth")
        else:
            torch.save({"state_dict": sd, "epoch": 100}, f"{DST}/{name}.pth")
        expected[name] = {"arch": arch, "width": width, "h": feats.flatten().tolist(), "dim": feats.shape[1]}
    with open(f"{DST}/expected.json", "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
