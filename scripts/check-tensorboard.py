#!/usr/bin/env python3
"""Reads a pretraining run's TensorBoard events with TensorBoard's own reader (EventAccumulator) and
checks that every value of its metrics.jsonl is there, at its step, and that the first batch's views
and the curves are there as images. Exit status 0 when all are; prints what is missing otherwise.

    python3 scripts/check-tensorboard.py RUN      # RUN: a `simclr pretrain --out` folder

Needs `pip install tensorboard`; `.ci/run` runs it when python3 has it.
"""
import json
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run: str) -> int:
    acc = EventAccumulator(f"{run}/tb", size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in tags["scalars"]}
    missing = []
    checked = 0
    for line in open(f"{run}/metrics.jsonl"):
        row = json.loads(line)
        for name, value in row.items():
            if name in ("step", "epoch") or not isinstance(value, (int, float)):
                continue
            got = scalars.get(name, {}).get(row["step"])
            checked += 1
            if got is None or not math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-6):
                missing.append(f"{name} at step {row['step']}: {value} in metrics.jsonl, {got} in tb")
    for image in ("views", "curves"):
        if image not in tags["images"]:
            missing.append(f"image {image}")
    print(f"{run}/tb: {checked} values of metrics.jsonl checked, {len(tags['scalars'])} scalar tags, images {sorted(tags['images'])}")
    for m in missing:
        print("missing or different:", m)
    return 1 if missing or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
