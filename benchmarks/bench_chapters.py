"""Benchmark of the modelling chapters on the demo profile, executed by the pipeline (forced re-execution).

Targets from the issues, on the 2-core CPU: chapters 03 + 04 <= 4 minutes, chapters 06 + 07 <= 4 minutes,
chapter 08 <= 3 minutes; prints each chapter's time and each group's ratio to its target. Chapters 01-02 (and any
other upstream chapter) are built first if their artifacts are missing, and not timed.

    .venv/bin/python benchmarks/bench_chapters.py [--profile demo] [--chapters 03 04 05 06 07 08]
"""
from __future__ import annotations

import argparse
import time

TARGETS = {("03", "04"): 240.0, ("06", "07"): 240.0, ("08",): 180.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--chapters", nargs="+", default=["03", "04", "05", "06", "07", "08"])
    args = ap.parse_args()
    from mmlib import pipeline

    params = pipeline.load_profile(args.profile)
    steps = dict((c.id, k) for c, k in pipeline.plan(params))
    chs, needed, todo = pipeline.chapters(), set(), list(args.chapters)
    while todo:  # every chapter a benchmarked one needs, directly or not
        for n in chs[todo.pop()].needs:
            if n not in needed:
                needed.add(n)
                todo.append(n)
    for cid, key in steps.items():  # untimed: upstream chapters that are not benchmarked
        if cid not in args.chapters and cid in needed and not pipeline.is_complete(cid, key):
            print(f"building chapter {cid} first ...", flush=True)
            pipeline.run(cid, params, progress=False)
    times = {}
    for cid in sorted(args.chapters):
        t0 = time.perf_counter()
        pipeline.run(cid, params, progress=False)
        times[cid] = time.perf_counter() - t0
        print(f"chapter {cid}: {times[cid]:.1f} s", flush=True)
    for group, target in TARGETS.items():
        if all(c in times for c in group):
            total = sum(times[c] for c in group)
            print(f"chapters {' + '.join(group)}: {total:.1f} s; ratio to the {target:.0f} s target: {total / target:.2f}")


if __name__ == "__main__":
    main()
