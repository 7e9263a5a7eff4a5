"""Benchmark of the metric kernels behind every sweep condition (chapters 05-07) and every bootstrap (03-04, 06, 08).

Runs the previous implementation (kept below, verbatim, as the reference) and the current one of
:mod:`mmlib.metrics` back to back on the same inputs, prints each one's time and the speed ratio, and checks that
every number is bit for bit the same (``np.array_equal``, NaNs equal):

1. ``summarise_vectors``: one condition of chapter 05's sweep -- 5 seeds x 20 mask draws = 100 prediction vectors
   on a demo-sized test split, 100 stratified resamples, AUROC/AUPRC resampled on 10 vectors. The previous code
   scored the per-group AUROC and ECE one vector at a time (about 23 NumPy calls per vector and group attribute)
   and counted every group's confusion counts with its own pair of matrix products.
2. ``Bootstrap.replicates``: one seed of one run of :func:`mmlib.metrics.summarise` (200 resamples).
3. ``vector_metrics`` alone (the point estimates of a condition).

Synthetic inputs shaped like the demo cohorts' test split (no build needed): race_binary with an Unknown group,
gender, race x gender; a fifth of the stays positive; probabilities rounded to 4 digits, so some scores tie.

    .venv/bin/python benchmarks/bench_metrics.py [--n 900] [--vectors 100] [--boot 100] [--repeat 5] [--race5]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from mmlib import metrics
from mmlib.metrics import (ECE_BINS, GAPS, REFERENCE, _div, _estimate, signed_gaps, weighted_auroc,
                           weighted_average_precision, worst_group_once)


# ----------------------------------------------------------------- reference: the previous implementation
def ref_weighted_ece(w, y, prob):
    bins = np.clip(np.ceil(prob * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)
    resid = prob - y
    total = np.zeros(w.shape[0])
    for k in np.unique(bins):
        sel = bins == k
        total += np.abs(w[:, sel] @ resid[sel])
    return _div(total, w.sum(1))


def ref_score_metrics(w, y, prob, attrs, flags):
    y, prob = y.astype(np.float64), np.asarray(prob, dtype=np.float64)
    out = {("ece", "overall", "all"): ref_weighted_ece(w, y, prob)}
    for a, g in attrs.items():
        names = sorted(pd.unique(g))
        for k in names:
            ind = (g == k).astype(np.float64)
            out[("auroc", a, k)] = weighted_auroc(w * ind, y, prob)
            out[("ece", a, k)] = ref_weighted_ece(w * ind, y, prob)
        compared = [k for k in names if not flags[a].get(k, "x")]
        if len(compared) < 2:
            out[("auroc_worst", a, "gap")] = out[("ece_worst", a, "gap")] = np.full(w.shape[0], np.nan)
            continue
        out[("auroc_worst", a, "gap")] = np.min([out[("auroc", a, k)] for k in compared], axis=0)
        out[("ece_worst", a, "gap")] = np.max([out[("ece", a, k)] for k in compared], axis=0)
    return out


def ref_count_metrics(w, d, y, attrs, flags):
    dy = d * y
    tp, pp = w @ dy.T, w @ d.T
    pos, tot = (w @ y)[:, None], w.sum(1)[:, None]
    fp, fn = pp - tp, pos - tp
    tn = tot - tp - fp - fn
    tpr, tnr = _div(tp, tp + fn), _div(tn, tn + fp)
    out = {("f1", "overall", "all"): np.nan_to_num(_div(2 * tp, 2 * tp + fp + fn)),
           ("balanced_accuracy", "overall", "all"): (tpr + tnr) / 2}
    for a, g in attrs.items():
        names = sorted(pd.unique(g))
        rate, tprg, fprg = {}, {}, {}
        for k in names:
            ind = (g == k).astype(np.float64)
            n_k, pos_k = (w @ ind)[:, None], (w @ (ind * y))[:, None]
            sel, hit = w @ (d * ind).T, w @ (dy * ind).T
            rate[k], tprg[k], fprg[k] = _div(sel, n_k), _div(hit, pos_k), _div(sel - hit, n_k - pos_k)
            out[("selection_rate", a, k)], out[("tpr", a, k)], out[("fpr", a, k)] = rate[k], tprg[k], fprg[k]
        compared = [k for k in names if not flags[a].get(k, "x")]
        for k, v in signed_gaps({"selection_rate": rate, "tpr": tprg, "fpr": fprg}, compared,
                                REFERENCE.get(a)).items():
            out[(k, a, "gap")] = v
        if len(compared) < 2:
            for k in GAPS:
                out[(k, a, "gap")] = np.full(tp.shape, np.nan)
            continue
        r = np.stack([rate[k] for k in compared])
        t = np.stack([tprg[k] for k in compared])
        f = np.stack([fprg[k] for k in compared])
        tpr_gap = t.max(0) - t.min(0)
        out[("dp_diff", a, "gap")] = r.max(0) - r.min(0)
        out[("dp_ratio", a, "gap")] = _div(r.min(0), r.max(0))
        out[("tpr_diff", a, "gap")] = tpr_gap
        out[("eo_diff", a, "gap")] = np.maximum(tpr_gap, f.max(0) - f.min(0))
    return out


def ref_vector_metrics(y, probs, preds, attrs, flags):
    from scipy.stats import rankdata

    y = y.astype(np.float64)
    probs = np.atleast_2d(probs)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    ranks = rankdata(probs, axis=1)
    auroc = _div((ranks * y).sum(1) - n_pos * (n_pos + 1) / 2, np.full(len(probs), n_pos * n_neg))
    order = np.argsort(-probs, axis=1, kind="mergesort")
    ys = y[order]
    at_least = np.take_along_axis(rankdata(-probs, axis=1, method="max"), order, axis=1).astype(int)
    precision = np.take_along_axis(np.cumsum(ys, axis=1), at_least - 1, axis=1) / at_least
    auprc = _div((precision * ys).sum(1), np.full(len(probs), n_pos))
    out = {("auroc", "overall", "all"): auroc, ("auprc", "overall", "all"): auprc}
    counts = ref_count_metrics(np.ones((1, len(y))), np.atleast_2d(preds).astype(np.float64), y, attrs, flags)
    out.update({k: v[0] for k, v in counts.items()})
    unit = np.ones((1, len(y)))
    scores = [ref_score_metrics(unit, y, p, attrs, flags) for p in probs]
    out.update({k: np.array([s[k][0] for s in scores]) for k in scores[0]})
    return out


def ref_summarise_vectors(y, probs, preds, attrs, flags, boot, rank_vectors=None):
    probs, preds = np.atleast_2d(probs), np.atleast_2d(preds)
    points = ref_vector_metrics(y, probs, preds, attrs, flags)
    yf = y.astype(np.float64)
    counts = ref_count_metrics(boot.counts, preds.astype(np.float64), yf, attrs, flags)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reps = {k: np.nanmean(v, axis=1) for k, v in counts.items()}
    ks = np.arange(len(probs)) if rank_vectors is None else np.asarray(rank_vectors)
    for key, fn in ((("auroc", "overall", "all"), weighted_auroc),
                    (("auprc", "overall", "all"), weighted_average_precision)):
        r = np.mean([fn(boot.counts, yf, probs[k]) for k in ks], axis=0)
        reps[key] = r + (np.nanmean(points[key]) - np.nanmean(points[key][ks]))
    worst_group_once(points, reps, flags)
    rows = [{"metric": key[0], "attribute": key[1], "group": key[2], **_estimate(v, reps.get(key))}
            for key, v in points.items()]
    return pd.DataFrame(rows), reps


def ref_replicates(boot, y, prob, pred, attrs, flags):
    w = boot.counts
    y = y.astype(np.float64)
    out = {("auroc", "overall", "all"): weighted_auroc(w, y, prob),
           ("auprc", "overall", "all"): weighted_average_precision(w, y, prob)}
    counts = ref_count_metrics(w, pred.astype(np.float64)[None, :], y, attrs, flags)
    out.update({k: v[:, 0] for k, v in counts.items()})
    out.update(ref_score_metrics(w, y, prob, attrs, flags))
    return out


# ------------------------------------------------------------------------------------------------ run
def _inputs(n: int, vectors: int, race5: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    races = (["White", "Black", "Asian", "Hispanic", "Other", "Unknown"], [0.6, 0.14, 0.08, 0.08, 0.06, 0.04]) if race5 \
        else (["White", "non-White", "Unknown"], [0.6, 0.36, 0.04])
    race = rng.choice(races[0], n, p=races[1]).astype(object)
    gender = rng.choice(["F", "M"], n).astype(object)
    attrs = {"race": race, "gender": gender, "race_gender": race + " " + gender}
    y = (rng.random(n) < 0.2).astype(np.float32)
    signal = rng.normal(size=n) + 1.2 * y
    probs = 1 / (1 + np.exp(-(signal[None] + rng.normal(scale=0.8, size=(vectors, n)))))
    probs = probs.round(4)
    preds = (probs >= 0.5).astype(int)
    flags = {a: metrics.estimable(y, g, 30, 10) for a, g in attrs.items()}
    return y, probs, preds, attrs, flags


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a)


def _time(fn, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=900, help="test stays (the demo cohorts have about 860-900)")
    ap.add_argument("--vectors", type=int, default=100, help="prediction vectors per condition (seeds x draws)")
    ap.add_argument("--boot", type=int, default=100, help="resamples of a sweep condition (chapter 05: sweep_boot)")
    ap.add_argument("--repeat", type=int, default=5, help="timings per path (the best is kept)")
    ap.add_argument("--race5", action="store_true", help="five race groups (race5) instead of race_binary")
    args = ap.parse_args()
    y, probs, preds, attrs, flags = _inputs(args.n, args.vectors, args.race5)
    boot = metrics.Bootstrap.draw(attrs["race_gender"], n_boot=args.boot, seed=0)
    boot200 = metrics.Bootstrap.draw(attrs["race_gender"], n_boot=200, seed=0)
    ranked = list(range(0, args.vectors, max(1, args.vectors // 10)))[:10]
    ref_vector_metrics(y, probs[:2], preds[:2], attrs, flags)  # imports and caches out of the timings
    metrics.vector_metrics(y, probs[:2], preds[:2], attrs, flags)

    rows, ok = [], True
    cases = [
        ("summarise_vectors (one sweep condition)",
         lambda: ref_summarise_vectors(y, probs, preds, attrs, flags, boot, ranked),
         lambda: metrics.summarise_vectors(y, probs, preds, attrs, flags, boot, rank_vectors=ranked)),
        ("vector_metrics (point estimates only)",
         lambda: ({"": 0}, ref_vector_metrics(y, probs, preds, attrs, flags)),
         lambda: ({"": 0}, metrics.vector_metrics(y, probs, preds, attrs, flags))),
        ("Bootstrap.replicates (one seed of summarise, 200 resamples)",
         lambda: ({"": 0}, ref_replicates(boot200, y, probs[0], preds[0], attrs, flags)),
         lambda: ({"": 0}, boot200.replicates(y, probs[0], preds[0], attrs, flags))),
    ]
    for name, old, new in cases:
        t_old, (a_tab, a_reps) = _time(old, args.repeat)
        t_new, (b_tab, b_reps) = _time(new, args.repeat)
        tables_same = a_tab.equals(b_tab) if isinstance(a_tab, pd.DataFrame) else True
        same = tables_same and _same(a_reps, b_reps)
        ok &= same
        rows.append({"kernel": name, "previous s": round(t_old, 4), "current s": round(t_new, 4),
                     "speed-up": round(t_old / t_new, 1), "bit-identical": same})
    print(f"{args.n} test stays, {args.vectors} vectors, {args.boot} resamples "
          f"({'race5' if args.race5 else 'race_binary'}); best of {args.repeat}")
    print(pd.DataFrame(rows).to_string(index=False))
    if not ok:
        print("MISMATCH: the current implementation does not reproduce the previous numbers")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
