#!/usr/bin/env bash
# Issue 35's reproductions, run against the simclr binary $1 (e.g. an older build beside this one):
# prints each one's exit status and last line. Before the trust fixes: 100% from a NaN LR, panics (101),
# a second run mixed into the first, exit 0 for 0 steps, a FIFO --config hanging (124); after: each an error (1).
B=$(realpath "$1"); W=$(mktemp -d); cd "$W"
S="--width 0.0625 --image-size 16 --limit 256 --quiet"
run() { local name=$1; shift; timeout 60 "$@" >out.txt 2>err.txt; local rc=$?; echo "[$name] exit $rc: $(tail -c 300 out.txt | tail -1) | $(grep -v '^ *[0-9]*:\|^note\|backtrace' err.txt | tail -c 300 | tail -1)"; }
run sgd-lr-nan $B linear-eval --random-init --solver sgd --sgd-lr nan $S --out le
run knn-k0 $B knn --random-init --k 0 $S --out k0
run knn-t0 $B knn --random-init --knn-temperature 0 $S --out kt
run first-run $B pretrain --max-steps 2 --batch-size 32 $S --out r
run second-run $B pretrain --max-steps 2 --batch-size 32 --seed 5 $S --out r
run resume-adamw $B pretrain --resume --optimizer adamw --max-steps 3 --batch-size 32 $S --out r
run seed-2^63 $B pretrain --seed 9223372036854775808 --out s; echo "  lock left: $(ls -a s 2>/dev/null | grep -c lock)"
run epochs-overflow $B pretrain --epochs 4611686018427387904 --limit 128 --batch-size 32 --width 0.0625 --image-size 16 --quiet --out e
run finetune-batch0 $B finetune --random-init --batch-size 0 $S --out f
mkfifo x.toml; run config-fifo timeout 10 $B pretrain --config x.toml --out c
rm -rf "$W"
