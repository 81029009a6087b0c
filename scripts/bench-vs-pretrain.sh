#!/usr/bin/env bash
# `simclr bench step` beside `simclr pretrain` on the same shapes (issue 36): ResNet-18, batch 128,
# 32 px views, SGD, the online probe on, on the built-in images; two rounds, alternated, so that
# the machine's drift shows. Both run the engine's loop and step (src/train); their images/s
# should agree within ~10%.
#   scripts/bench-vs-pretrain.sh [SIMCLR_BINARY] [DEVICE]
set -euo pipefail
simclr=${1:-target/release/simclr}
device=${2:-flex}
shapes="--arch resnet18 --image-size 32 --batch-size 128 --optimizer sgd"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for round in 1 2; do
  "$simclr" --device "$device" bench step $shapes --steps 16 --warmup 4 --quiet --json "$scratch/bench$round.json" >/dev/null
  echo "round $round bench step: $(jq '.images_per_sec' "$scratch/bench$round.json") images/s (median of 16 steps after 4)"
  "$simclr" --device "$device" pretrain $shapes --online-probe true --max-steps 20 --quiet --out "$scratch/run$round" >/dev/null
  echo "round $round pretrain:   $(jq -s '[.[4:20][] | .images_per_sec] | sort | (.[7] + .[8]) / 2' "$scratch/run$round/metrics.jsonl") images/s (median of steps 5-20)"
done
