"""Benchmark of the missingness sweep (chapter 05) on the demo profile.

The full default random-missingness sweep of one demo cohort: 10 rates x 20 mask draws x 3 models x 5 seeds,
every prediction and every metric with its bootstrap CI, against the issue's 60 s target on the 2-core
CPU; prints the time, the number of predictions per second and the ratio to the target. For scale it also
times the predictions alone, batched over all draws against a loop over draws (each draw still batched over
the stays; on the demo cohort both take about 4 microseconds per prediction, so the sweep's time goes
mostly to the metrics and their bootstrap).

Uses the demo artifacts of chapters 01-04 in the build folder, building them first if needed.

    .venv/bin/python benchmarks/bench_sweep.py [--profile demo] [--cohort mds_ed]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

TARGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--cohort", default="mimic_eye", choices=["mimic_eye", "mds_ed"])
    args = ap.parse_args()
    from mmlib import metrics, missing, pipeline, train
    from mmlib.chapter import TrainingRecord, artifact_name

    params = pipeline.load_profile(args.profile)
    steps = dict((c.id, k) for c, k in pipeline.plan(params, upto="04"))
    if not all(pipeline.is_complete(c, k) for c, k in steps.items()):
        print("building chapters 01-04 of the profile first ...", flush=True)
        for cid in ("01", "02", "03", "04"):
            if not pipeline.is_complete(cid, steps[cid]):
                pipeline.run(cid, params, progress=False)
    d01, d02, d04 = (pipeline.artifact_dir(c, steps[c]) for c in ("01", "02", "04"))
    n = args.cohort
    data = train.load_fusion_data(d01 / artifact_name("01", "cohort", cohort=n),
                                  d02 / artifact_name("02", "embeddings", cohort=n))
    fits = train.load_fits(d04 / artifact_name("04", "models", cohort=n))
    config = d04 / artifact_name("04", "config")
    order = TrainingRecord.from_json(json.loads(config.read_text()), config).order(n)
    full = order.full
    models, seeds = ["paper", "resilient", "late"], sorted({k[2] for k in fits})
    rates, draws = [round(0.1 * i, 1) for i in range(10)], 20
    te = data.rows("test")
    groups = metrics.evaluation_groups(data, "test", n_boot=100)
    present = data.mask[te][:, data.columns(order)]

    t0 = time.perf_counter()
    for i, p in enumerate(rates):
        masks = missing.bernoulli_masks(present, p, draws, seed=i)
        for m in models:
            missing.evaluate_condition(data, [fits[(m, full, s)] for s in seeds], masks, groups)
    dt = time.perf_counter() - t0
    n_pred = len(rates) * draws * len(models) * len(seeds) * len(te)
    print(f"cohort {n}: {len(rates)} rates x {draws} draws x {len(models)} models x {len(seeds)} seeds "
          f"x {len(te)} test stays = {n_pred:,} predictions")
    print(f"  vectorised sweep with metrics and bootstrap CIs: {dt:.1f} s ({n_pred / dt:,.0f} predictions/s); "
          f"ratio to the {TARGET_S:.0f} s target: {dt / TARGET_S:.2f}")

    # baseline: the same predictions, one draw and one seed at a time
    x = data.x[te][:, data.columns(order)]
    t0 = time.perf_counter()
    masks = missing.bernoulli_masks(present, 0.5, draws, seed=0)
    for m in models:
        for s in seeds:
            for d in range(draws):
                train.predict(fits[(m, full, s)], x, masks[d])
    loop = (time.perf_counter() - t0) * len(rates)
    t0 = time.perf_counter()
    for m in models:
        for s in seeds:
            missing.predict_masked(fits[(m, full, s)], x, masks)
    batched = (time.perf_counter() - t0) * len(rates)
    print(f"  predictions only: batched over draws {batched:.1f} s, one draw at a time {loop:.1f} s "
          f"(ratio {loop / batched:.2f})")
    same = np.allclose(missing.predict_masked(fits[(models[0], full, seeds[0])], x, masks)[3],
                       train.predict(fits[(models[0], full, seeds[0])], x, masks[3]))
    print(f"  batched equals one-at-a-time: {same}")


if __name__ == "__main__":
    main()
