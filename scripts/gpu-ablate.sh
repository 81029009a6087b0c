#!/usr/bin/env bash
# The paper's findings on a GPU (issue 41): the medium preset's four studies (and, with SMALL=1,
# the small preset's Fashion-MNIST studies at 3 seeds) run by `simclr ablate --device cuda:0` on
# a lent GPU machine, writing the same results.json / report.md / figures as on the CPU.
#
#   scripts/gpu-ablate.sh SIMCLR_BINARY        # on the GPU machine, in the repository root
#
# It builds nothing there. The machine reaches no registry and its Python torch is not
# torch-sys's 2.9.0, so SIMCLR_BINARY is built here against the libtorch of the device's torch
# wheel (docs/performance.md, "On a GPU": LIBTORCH=…/torch LIBTORCH_BYPASS_VERSION_CHECK=1
# CARGO_TARGET_DIR=target/cu130 … cargo build --release --no-default-features --features tch),
# stripped, and carried with Fashion-MNIST's four .gz IDX files (30 MB) in an ignored folder:
#
#   mkdir -p .carry && cp target/cu130/release/simclr .carry/ && strip .carry/simclr
#   cp /usr/share/datasets/fashion-mnist/*.gz .carry/    # device run: carry [".carry"],
#   scripts/gpu-ablate.sh .carry/simclr                  # FMNIST=.carry (the default here)
#
# Resumable as on the CPU: each study continues from the results.json committed under OUT
# (a device call is at most 10 minutes), and every study folder is copied, without its run
# folders, to $RESULTS (the device's $OUT, which comes back) each minute and after each study, so
# a call cut off at its limit still returns the runs it finished. Commit those results.json files and call
# again until every study is complete.
# Environment: DEVICE (cuda:0), FMNIST (.carry), ABLATIONS (docs/ablations/medium-gpu: the study
# folders), STUDIES (as scripts/ablate-medium.sh), SMALL (0; 1: also the small preset's head,
# temperature and scale studies at 3 seeds into ABLATIONS/small/STUDY), RESULTS (where the copies
# go: the device tool's $OUT when it is set, else none). Extra arguments go to every `simclr
# ablate` call.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: scripts/gpu-ablate.sh SIMCLR_BINARY [ablate arguments]}
shift
export DEVICE=${DEVICE:-cuda:0} FMNIST=${FMNIST:-.carry}
OUT_DIR=${OUT:-}
export OUT=${ABLATIONS:-docs/ablations/medium-gpu}
RESULTS=${RESULTS:-${OUT_DIR:-$OUT}}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -f "$FMNIST/$f" ] || { echo "FMNIST=$FMNIST has no $f: carry Fashion-MNIST's IDX files (see the header)" >&2; exit 2; }
done
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "(no GPU)")' >&2

# Copies each study folder's results, report and figures (not its run folders) to RESULTS.
save() {
  [ "$RESULTS" = "$OUT" ] && return 0
  for dir in "$OUT"/*/ "$OUT"/small/*/; do
    [ -f "$dir/results.json" ] || continue
    mkdir -p "$RESULTS/${dir#"$OUT"/}"
    cp "$dir"/results.json "$dir"/report.md "$RESULTS/${dir#"$OUT"/}"
    cp "$dir"/*.png "$RESULTS/${dir#"$OUT"/}" 2>/dev/null || true
  done
}
# A call stopped at its limit keeps what the last minute's copy holds (ablate rewrites a study's
# results.json after every run).
( while sleep 60; do save; done ) &
saver=$!
trap 'kill $saver 2>/dev/null; save' EXIT

for study in ${STUDIES:-scale temperature head augment}; do
  SIMCLR=$bin STUDIES=$study scripts/ablate-medium.sh "$@"
  save
done
if [ "${SMALL:-0}" = 1 ]; then
  for study in head temperature scale; do
    "$bin" --device "$DEVICE" --quiet ablate --study "$study" --seeds 3 --dataset fashion-mnist --data "$FMNIST" --out "$OUT/small/$study" "$@"
    save
  done
fi
