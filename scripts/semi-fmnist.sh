#!/usr/bin/env bash
# SimCLR v2's three stages on Fashion-MNIST (issue 39's target; README "Semi-supervised: pretrain,
# fine-tune, distill"): one pretraining on the 60k training images without labels, then for each
# seed a label subset, and on it
#   ft       the pretrained network fine-tuned from head layer 1 (the teacher),
#   sup      the same network trained from scratch on the labels alone (supervised baseline),
#   self     a student of the teacher's architecture distilled on all 60k images (no labels),
#   small    a student at half the width distilled the same way,
#   sup-half the half-width network trained from scratch on the labels alone,
# and the paired tests (McNemar, `simclr compare`) of self vs ft and small vs sup-half.
# Each stage is skipped when its report exists, so an interrupted run continues where it stopped.
# The small files (reports, the comparisons) are copied to $DOCS; the runs stay in $RUNS.
#
#   scripts/semi-fmnist.sh                     # SEEDS="0 1" FRACTION=0.1
# Settings (environment): SIMCLR (target/release/simclr), DEVICE (tch-cpu), RUNS (runs/semi),
# DOCS (docs/semi), SEEDS ("0 1"), FRACTION (0.1), WIDTH (0.25), PRE_EPOCHS (3), FT_EPOCHS (10),
# DISTILL_EPOCHS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SIMCLR:-target/release/simclr}
DEVICE=${DEVICE:-tch-cpu}
RUNS=${RUNS:-runs/semi}
DOCS=${DOCS:-docs/semi}
SEEDS=${SEEDS:-0 1}
FRACTION=${FRACTION:-0.1}
WIDTH=${WIDTH:-0.25}
HALF=$(python3 -c "print($WIDTH / 2)")
PRE_EPOCHS=${PRE_EPOCHS:-3}
FT_EPOCHS=${FT_EPOCHS:-10}
DISTILL_EPOCHS=${DISTILL_EPOCHS:-3}
D=(--dataset fashion-mnist --data /usr/share/datasets/fashion-mnist)
# Fine-tuning (paper App. B.5: Nesterov SGD, batch 64 here, no weight decay) and training from
# scratch / distillation (batch 256, weight decay 1e-4); crops of at least 20% of these 28 px images.
FT=(--epochs "$FT_EPOCHS" --batch-size 64 --lr 0.2 --crop-min-area 0.2)
SCRATCH=(--epochs "$FT_EPOCHS" --batch-size 64 --lr 0.2 --weight-decay 1e-4 --crop-min-area 0.2)
DISTILL=(--epochs "$DISTILL_EPOCHS" --batch-size 256 --lr 0.2 --weight-decay 1e-4 --crop-min-area 0.2)
mkdir -p "$RUNS" "$DOCS"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$DOCS/log.txt"; }
# run NAME ARGS…: one stage into $RUNS/NAME unless its report is there; its report copied to $DOCS.
run() {
  local name=$1; shift
  if [ ! -f "$RUNS/$name/report.json" ]; then
    log "$name: simclr $*"
    "$S" --device "$DEVICE" --quiet "$@" --out "$RUNS/$name" | tee -a "$DOCS/log.txt"
  fi
  cp "$RUNS/$name/report.json" "$DOCS/$name.json"
}

if [ ! -d "$RUNS/pretrain/checkpoints" ]; then
  log "pretrain"
  "$S" --device "$DEVICE" --quiet pretrain "${D[@]}" --arch resnet18 --width "$WIDTH" --head-layers 3 \
    --epochs "$PRE_EPOCHS" --batch-size 256 --lr 1.0 --warmup-epochs 0.1 --temperature 0.2 \
    --color-strength 0.5 --crop-min-area 0.2 --out "$RUNS/pretrain" | tee -a "$DOCS/log.txt"
fi
cp "$RUNS/pretrain/config.toml" "$DOCS/pretrain-config.toml"
tail -n 1 "$RUNS/pretrain/metrics.jsonl" > "$DOCS/pretrain-last-step.json"

for seed in $SEEDS; do
  tag="f$FRACTION-s$seed"
  run "ft-$tag" finetune "${D[@]}" --checkpoint "$RUNS/pretrain" --label-fraction "$FRACTION" --from-head-layer 1 --seed "$seed" "${FT[@]}"
  subset="$RUNS/ft-$tag/subset-$FRACTION-seed$seed.txt"
  run "sup-$tag" finetune "${D[@]}" --random-init --arch resnet18 --width "$WIDTH" --subset "$subset" --seed "$seed" "${SCRATCH[@]}"
  run "sup-half-$tag" finetune "${D[@]}" --random-init --arch resnet18 --width "$HALF" --subset "$subset" --seed "$seed" "${SCRATCH[@]}"
  run "self-$tag" distill "${D[@]}" --teacher "$RUNS/ft-$tag" --seed "$seed" "${DISTILL[@]}"
  run "small-$tag" distill "${D[@]}" --teacher "$RUNS/ft-$tag" --width "$HALF" --seed "$seed" "${DISTILL[@]}"
  for pair in "self ft" "small sup-half" "ft sup" "small ft"; do
    set -- $pair
    "$S" compare "$RUNS/$1-$tag" "$RUNS/$2-$tag" > "$DOCS/compare-$1-vs-$2-$tag.txt"
    log "$(tr '\n' ' ' < "$DOCS/compare-$1-vs-$2-$tag.txt")"
  done
done
