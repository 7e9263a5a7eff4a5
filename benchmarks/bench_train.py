"""Benchmark of the modelling chapters on the demo profile (issue: chapters 03 + 04 <= 4 min, 2-core CPU).

1. Training time per model on each demo cohort, all modalities, three seeds, one fit at a time (each fit
   uses one thread): seconds per fit and epochs, and the ratio to the paper's model.
2. Parallel fits: ``run_grid`` with ``n_jobs=1`` against ``n_jobs=-1`` on the same runs (same numbers).
3. Confidence intervals: :func:`mmlib.metrics.summarise` (stratified, vectorised bootstrap, 200
   resamples, every metric for three attributes) against fairlearn's own bootstrap
   (``MetricFrame(n_boot=200)``, selection rate / TPR / FPR only) on the same predictions.
Chapters 03 + 04 against their 240 s target: ``benchmarks/bench_chapters.py``.

Uses the demo artifacts of chapters 01-02 in the build folder, building them first if needed.

    .venv/bin/python benchmarks/bench_train.py [--profile demo]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def _inputs(params):
    from mmlib import pipeline

    for cid in ("01", "02"):  # one at a time: chapter 02's key depends on the content chapter 01 wrote
        steps = dict((c.id, k) for c, k in pipeline.plan(params, upto=cid))
        if not pipeline.is_complete(cid, steps[cid]):
            print(f"building chapter {cid} of the profile first ...", flush=True)
            pipeline.run(cid, params, force=False, progress=False)
    steps = dict((c.id, k) for c, k in pipeline.plan(params, upto="02"))
    return pipeline.artifact_dir("01", steps["01"]), pipeline.artifact_dir("02", steps["02"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    args = ap.parse_args()
    from mmlib import metrics, pipeline, train

    params = pipeline.load_profile(args.profile)
    d01, d02 = _inputs(params)
    cfg = train.TrainConfig()
    data = {n: train.load_fusion_data(d01 / f"cohort_{n}", d02 / f"embeddings_{n}.npz") for n in ("mimic_eye", "mds_ed")}

    print(f"1. one fit at a time, all modalities, seeds 0-2 (profile {args.profile})")
    rows = []
    for n, d in data.items():
        for m in ("paper", "resilient", "late", "linear", "logreg"):
            seeds = [0] if m == "logreg" else [0, 1, 2]
            t0 = time.perf_counter()
            fits = [train.fit_model(d, m, d.modalities, s, cfg) for s in seeds]
            rows.append({"cohort": n, "model": m, "s/fit": (time.perf_counter() - t0) / len(seeds),
                         "epochs": np.mean([f.epochs for f in fits]), "train stays": len(d.rows("train"))})
    t = pd.DataFrame(rows)
    t["ratio to paper"] = t["s/fit"] / t.groupby("cohort")["s/fit"].transform(lambda s: s.iloc[0])
    print(t.round(2).to_string(index=False))

    print("\n2. run_grid, paper + resilient on all modalities, 5 seeds")
    d = data["mimic_eye"]
    runs = [("paper", d.modalities), ("resilient", d.modalities)]
    t0 = time.perf_counter()
    p1 = train.run_grid(d, runs, [0, 1, 2, 3, 4], cfg, n_jobs=1, progress=False).predictions
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    p2 = train.run_grid(d, runs, [0, 1, 2, 3, 4], cfg, n_jobs=-1, progress=False).predictions
    parallel = time.perf_counter() - t0
    print(f"  n_jobs=1 {serial:.1f} s, n_jobs=-1 {parallel:.1f} s: speed-up {serial / parallel:.2f}x; "
          f"identical predictions: {p1.equals(p2)}")

    print("\n3. bootstrap CIs for one run (5 seeds), 200 resamples")
    run = p1[p1["model"] == "paper"]
    t0 = time.perf_counter()
    s = metrics.summarise(run, n_boot=200, progress=False)
    ours = time.perf_counter() - t0
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    te = run[run["split"] == "test"]
    t0 = time.perf_counter()
    for _, one in te.groupby("seed"):
        for a in metrics.ATTRIBUTES:
            MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
                        y_true=one["label"], y_pred=one["pred"], sensitive_features=one[a], n_boot=200,
                        ci_quantiles=[0.025, 0.975], random_state=0)
    theirs = time.perf_counter() - t0
    print(f"  mmlib.metrics.summarise: {ours:.2f} s for {len(s.table)} estimates (performance, rates, gaps)")
    print(f"  fairlearn MetricFrame(n_boot=200): {theirs:.2f} s for the per-group rates only")
    print(f"  ratio fairlearn / mmlib: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
