"""Calibration check of the simulator on a profile (default: demo): does chapter 04 reproduce the paper's first
finding -- arrival the best single modality and the X-ray the weakest on MIMIC-Eye, all modalities beating the
best single one with a paired 95% CI above 0 on both cohorts (:mod:`mmlib.targets`)?

Builds chapters 01-04 of the profile where their artifacts are missing (about 11 minutes on the demo profile
on a 2-core machine; nothing when ``make book`` has run), then prints chapter 04's ``targets`` artifact and
exits with status 1 when a target is missed. The demo cohorts (4,500 stays each, about 900 in each test set)
are the smallest the book uses that decide these targets; the ci profile's are too small, so this is a
benchmark and not a test.

    .venv/bin/python benchmarks/bench_targets.py [--profile demo]
"""
from __future__ import annotations

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    args = ap.parse_args()
    import pandas as pd

    from mmlib import pipeline

    params = pipeline.load_profile(args.profile)
    steps = dict((c.id, k) for c, k in pipeline.plan(params, upto="04"))
    for cid, key in steps.items():
        if not pipeline.is_complete(cid, key):
            print(f"building chapter {cid} ...", flush=True)
            pipeline.run(cid, params, progress=False)
    table = pd.read_parquet(pipeline.artifact_dir("04", steps["04"]) / "targets.parquet")
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(table.to_string(index=False))
    judged = table[table["met"].notna()]
    missed = judged[~judged["met"].astype(bool)]
    print(f"targets met: {len(judged) - len(missed)} of {len(judged)} "
          f"(ratio {(len(judged) - len(missed)) / max(len(judged), 1):.2f}; {len(table) - len(judged)} not judged)")
    return 1 if len(missed) or judged.empty else 0


if __name__ == "__main__":
    sys.exit(main())
