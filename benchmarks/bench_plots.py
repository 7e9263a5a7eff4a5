"""Benchmark of the book's largest figures: chapter 05's train x test heatmaps and chapter 07's flip heatmaps.

Draws both with the working tree's :mod:`mmlib.plots` and with the ``mmlib/plots.py`` of a git revision
(``--baseline``, default ``552f6c2``, the revision before heatmaps were drawn one axes at a time), in alternation,
``--rounds`` times each, on a toy sweep of the real protocol functions (two cohorts, three models, four metrics,
a 3 x 3 train x test grid) and a 4-model x 4-modality x 3-perturbation flip table. Prints each one's best time, the
ratio baseline / working tree, and whether the PNG bytes are the same.

    .venv/bin/python benchmarks/bench_plots.py [--baseline 552f6c2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import subprocess
import sys
import time
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def baseline_plots(rev: str):
    """``mmlib/plots.py`` of git revision ``rev`` as a module of the ``mmlib`` package (its relative imports resolve to
    the working tree's other modules)."""
    src = subprocess.run(["git", "show", f"{rev}:mmlib/plots.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType("mmlib._plots_baseline")
    mod.__package__, mod.__file__ = "mmlib", f"{rev}:mmlib/plots.py"
    sys.modules[mod.__name__] = mod  # its dataclasses look their module up there
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102  (the project's own code, from git)
    return mod


def inputs():
    """A train x test sweep of two toy cohorts (the real protocol functions) and a flip-rate table."""
    from conftest import make_toy_data
    from mmlib import findings, metrics, missing, train

    d = make_toy_data(n=300)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    fit = train.run_grid(d, [("paper", ["good", "noise"])], [0], cfg, keep={("paper", "good+noise")},
                         progress=False, cache_dir=None).fits_of("paper", "good+noise", [0])
    names, models, rates = ["mimic_eye", "mds_ed"], ["paper", "resilient", "late"], [0.0, 0.3, 0.6]
    groups = metrics.evaluation_groups(d, "test", min_group=5, min_events=2, n_boot=10)
    sweep = missing.Sweep()
    missing.train_test_protocol(sweep, {n: d for n in names},
                                {(n, r): {m: fit for m in models} for n in names for r in rates},
                                {n: d.mask[d.rows("test")] for n in names}, {n: groups for n in names},
                                rates, rates, 2, mask_seed=0, rank_draws=1)
    rng = np.random.default_rng(0)
    mods, perts = ["arrival", "vitals", "codes", "cxr"], ["switch", "blank", "irrelevant"]
    fmodels = ["paper", "paper+consistency", "resilient", "late"]
    flips = pd.DataFrame([{"model": m, "modality": o, "perturbation": p, "flip_rate": rng.random() * 0.3}
                          for m, o, p in itertools.product(fmodels, mods, perts)])
    keys = [("auroc", "overall")] + list(findings.SIGNED_KEYS)
    return {"train x test heatmaps (chapter 05)": lambda P: P.train_test_heatmaps(sweep.table, names, models, keys),
            "flip heatmaps (chapter 07)": lambda P: [P.interference_heatmaps(flips, fmodels, mods, perts, title="x")]}


def png_digest(figs) -> str:
    h = hashlib.sha256()
    for f in figs:
        buf = io.BytesIO()
        f.savefig(buf, format="png")
        h.update(buf.getvalue())
    plt.close("all")
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="552f6c2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from mmlib import plots

    versions = {"baseline": baseline_plots(args.baseline), "working tree": plots}
    for what, draw in inputs().items():
        best, digest = {v: float("inf") for v in versions}, {}
        for r in range(args.rounds):
            for v in (list(versions) if r % 2 == 0 else list(versions)[::-1]):
                t0 = time.perf_counter()
                figs = draw(versions[v])
                best[v] = min(best[v], time.perf_counter() - t0)
                digest[v] = png_digest(figs)
        print(f"{what}: baseline {best['baseline']:.2f} s, working tree {best['working tree']:.2f} s, "
              f"{best['baseline'] / best['working tree']:.1f}x; same PNG bytes: {len(set(digest.values())) == 1}")


if __name__ == "__main__":
    main()
