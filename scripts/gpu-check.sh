#!/usr/bin/env bash
# GPU check (performance issue, item 6): `simclr bench step` for ResNet-50 at 224 px, batch 256, on a
# GPU backend, beside the same step in PyTorch (bf16 AMP + channels_last, and fp32 NCHW), as one table;
# both sides use SGD with momentum, as scripts/torch_step.py does.
#
#   scripts/gpu-check.sh [SIMCLR_BINARY]
#
# Without a binary, one is built here: DEVICE=cuda:0 builds the `tch` feature (libtorch from the
# Python torch, LIBTORCH_USE_PYTORCH=1; torch-sys wants torch 2.9.0), any other DEVICE the `vulkan`
# feature. A GPU machine that cannot reach crates.io takes a binary built elsewhere
# (`cargo build --release --features vulkan`). PyTorch needs torch + torchvision (scripts/torch_step.py).
# Settings (environment): DEVICE (vulkan), TORCH_DEVICE (cuda), ARCH (resnet50), SIZE (224),
# BATCH (256), STEPS (10), WARMUP (2), OUT (a new temporary folder; the JSON files go there).
# CPU smoke test: DEVICE=cpu TORCH_DEVICE=cpu ARCH=resnet18 SIZE=32 BATCH=16 STEPS=2 scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-vulkan} TORCH_DEVICE=${TORCH_DEVICE:-cuda}
ARCH=${ARCH:-resnet50} SIZE=${SIZE:-224} BATCH=${BATCH:-256} STEPS=${STEPS:-10} WARMUP=${WARMUP:-2}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

bin=${1:-}
if [ -z "$bin" ]; then
  case "$DEVICE" in
    cuda*) LIBTORCH_USE_PYTORCH=1 cargo build --release --features tch ;;
    cpu|flex) cargo build --release ;;
    *) cargo build --release --features vulkan ;;
  esac
  bin=target/release/simclr
fi

common=(--arch "$ARCH" --image-size "$SIZE" --batch-size "$BATCH" --steps "$STEPS" --warmup "$WARMUP")
"$bin" --quiet --device "$DEVICE" bench step "${common[@]}" --optimizer sgd --json "$OUT/simclr.json" >&2
python3 scripts/torch_step.py "${common[@]}" --device "$TORCH_DEVICE" --amp --channels-last --json "$OUT/torch-amp-cl.json" >&2
python3 scripts/torch_step.py "${common[@]}" --device "$TORCH_DEVICE" --json "$OUT/torch-fp32.json" >&2

python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
ours = json.load(open(f"{out}/simclr.json"))
rows = [("simclr " + ours["device"], ours)]
for name, label in [("torch-amp-cl", "PyTorch bf16 AMP, channels_last"), ("torch-fp32", "PyTorch fp32 NCHW")]:
    rows.append((label, json.load(open(f"{out}/{name}.json"))))
print(f"{ours['model']}, {ours['image_size']} px, batch {ours['batch_size']}, SGD (JSON in {out})")
print(f"| {'run':<40} | {'images/s':>9} | {'simclr / this':>13} |")
print(f"|{'-' * 42}|{'-' * 11}|{'-' * 15}|")
for label, r in rows:
    print(f"| {label:<40} | {r['images_per_sec']:>9.1f} | {ours['images_per_sec'] / r['images_per_sec']:>12.2f}x |")
EOF
