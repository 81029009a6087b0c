#!/usr/bin/env bash
# GPU check (issue 25): first that a GPU computes what the CPU does, then the speed of the training
# step beside PyTorch's, as one table of ratios from this one run.
#
#   scripts/gpu-check.sh [SIMCLR_BINARY]
#
# 1. Agreement: a short pretraining (ResNet-18, builtin Fashion-MNIST, batch 64) checkpointed on
#    the CPU, then resumed from that checkpoint once on the CPU and once on the GPU, in f32 and
#    (libtorch) bf16: the per-step losses after the checkpoint must agree within TOLERANCE
#    (relative; cuDNN convolutions use TF32 by default, as in PyTorch). Skipped when DEVICE is not
#    a GPU.
# 2. Speed: `simclr bench step` for ARCH at SIZE px, batch BATCH, in the device's auto memory
#    format (channels-last on libtorch), beside the same step in PyTorch (scripts/torch_step.py,
#    NCHW and channels_last), SGD with momentum, ROUNDS rounds alternating ours and PyTorch's
#    (scripts/vs_pytorch.py): ours in f32 against PyTorch's fp32, and on libtorch ours in bf16
#    against PyTorch's bf16 autocast.
# 3. Big batches (issue 38): our step at batch BIG in chunks of MICRO (`--micro-batch`, gradient
#    caching) in the last precision of step 2, images/s and peak memory, beside PyTorch's whole
#    step at the largest batch of MICRO, 2·MICRO, … up to BIG that fits the device (torch_step.py,
#    channels_last, bf16 autocast where ours is bf16).
#
# Without a binary, one is built here: DEVICE=cuda:0 builds the `tch` feature (libtorch from the
# Python torch, LIBTORCH_USE_PYTORCH=1; torch-sys wants torch 2.9.0), any other DEVICE the `vulkan`
# feature. A GPU machine that cannot reach crates.io takes a binary built elsewhere against the
# libtorch of that machine's Python torch (docs/performance.md, "On a GPU", says how); the binary
# finds that libtorch through LD_LIBRARY_PATH, which this script points at the Python torch's lib.
# PyTorch needs torch + torchvision (scripts/torch_step.py).
# Settings (environment): DEVICE (cuda:0), TORCH_DEVICE (cuda), ARCH (resnet50), SIZE (224),
# BATCH (256), STEPS (10), WARMUP (2), ROUNDS (2), TOLERANCE (0.01), BIG (4096), MICRO (256), OUT
# (a new temporary folder: the JSON files and the pretraining runs go there).
# CPU smoke test: DEVICE=tch-cpu TORCH_DEVICE=cpu ARCH=resnet18 SIZE=32 BATCH=16 STEPS=2 ROUNDS=1 BIG=64 MICRO=16 \
#   scripts/gpu-check.sh target/tch/release/simclr
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda:0} TORCH_DEVICE=${TORCH_DEVICE:-cuda}
ARCH=${ARCH:-resnet50} SIZE=${SIZE:-224} BATCH=${BATCH:-256} STEPS=${STEPS:-10} WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2} TOLERANCE=${TOLERANCE:-0.01} BIG=${BIG:-4096} MICRO=${MICRO:-256}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

bin=${1:-}
if [ -z "$bin" ]; then
  case "$DEVICE" in
    cuda*|tch-cpu) LIBTORCH_USE_PYTORCH=1 cargo build --release --features tch ;;
    cpu|flex) cargo build --release ;;
    *) cargo build --release --features vulkan ;;
  esac
  bin=target/release/simclr
fi
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "(no GPU)")' >&2

# 1. Agreement of the GPU with the CPU, from one checkpoint.
precisions=(f32) cpu=cpu agreement=0
if [[ "$DEVICE" == cuda* ]]; then precisions=(f32 bf16) cpu=tch-cpu; fi
if [[ "$DEVICE" == cuda* || "$DEVICE" == vulkan* || "$DEVICE" == wgpu* ]]; then
  run=(--quiet pretrain --dataset builtin --limit 256 --batch-size 64 --arch resnet18 --image-size 32 --checkpoint-every 1)
  "$bin" "${run[@]}" --device "$cpu" --epochs 1 --out "$OUT/agree" 2>"$OUT/agree.log"
  for precision in "${precisions[@]}"; do
    for side in cpu gpu; do
      cp -r "$OUT/agree" "$OUT/agree-$precision-$side"
      device=$cpu; [ "$side" = gpu ] && device=$DEVICE
      "$bin" "${run[@]}" --device "$device" --precision "$precision" --epochs 2 --resume --out "$OUT/agree-$precision-$side" 2>>"$OUT/agree.log"
    done
    python3 - "$OUT" "$precision" "$TOLERANCE" <<'EOF' || agreement=$?
