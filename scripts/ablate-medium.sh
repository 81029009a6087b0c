#!/usr/bin/env bash
# The paper's findings at the medium preset (issue 41): the four studies of `simclr ablate
# --preset medium` on Fashion-MNIST, 3 seeds a cell, each study in docs/ablations/medium/STUDY.
# Resumable run by run: a study's results.json is committed as its runs finish, and a later run of
# this script (in a fresh checkout, without the run folders) trains only what is missing. Each
# study takes the runs it shares with the others (the base cell, the untrained network, the
# supervised baseline) from their results.json (--reuse), so a shared run is trained once.
#
#   SIMCLR=target/all/release/simclr scripts/ablate-medium.sh              # everything still missing
#   STUDIES=temperature scripts/ablate-medium.sh --only l2-tau1           # one cell (3 seeds)
#
# Environment: SIMCLR (the binary; a libtorch build: --device tch-cpu), DEVICE (tch-cpu),
# OUT (docs/ablations/medium), STUDIES (the order: scale temperature head augment), FMNIST (the
# folder of Fashion-MNIST's IDX files: /usr/share/datasets/fashion-mnist). Extra arguments go to
# every `simclr ablate` call (e.g. --only, --seeds).
set -euo pipefail
SIMCLR=${SIMCLR:-target/release/simclr}
DEVICE=${DEVICE:-tch-cpu}
OUT=${OUT:-docs/ablations/medium}
STUDIES=${STUDIES:-"scale temperature head augment"}
DATA=(--dataset fashion-mnist --data "${FMNIST:-/usr/share/datasets/fashion-mnist}")
for study in $STUDIES; do
  reuse=()
  for other in scale temperature head augment; do
    if [ "$other" != "$study" ] && [ -f "$OUT/$other/results.json" ]; then
      reuse+=("$OUT/$other")
    fi
  done
  reuse_flag=()
  if [ ${#reuse[@]} -gt 0 ]; then
    reuse_flag=(--reuse "$(IFS=,; echo "${reuse[*]}")")
  fi
  "$SIMCLR" --device "$DEVICE" --quiet ablate --study "$study" --preset medium "${DATA[@]}" \
    --out "$OUT/$study" "${reuse_flag[@]}" "$@"
done
