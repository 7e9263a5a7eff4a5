"""Benchmark of the book spine on the demo profile: cohort generation, chapter 01, rendering.

Prints each time and its ratio to the issue's budget (generation of both demo cohorts, images and ECGs
included: 60 s on the 2-core CPU). Runs in a temporary build/data folder so it never reuses a cache.

    .venv/bin/python benchmarks/bench_data.py [--profile demo]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

GENERATION_BUDGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MMLIB_BUILD_DIR"] = str(Path(tmp) / "build")
        os.environ["MMLIB_DATA_DIR"] = str(Path(tmp) / "data")
        from mmlib import pipeline
        from mmlib.book import render_book
        from mmlib.data.synth import from_chapter_params, generate

        params = pipeline.load_profile(args.profile)
        rows = []
        total = 0.0
        for cohort in ("mimic_eye", "mds_ed"):
            t0 = time.perf_counter()
            root, _ = generate(cohort, from_chapter_params(cohort, params), data_dir=pipeline.data_dir(), progress=False)
            dt = time.perf_counter() - t0
            total += dt
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
            rows.append((f"generate {cohort} ({params['n_patients']} stays, {size:.0f} MiB)", dt))
        rows.append(("generate both cohorts", total))
        t0 = time.perf_counter()
        pipeline.run("01", params, progress=False)
        rows.append(("execute chapter 01 (papermill)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        res = render_book(pipeline.project_root(), pipeline.build_dir() / params["profile"] / "executed",
                          out_dir=Path(tmp) / "book")
        rows.append((f"render the book ({res.renderer})", time.perf_counter() - t0))
    print(f"profile {args.profile}")
    for name, dt in rows:
        print(f"  {name:<55s} {dt:7.1f} s")
    print(f"  generation / budget ({GENERATION_BUDGET_S:.0f} s): {total / GENERATION_BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