import json, sys
out, precision, tolerance = sys.argv[1], sys.argv[2], float(sys.argv[3])
def losses(side):
    rows = [json.loads(l) for l in open(f"{out}/agree-{precision}-{side}/metrics.jsonl")]
    return {r["step"]: r["loss"] for r in rows if r["step"] > 4}
cpu, gpu = losses("cpu"), losses("gpu")
assert cpu.keys() == gpu.keys() and cpu, f"steps differ: {sorted(cpu)} vs {sorted(gpu)}"
worst = max(abs(gpu[s] - cpu[s]) / abs(cpu[s]) for s in cpu)
print(f"agreement in {precision}, steps after the checkpoint (CPU/GPU):", " ".join(f"{s}: {cpu[s]:.5f}/{gpu[s]:.5f}" for s in sorted(cpu)))
print(f"largest relative loss difference GPU vs CPU: {worst:.2e} (tolerance {tolerance})")
sys.exit(0 if worst <= tolerance else 1)
EOF
  done
fi

# 2. Speed: scripts/vs_pytorch.py alternates our step and PyTorch's, f32 against fp32 and bf16
# against bf16 autocast, and prints the ratios.
for precision in "${precisions[@]}"; do
  python3 scripts/vs_pytorch.py --simclr "$bin" --device "$DEVICE" --torch-device "$TORCH_DEVICE" --formats auto \
    --precision "$precision" --arch "$ARCH" --image-size "$SIZE" --batch-size "$BATCH" --steps "$STEPS" \
    --warmup "$WARMUP" --rounds "$ROUNDS" --json "$OUT/speed-$precision.json"
done

# 3. Big batches: ours in chunks, PyTorch whole at the largest batch that fits (a failed step: out
# of memory).
precision=${precisions[-1]}
"$bin" --device "$DEVICE" --precision "$precision" --quiet bench step --arch "$ARCH" --image-size "$SIZE" \
  --batch-size "$BIG" --micro-batch "$MICRO" --steps 2 --warmup 1 --json "$OUT/big-ours.json"
amp=(); [ "$precision" = bf16 ] && amp=(--amp)
fits=none
for ((b = MICRO; b <= BIG; b *= 2)); do
  python3 scripts/torch_step.py --arch "$ARCH" --image-size "$SIZE" --batch-size "$b" --device "$TORCH_DEVICE" \
    --channels-last "${amp[@]}" --steps 2 --warmup 1 --json "$OUT/big-torch-$b.json" >/dev/null 2>&1 || break
  fits=$b
done
python3 - "$OUT" "$fits" <<'EOF'
import json, sys
out, fits = sys.argv[1], sys.argv[2]
ours = json.load(open(f"{out}/big-ours.json"))
rss = ours.get("peak_rss_mib")
rss = f"{rss:.0f} MiB" if rss else "n/a"
print(f"ours: batch {ours['batch_size']} in chunks of {ours['micro_batch']}: {ours['images_per_sec']:.1f} images/s, host peak RSS {rss}")
if fits == "none":
    print("PyTorch: not even a batch of MICRO images ran whole")
else:
    torch = json.load(open(f"{out}/big-torch-{fits}.json"))
    print(f"PyTorch, whole batch, the largest that ran of MICRO, 2 MICRO, ... BIG: batch {fits}: {torch['images_per_sec']:.1f} images/s; ours / PyTorch {ours['images_per_sec'] / torch['images_per_sec']:.2f}")
EOF
[ "$agreement" = 0 ] || echo "the GPU's losses differ from the CPU's beyond $TOLERANCE (above)" >&2
exit "$agreement"
