#!/usr/bin/env bash
# Where the GPU time of one training step goes, ours beside PyTorch's: both steps (scripts/gpu-check.sh's
# settings, one warm-up and one timed step each) run under Nsight Compute, which times every kernel;
# a table per side lists the kernels by total time, and the sums compare with the steps' wall time.
#
#   scripts/gpu-kernels.sh SIMCLR_BINARY [extra `bench step` flags, e.g. --precision bf16]
#
# Needs `ncu` (on a Firecracker GPU machine; give it no clock control, so the card runs as found).
# Settings (environment): ARCH (resnet50), SIZE (224), BATCH (64), TORCH_FLAGS (--channels-last),
# TOP (25 kernels a side), OUT (a new temporary folder: one CSV per side, one row a kernel launch).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; shift
ARCH=${ARCH:-resnet50} SIZE=${SIZE:-224} BATCH=${BATCH:-64} TORCH_FLAGS=${TORCH_FLAGS:---channels-last} TOP=${TOP:-25}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
profile=("$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --page raw --print-units base)
common=(--arch "$ARCH" --image-size "$SIZE" --batch-size "$BATCH" --steps 1 --warmup 1)

"${profile[@]}" "$bin" --quiet --device cuda:0 bench step "${common[@]}" --optimizer sgd "$@" >"$OUT/simclr.csv"
# shellcheck disable=SC2086
"${profile[@]}" python3 scripts/torch_step.py "${common[@]}" --device cuda $TORCH_FLAGS >"$OUT/torch.csv"

python3 - "$OUT" "$TOP" <<'EOF'
import collections, csv, sys
out, top = sys.argv[1], int(sys.argv[2])
def launches(side):
    rows = [l for l in open(f"{out}/{side}.csv") if l.startswith('"')]
    table = list(csv.reader(rows))
    head, body = table[0], [r for r in table[1:] if r[0].isdigit()]
    name, time = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
    return [(r[name], float(r[time].replace(",", ""))) for r in body]
for side in ("simclr", "torch"):
    rows = launches(side)
    total = collections.defaultdict(float)
    count = collections.Counter()
    for name, ns in rows:
        total[name] += ns
        count[name] += 1
    whole = sum(total.values())
    print(f"\n{side}: {len(rows)} kernel launches (warm-up step, timed step and set-up), {whole / 1e6:.1f} ms of kernels")
    print(f"| {'ms':>8} | {'share':>6} | {'launches':>8} | kernel")
    for name, ns in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {ns / 1e6:>8.2f} | {ns / whole:>6.1%} | {count[name]:>8} | {name[:150]}")
EOF
